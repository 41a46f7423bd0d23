/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * oauth.c: SASL/OAUTHBEARER tokens from Lua (the on_oauthbearer_token
 * option).
 *
 * librdkafka asks for a token with an OAUTHBEARER_TOKEN_REFRESH event on
 * the main queue: once at creation (no broker is connected before the
 * first token is set), then at 80% of each token's lifetime, and 10 s
 * after a failure. report.c serves it like any other event: the callback
 * runs on the caller's thread, in a protected call with the producer
 * busy, and what it returns is handed to rd_kafka_oauthbearer_set_token
 * inside that call (the strings live on its stack).
 *
 * Any failure (the callback raised, returned nil and a reason or values
 * of the wrong kind, librdkafka refused the token) goes to
 * rd_kafka_oauthbearer_set_token_failure and is reported once, through
 * on_error or the logger, as "token refresh failed: <reason>" with the
 * name _AUTHENTICATION; it does not come out of the call that served it.
 *
 * Caveats: each token is among the producer's secrets (prd_redact) before
 * librdkafka sees it, so no text handed to Lua shows it; only the token in
 * use and the newest are kept. The callback cannot yield: it runs inside
 * a C call.
 */
#include <stdio.h>
#include <string.h>

#include "core/arg.h"
#include "core/call.h"
#include "kafka/config.h"
#include "kafka/errors.h"
#include "kafka/oauth.h"

#define FAILED "token refresh failed: "
/* what librdkafka raises after set_token_failure: ours said it already */
#define ECHO "Failed to acquire SASL OAUTHBEARER token: "

/* One refresh: what call_token needs, and why it failed. */
typedef struct {
    prd_kafka *p;
    const char *config;          /* sasl.oauthbearer.config, or NULL */
    char reason[PRD_TEXT_MAX - sizeof FAILED];   /* "" when it worked */
} prd_refresh;

static const char call_token_key;

/* What the value at idx is, for a reason: its type, "a fraction". */
static const char *kind(lua_State *L, int idx)
{
    if (lua_type(L, idx) == LUA_TNUMBER && !lua_isinteger(L, idx))
        return "a fraction";
    return luaL_typename(L, idx);
}

/* The string at idx as a C string, or NULL when it is not a string
 * without NUL bytes. */
static const char *c_string(lua_State *L, int idx)
{
    return lua_type(L, idx) == LUA_TSTRING ? prd_arg_c_string(L, idx, NULL) : NULL;
}

/*
 * The extensions table at idx as librdkafka's array of keys and values
 * (pointers into the table's strings, in a userdata pushed on the stack).
 * Returns the number of keys plus values, or -1 with r->reason set.
 */
static int extensions(lua_State *L, int idx, prd_refresh *r, const char ***out)
{
    const char **kv;
    int n = 0, i = 0;

    if (lua_isnil(L, idx))
        return 0;
    if (!lua_istable(L, idx)) {
        snprintf(r->reason, sizeof r->reason, "extensions must be a table, got %s",
                 kind(L, idx));
        return -1;
    }
    for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1)) {   /* raw reads */
        if (!c_string(L, -2)) {
            snprintf(r->reason, sizeof r->reason,
                     "extensions: keys must be strings, got %s", kind(L, -2));
            lua_pop(L, 2);
            return -1;
        }
        if (!c_string(L, -1)) {
            snprintf(r->reason, sizeof r->reason,
                     "extensions: '%s' must be a string, got %s",
                     lua_tostring(L, -2), kind(L, -1));
            lua_pop(L, 2);
            return -1;
        }
        n += 2;
    }
    kv = lua_newuserdata(L, (n ? n : 1) * sizeof *kv);
    /* a finalizer run by that allocation may have changed the table:
     * bounded by n, checked again */
    for (lua_pushnil(L); i < n && lua_next(L, idx); lua_pop(L, 1)) {
        if (!c_string(L, -2) || !c_string(L, -1)) {
            snprintf(r->reason, sizeof r->reason, "extensions changed while read");
            lua_pop(L, 2);
            return -1;
        }
        kv[i++] = lua_tostring(L, -2);
        kv[i++] = lua_tostring(L, -1);
    }
    *out = kv;
    return i;
}

/*
 * Checks what the callback returned (token, lifetime_ms, principal,
 * extensions at 2 to 5) and hands it to librdkafka; r->reason says why
 * not. The token joins the producer's secrets first: librdkafka's
 * refusal may quote it.
 */
