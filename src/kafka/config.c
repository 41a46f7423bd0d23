/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * config.c: a Lua table of librdkafka properties into an rd_kafka_conf_t.
 * Values may be strings, numbers or booleans. Errors name the property
 * (an unknown one with the nearest name librdkafka knows, looked up on
 * that error path only); the value of a secret property never appears
 * in them.
 */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arg.h"
#include "kafka/config.h"

/* The values of a producer's secret properties: librdkafka's error texts
 * may quote them (a malformed sasl.oauthbearer.config, for one). */
#define MAX_SECRETS 8
#define SECRET_RUN 8        /* a quoted run this long of a secret is hidden */
/* values[MAX_SECRETS] and [MAX_SECRETS + 1]: the OAUTHBEARER token in
 * use and the one being set (prd_secrets_token), or NULL */
#define TOKEN_IN_USE MAX_SECRETS
#define TOKEN_NEW (MAX_SECRETS + 1)
#define SLOTS (MAX_SECRETS + 2)

struct prd_secrets {
    int n;                       /* values of properties, from values[0] */
    char *values[SLOTS];
};

static int is_secret(const char *name)
{
    return strstr(name, "password") || strstr(name, "secret") ||
           strstr(name, "sasl.oauthbearer.config") ||
           strcmp(name, "ssl.key.pem") == 0;
}

/* The value at the top of the stack as a property string; NULL with *why
 * set when it cannot be one. */
static const char *value_string(lua_State *L, char *buf, size_t size, const char **why)
{
    lua_Number n;

    switch (lua_type(L, -1)) {
    case LUA_TSTRING:
        *why = "must not contain a NUL byte";
        return prd_arg_c_string(L, -1, NULL);
    case LUA_TBOOLEAN:
        return lua_toboolean(L, -1) ? "true" : "false";
    case LUA_TNUMBER:
        if (lua_isinteger(L, -1)) {
            snprintf(buf, size, "%lld", (long long)lua_tointeger(L, -1));
            return buf;
        }
        n = lua_tonumber(L, -1);
        *why = "must be a finite number";
        if (isnan(n) || isinf(n))
            return NULL;
        snprintf(buf, size, "%.17g", (double)n);
        return buf;
    default:
        *why = "must be a string, number or boolean";
        return NULL;
    }
}

typedef struct conf_build {
    rd_kafka_conf_t *conf;
    prd_secrets *secrets;
} conf_build;

/* Frees what a conf being built holds, then raises the message. */
static void conf_error(lua_State *L, conf_build *c, const char *fmt, ...)
{
    va_list ap;

    rd_kafka_conf_destroy(c->conf);
    prd_secrets_free(c->secrets);
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_error(L);
}

static void keep_secret(conf_build *c, const char *value)
{
    prd_secrets *s = c->secrets;

    if (!*value)
        return;
    if (!s && !(s = c->secrets = calloc(1, sizeof *s)))
        return;
    if (s->n < MAX_SECRETS && (s->values[s->n] = strdup(value)))
        s->n++;
}

/* ---- a suggestion for an unknown property (the error path only) ---- */

#define NAME_LEN 127            /* longer names get no suggestion */

/* The optimal string alignment distance (edits, swaps of neighbours
 * included) of a, compared case-insensitively, and b; both at most
 * NAME_LEN bytes. Three rows of the usual table. */
static int edit_distance(const char *a, const char *b)
{
    int rows[3][NAME_LEN + 1], *before = rows[0], *prev = rows[1], *cur = rows[2], *t;
    int la = (int)strlen(a), lb = (int)strlen(b), i, j, d;

    for (j = 0; j <= lb; j++)
        prev[j] = j;
    for (i = 1; i <= la; i++) {
        cur[0] = i;
        for (j = 1; j <= lb; j++) {
            int ca = tolower((unsigned char)a[i - 1]), cb = b[j - 1];

            d = prev[j - 1] + (ca != cb);
            if (prev[j] + 1 < d)
                d = prev[j] + 1;
            if (cur[j - 1] + 1 < d)
                d = cur[j - 1] + 1;
            if (i > 1 && j > 1 && ca == b[j - 2] &&
                tolower((unsigned char)a[i - 2]) == cb && before[j - 2] + 1 < d)
                d = before[j - 2] + 1;
            cur[j] = d;
        }
        t = before, before = prev, prev = cur, cur = t;
    }
    return prev[lb];
}

/* The producer's property (librdkafka's list, rd_kafka_conf_properties_show:
 * rows "name | C/P | ...", global and topic tables) nearest to name,
 * copied into best: 1, or 0 when none is near enough (at most
 * strlen(name) / 4 + 1 edits). Reads the table through a temporary file. */
static int nearest_property(const char *name, char *best, size_t size)
{
    char line[256], row[NAME_LEN + 1], cp[4];
    int len = (int)strlen(name), best_d = len / 4 + 2, d, c;
    FILE *f;

    if (len > NAME_LEN || !(f = tmpfile()))
        return 0;
    rd_kafka_conf_properties_show(f);
    rewind(f);
    while (fgets(line, sizeof line, f)) {
        if (!strchr(line, '\n'))           /* a long row: skip the rest */
            while ((c = getc(f)) != EOF && c != '\n')
                ;
        if (sscanf(line, "%127[a-z0-9._-] | %3[CP*/]", row, cp) != 2 ||
            strcmp(cp, "C") == 0)           /* a consumer's: a producer ignores it */
            continue;
        d = edit_distance(name, row);
        if (d < best_d && d < len) {
            best_d = d;
            snprintf(best, size, "%s", row);
        }
    }
    fclose(f);
    return best_d <= len / 4 + 1;
}

