/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * json_decode.c: a small, strict JSON text to Lua value decoder, for
 * librdkafka's statistics (kafka/stats.c); core.json_decode exposes it to
 * producers-cat's JSON lines and the specs (internal, not part of the API).
 *
 * Objects become tables with string keys, arrays tables with keys 1..n,
 * integers that fit a lua_Integer Lua integers, other numbers floats.
 * Strings keep \u escapes as UTF-8, surrogate pairs joined.
 *
 * Caveats:
 * - null decodes to nil: an object's null field is absent, an array's
 *   null element a hole (librdkafka's statistics hold no null).
 * - A repeated object key keeps its last value.
 * - Strings are not checked to be valid UTF-8; raw control characters in
 *   them are refused, as the grammar says.
 * - Nesting deeper than DEPTH_MAX and numbers longer than
 *   NUMBER_MAX characters are refused.
 * - Lua 5.1 and LuaJIT have no integers: integers beyond 2^53 lose
 *   precision there, as every number does.
 */
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

#define NUMBER_MAX 64
#define DEPTH_MAX 64              /* objects and arrays in one another */

/* The decoder's state: the text, where it is, and the first error. */
typedef struct {
    lua_State *L;
    const char *s, *end, *at;
    char error[128];
} decoder;

static int decode_value(decoder *d, int depth);

/* Records the first error at the current position; returns 0. */
static int fail(decoder *d, const char *what)
{
    if (!d->error[0])
        snprintf(d->error, sizeof d->error, "json: %s at byte %lu", what,
                 (unsigned long)(d->at - d->s) + 1);
    return 0;
}

static void skip_space(decoder *d)
{
    while (d->at < d->end &&
           (*d->at == ' ' || *d->at == '\t' || *d->at == '\n' || *d->at == '\r'))
        d->at++;
}

/* Consumes the literal word (true, false, null). */
static int literal(decoder *d, const char *word)
{
    size_t len = strlen(word);

    if ((size_t)(d->end - d->at) < len || memcmp(d->at, word, len) != 0)
        return fail(d, "unexpected character");
    d->at += len;
    return 1;
}

static int is_digit(const char *at, const char *end)
{
    return at < end && *at >= '0' && *at <= '9';
}

/* Consumes a run of digits; returns how many. */
static int digits(decoder *d)
{
    const char *from = d->at;

    while (is_digit(d->at, d->end))
        d->at++;
    return (int)(d->at - from);
}

/* The number token [from, d->at) as a Lua integer, if it is one that
 * fits an int64_t and a lua_Integer; returns 0 otherwise. */
static int push_integer(decoder *d, const char *from)
{
    const char *c = from + (*from == '-');
    int64_t n = 0;
    int negative = *from == '-';

    for (; c < d->at; c++) {
        int digit = *c - '0';

        /* accumulates as a negative number: its range is the larger */
        if (n < (INT64_MIN + digit) / 10)
            return 0;
        n = n * 10 - digit;
    }
    if (!negative && n == INT64_MIN)
        return 0;
    n = negative ? n : -n;
    if ((int64_t)(lua_Integer)n != n)
        return 0;
    lua_pushinteger(d->L, (lua_Integer)n);
    return 1;
}

/* The number token [from, d->at) as a float: strtod on a copy (the
 * grammar was checked; the copy stops strtod reading hex or past the
 * token), with the locale's decimal point. */
static int push_float(decoder *d, const char *from)
{
    char buf[NUMBER_MAX + 1], *point;
    size_t len = (size_t)(d->at - from);

    if (len > NUMBER_MAX)
        return fail(d, "number too long");
    memcpy(buf, from, len);
    buf[len] = '\0';
    if ((point = strchr(buf, '.')))
        *point = localeconv()->decimal_point[0];
    lua_pushnumber(d->L, (lua_Number)strtod(buf, NULL));
    return 1;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int decode_number(decoder *d)
{
    const char *from = d->at;
    int integral = 1;

    if (*d->at == '-')
        d->at++;
    if (!is_digit(d->at, d->end))
        return fail(d, "bad number");
    if (*d->at == '0')
        d->at++;
    else
        digits(d);
    if (d->at < d->end && *d->at == '.') {
        d->at++;
        integral = 0;
        if (!digits(d))
            return fail(d, "bad number");
    }
    if (d->at < d->end && (*d->at == 'e' || *d->at == 'E')) {
        d->at++;
        integral = 0;
        if (d->at < d->end && (*d->at == '+' || *d->at == '-'))
            d->at++;
        if (!digits(d))
            return fail(d, "bad number");
    }
    if (integral && push_integer(d, from))
        return 1;
    return push_float(d, from);
}

/* The 4 hex digits after \u; -1 when they are not. */
static long hex4(decoder *d)
{
    long code = 0;
    int i;

    if (d->end - d->at < 4)
        return -1;
    for (i = 0; i < 4; i++) {
        char c = d->at[i];
        int v = c >= '0' && c <= '9' ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;

        if (v < 0)
            return -1;
        code = code * 16 + v;
    }
    d->at += 4;
    return code;
}

static void add_utf8(luaL_Buffer *b, unsigned long code)
{
    char out[4];
    int n;

    if (code < 0x80) {
        out[0] = (char)code;
        n = 1;
    } else if (code < 0x800) {
        out[0] = (char)(0xC0 | (code >> 6));
        out[1] = (char)(0x80 | (code & 0x3F));
        n = 2;
    } else if (code < 0x10000) {
        out[0] = (char)(0xE0 | (code >> 12));
        out[1] = (char)(0x80 | ((code >> 6) & 0x3F));
        out[2] = (char)(0x80 | (code & 0x3F));
        n = 3;
    } else {
        out[0] = (char)(0xF0 | (code >> 18));
        out[1] = (char)(0x80 | ((code >> 12) & 0x3F));
        out[2] = (char)(0x80 | ((code >> 6) & 0x3F));
        out[3] = (char)(0x80 | (code & 0x3F));
        n = 4;
    }
    luaL_addlstring(b, out, (size_t)n);
}

/* After "\u": one code point, a surrogate pair joined, into b. */
static int unicode_escape(decoder *d, luaL_Buffer *b)
{
    long code = hex4(d), low;

    if (code < 0)
        return fail(d, "bad \\u escape");
    if (code >= 0xDC00 && code <= 0xDFFF)
        return fail(d, "lone low surrogate");
    if (code >= 0xD800 && code <= 0xDBFF) {
        if (d->end - d->at < 2 || d->at[0] != '\\' || d->at[1] != 'u')
            return fail(d, "lone high surrogate");
        d->at += 2;
        low = hex4(d);
        if (low < 0xDC00 || low > 0xDFFF)
            return fail(d, "lone high surrogate");
        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
    }
    add_utf8(b, (unsigned long)code);
    return 1;
}

/* After a backslash: one escape into b. */
static int escape(decoder *d, luaL_Buffer *b)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *which;

    if (d->at >= d->end)
        return fail(d, "unexpected end of input");
    if (*d->at == 'u') {
        d->at++;
        return unicode_escape(d, b);
    }
    if (!*d->at || !(which = strchr(from, *d->at)))
        return fail(d, "bad escape");
    luaL_addchar(b, to[which - from]);
    d->at++;
    return 1;
}

/* After the opening quote: the string up to the closing one. A string
 * without escapes is pushed from the text itself. */
static int decode_string(decoder *d)
{
    const char *from = d->at;
    luaL_Buffer b;

    while (d->at < d->end && *d->at != '"' && *d->at != '\\' &&
           (unsigned char)*d->at >= 0x20)
        d->at++;
    if (d->at < d->end && *d->at == '"') {
        /* not d->at++ in the call: lua-compat-5.3's lua_pushlstring
         * evaluates its length twice */
        lua_pushlstring(d->L, from, (size_t)(d->at - from));
        d->at++;
        return 1;
    }
    luaL_checkstack(d->L, LUA_MINSTACK, "json: out of stack");   /* the buffer's */
    luaL_buffinit(d->L, &b);
    luaL_addlstring(&b, from, (size_t)(d->at - from));
    for (;;) {
        if (d->at >= d->end)
            return fail(d, "unterminated string");
        if (*d->at == '"')
            break;
        if ((unsigned char)*d->at < 0x20)
            return fail(d, "control character in string");
        if (*d->at == '\\') {
            d->at++;
            if (!escape(d, &b))
                return 0;
        } else {
            luaL_addchar(&b, *d->at);   /* a macro: no side effect in it */
            d->at++;
        }
    }
    d->at++;
    luaL_pushresult(&b);
    return 1;
}

/* Consumes c (after blanks), else fails naming it. */
static int expect(decoder *d, char c, const char *what)
{
    skip_space(d);
    if (d->at >= d->end || *d->at != c)
        return fail(d, d->at >= d->end ? "unexpected end of input" : what);
    d->at++;
    return 1;
}

/* Consumes c (after blanks) if it comes next: the end of a container. */
static int closes(decoder *d, char c)
{
    skip_space(d);
    if (d->at < d->end && *d->at == c) {
        d->at++;
        return 1;
    }
    return 0;
}

/* After "[": the elements into a new table. */
static int decode_array(decoder *d, int depth)
{
    lua_Integer n = 0;

    lua_newtable(d->L);
    if (closes(d, ']'))
        return 1;
    for (;;) {
        if (!decode_value(d, depth))
            return 0;
        n++;
        lua_rawseti(d->L, -2, n);            /* a nil (null) leaves a hole */
        if (closes(d, ']'))
            return 1;
        if (!expect(d, ',', "expected ',' or ']'"))
            return 0;
    }
}

/* After "{": the members into a new table. */
static int decode_object(decoder *d, int depth)
{
    lua_newtable(d->L);
    if (closes(d, '}'))
        return 1;
    for (;;) {
        if (!expect(d, '"', "expected a string key") || !decode_string(d))
            return 0;
        if (!expect(d, ':', "expected ':'") || !decode_value(d, depth))
            return 0;
        lua_rawset(d->L, -3);                /* table, key, value */
        if (closes(d, '}'))
            return 1;
        if (!expect(d, ',', "expected ',' or '}'"))
            return 0;
    }
}

/* Pushes the next value; returns 0 on an error (what was pushed of it
 * is left for prd_json_decode to drop). */
static int decode_value(decoder *d, int depth)
{
    skip_space(d);
    if (d->at >= d->end)
        return fail(d, "unexpected end of input");
    switch (*d->at) {
    case '{':
    case '[':
        if (depth >= DEPTH_MAX)
            return fail(d, "nested too deep");
        luaL_checkstack(d->L, 3, "json: nested too deep");   /* table, key, value */
        return *d->at++ == '{' ? decode_object(d, depth + 1) : decode_array(d, depth + 1);
    case '"':
        d->at++;
        return decode_string(d);
    case 't':
        return literal(d, "true") && (lua_pushboolean(d->L, 1), 1);
    case 'f':
        return literal(d, "false") && (lua_pushboolean(d->L, 0), 1);
    case 'n':
        return literal(d, "null") && (lua_pushnil(d->L), 1);
    default:
        if (*d->at == '-' || is_digit(d->at, d->end))
            return decode_number(d);
        return fail(d, "unexpected character");
    }
}

/*
 * Decodes the JSON text s of len bytes. Pushes the value and returns 1;
 * or pushes a message ("json: <what> at byte <n>") and returns 0. Raises
 * only when Lua runs out of memory.
 */
int prd_json_decode(lua_State *L, const char *s, size_t len)
{
    decoder d = {L, s, s + len, s, ""};
    int top = lua_gettop(L);

    if (decode_value(&d, 0)) {
        skip_space(&d);
        if (d.at == d.end)
            return 1;
        fail(&d, "unexpected text after the value");
    }
    lua_settop(L, top);
    lua_pushstring(L, d.error);
    return 0;
}

/***
 * Internal, for the specs: decodes a JSON text as the statistics are.
 * @function core.json_decode
 * @string text
 * @treturn[1] the value
 * @treturn[2] nil
 * @treturn[2] string "json: <what> at byte <n>"
 */
int prd_json_decode_fn(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);

    if (prd_json_decode(L, s, len))
        return 1;
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
}