static void set_token(lua_State *L, prd_refresh *r)
{
    prd_kafka *p = r->p;
    const char *token = c_string(L, 2), *principal = c_string(L, 4), **kv = NULL;
    char errstr[512];
    lua_Integer lifetime = 0;
    int exact = 0, n;

    if (lua_isnil(L, 2)) {
        snprintf(r->reason, sizeof r->reason, "%s", lua_type(L, 3) == LUA_TSTRING
                 ? lua_tostring(L, 3) : "on_oauthbearer_token returned no token");
        return;
    }
    if (lua_type(L, 2) != LUA_TSTRING) {
        snprintf(r->reason, sizeof r->reason,
                 "on_oauthbearer_token must return a token string, got %s", kind(L, 2));
        return;
    }
    if (!token || !*token) {
        snprintf(r->reason, sizeof r->reason,
                 "the token must not be empty or contain a NUL byte");
        return;
    }
    if (lua_type(L, 3) == LUA_TNUMBER)
        lifetime = lua_tointegerx(L, 3, &exact);
    if (!exact || lifetime <= 0) {
        if (exact)
            snprintf(r->reason, sizeof r->reason, "lifetime_ms must be a positive "
                     "integer (ms since the epoch), got %lld", (long long)lifetime);
        else
            snprintf(r->reason, sizeof r->reason, "lifetime_ms must be a positive "
                     "integer (ms since the epoch), got %s", kind(L, 3));
        return;
    }
    if (!principal) {
        snprintf(r->reason, sizeof r->reason, lua_type(L, 4) == LUA_TSTRING
                 ? "principal must not contain a NUL byte%s"
                 : "principal must be a string, got %s",
                 lua_type(L, 4) == LUA_TSTRING ? "" : kind(L, 4));
        return;
    }
    if ((n = extensions(L, 5, r, &kv)) < 0)
        return;
    if (!prd_secrets_token(&p->secrets, token, 0)) {
        snprintf(r->reason, sizeof r->reason, "out of memory");
        return;
    }
    if (rd_kafka_oauthbearer_set_token(p->rk, token, (int64_t)lifetime, principal, kv,
                                       (size_t)n, errstr, sizeof errstr)) {
        snprintf(r->reason, sizeof r->reason, "%s", errstr);
        return;
    }
    prd_secrets_token(&p->secrets, NULL, 1);     /* the one in use now */
}

/* Protected: calls on_oauthbearer_token(config), then set_token. */
static int call_token(lua_State *L)
{
    prd_refresh *r = lua_touserdata(L, 1);

    lua_rawgeti(L, LUA_REGISTRYINDEX, r->p->on_token);
    if (r->config)
        lua_pushstring(L, r->config);
    else
        lua_pushnil(L);
    lua_call(L, 1, 4);                     /* r, token, lifetime, principal, extensions */
    set_token(L, r);
    return 0;
}

/* The callback's error at the top as r's reason, without the traceback
 * (its message says where); pops it. */
static void take_error(lua_State *L, prd_refresh *r)
{
    const char *msg = lua_tostring(L, -1), *cut;

    if (!msg)
        snprintf(r->reason, sizeof r->reason, "(error object is a %s value)",
                 luaL_typename(L, -1));
    else if ((cut = strstr(msg, "\nstack traceback:")))
        snprintf(r->reason, sizeof r->reason, "%.*s", (int)(cut - msg), msg);
    else
        snprintf(r->reason, sizeof r->reason, "%s", msg);
    if (!r->reason[0])
        snprintf(r->reason, sizeof r->reason, "(empty error message)");
    lua_pop(L, 1);
}

/*
 * Serves an OAUTHBEARER_TOKEN_REFRESH event: asks the callback for a token
 * and sets it, or tells librdkafka the refresh failed and reports why.
 * Returns LUA_OK, or the status of on_error or the logger (their error on
 * top of the stack).
 */
int prd_oauth_refresh(lua_State *L, prd_kafka *p, rd_kafka_event_t *ev)
{
    prd_refresh r = {p, rd_kafka_event_config_string(ev), ""};
    char text[PRD_TEXT_MAX], *eol;

    /* close asks for a token only while messages wait to be sent */
    if (p->base.closing == PRD_PURGED || (p->base.closing && p->base.queued == 0))
        return LUA_OK;
    if (p->on_token == LUA_NOREF)        /* OAUTHBEARER set through config */
        snprintf(r.reason, sizeof r.reason, "no on_oauthbearer_token option");
    else if (prd_call_protected(L, &p->base.busy, &call_token_key, call_token, &r) != LUA_OK)
        take_error(L, &r);
    if (!r.reason[0])
        return LUA_OK;
    snprintf(text, sizeof text, FAILED "%s", r.reason);
    prd_redact(p->secrets, text);        /* librdkafka keeps and logs it too */
    p->token_failed = 1;
    if ((eol = strchr(text, '\n')))      /* librdkafka's logs: one line */
        *eol = '\0';
    rd_kafka_oauthbearer_set_token_failure(p->rk, text + sizeof FAILED - 1);
    if (eol)
        *eol = '\n';
    return prd_kafka_error_report(L, p, RD_KAFKA_RESP_ERR__AUTHENTICATION, text, 0);
}

/* Whether the error event ev repeats the failure prd_oauth_refresh
 * reported (librdkafka raises it after set_token_failure). */
int prd_oauth_echo(const prd_kafka *p, rd_kafka_event_t *ev)
{
    const char *text = rd_kafka_event_error_string(ev);

    return p->token_failed && text &&
           rd_kafka_event_error(ev) == RD_KAFKA_RESP_ERR__AUTHENTICATION &&
           strncmp(text, ECHO, sizeof ECHO - 1) == 0;
}

/* Makes call_token's function once per Lua state, before any producer
 * exists (see prd_call_open). */
void prd_oauth_open(lua_State *L)
{
    lua_pushcfunction(L, call_token);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &call_token_key);
}