/* Raises "config: unknown property 'NAME'", with the nearest property's
 * name when one is near. */
static void unknown_property(lua_State *L, conf_build *c, const char *name)
{
    char best[NAME_LEN + 1];

    if (nearest_property(name, best, sizeof best))
        conf_error(L, c, "config: unknown property '%s' (did you mean '%s'?)", name, best);
    conf_error(L, c, "config: unknown property '%s'", name);
}

/* Sets the property at the top but one to the value at the top. */
static void set_property(lua_State *L, conf_build *c)
{
    char errstr[512], num[64];
    const char *name, *value, *why = NULL;

    if (lua_type(L, -2) != LUA_TSTRING)
        conf_error(L, c, "config: property names must be strings, got %s",
                   luaL_typename(L, -2));
    if (!(name = prd_arg_c_string(L, -2, NULL)))
        conf_error(L, c, "config: property names must not contain a NUL byte");
    if (!(value = value_string(L, num, sizeof num, &why)))
        conf_error(L, c, "config: '%s' %s, got %s", name, why,
                   lua_type(L, -1) == LUA_TSTRING ? "a string with one"
                                                  : luaL_typename(L, -1));
    switch (rd_kafka_conf_set(c->conf, name, value, errstr, sizeof errstr)) {
    case RD_KAFKA_CONF_OK:
        if (is_secret(name))
            keep_secret(c, value);
        break;
    case RD_KAFKA_CONF_UNKNOWN:
        unknown_property(L, c, name);
        break;
    default:
        if (is_secret(name))
            conf_error(L, c, "config: invalid value for '%s'", name);
        conf_error(L, c, "config: invalid value for '%s': %s", name, errstr);
    }
}

rd_kafka_conf_t *prd_conf_from_table(lua_State *L, int idx, prd_secrets **secrets)
{
    conf_build c = {rd_kafka_conf_new(), NULL};

    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {              /* ..., name, value */
        set_property(L, &c);
        lua_pop(L, 1);
    }
    *secrets = c.secrets;
    return c.conf;
}

void prd_secrets_free(prd_secrets *secrets)
{
    int i;

    if (!secrets)
        return;
    for (i = 0; i < SLOTS; i++)
        free(secrets->values[i]);
    free(secrets);
}

/*
 * Hides an OAUTHBEARER token too. A token being set (in_use 0) replaces
 * the last one set before; once librdkafka took it (in_use 1), it
 * replaces the token in use. So at most two are kept, whatever the
 * number of refreshes. Returns 0 when out of memory (the token is then
 * not hidden: do not set it).
 */
int prd_secrets_token(prd_secrets **secrets, const char *token, int in_use)
{
    prd_secrets *s = *secrets;

    if (!s && !(s = *secrets = calloc(1, sizeof *s)))
        return 0;
    if (in_use) {
        free(s->values[TOKEN_IN_USE]);
        s->values[TOKEN_IN_USE] = s->values[TOKEN_NEW];
        s->values[TOKEN_NEW] = NULL;
        return 1;
    }
    free(s->values[TOKEN_NEW]);
    return (s->values[TOKEN_NEW] = strdup(token)) != NULL;
}

/* The length of the longest run of secret that text starts with. */
static size_t secret_run(const char *text, const char *secret)
{
    size_t best = 0, n;

    for (; *secret; secret++) {
        for (n = 0; text[n] && text[n] == secret[n]; n++)
            ;
        if (n > best)
            best = n;
    }
    return best;
}

/*
 * Replaces with "***" every run of text, a NUL-terminated string in a
 * buffer of PRD_TEXT_MAX bytes, that is a secret value or SECRET_RUN
 * bytes or more of one: librdkafka may quote only part of a value.
 */
void prd_redact(const prd_secrets *secrets, char *text)
{
    char out[PRD_TEXT_MAX];
    size_t i = 0, o = 0, run, len;
    int k, hidden = 0;

    if (!secrets)
        return;
    while (text[i] && o + 4 < sizeof out) {
        for (run = 0, k = 0; k < SLOTS; k++) {
            if (!secrets->values[k])
                continue;
            len = strlen(secrets->values[k]);
            if ((run = secret_run(text + i, secrets->values[k])) >= len ||
                run >= SECRET_RUN)
                break;
        }
        if (k < SLOTS) {
            memcpy(out + o, "***", 3);
            o += 3;
            i += run;
            hidden = 1;
        } else {
            out[o++] = text[i++];
        }
    }
    if (hidden) {
        out[o] = '\0';
        memcpy(text, out, o + 1);
    }
}

/* prd_redact in prd_log's shape (a producer's log lines): ud is the
 * address of the producer's secrets pointer, which a new token replaces. */
void prd_redact_log(const void *ud, char *text)
{
    prd_redact(*(prd_secrets *const *)ud, text);
}

/***
 * Checks librdkafka properties as new would, without making a handle.
 * @function core.check_config
 * @tparam table conf
 * @treturn true
 * @raise naming the property
 */
int prd_conf_check(lua_State *L)
{
    prd_secrets *secrets;

    luaL_checktype(L, 1, LUA_TTABLE);
    rd_kafka_conf_destroy(prd_conf_from_table(L, 1, &secrets));
    prd_secrets_free(secrets);
    lua_pushboolean(L, 1);
    return 1;
}
