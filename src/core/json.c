/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * json.c: message values into bytes.
 *
 * Tables are encoded by a C encoder that loses no data: integers (Lua
 * 5.3+'s integer subtype) with every digit; floats in the shortest form
 * that reads back to the same double, Python's repr (a float of integral
 * value within 2^53 as that integer, -0.0 as "-0.0"); strings with
 * lua-cjson's escapes; the bytes do not depend on the process's locale.
 * Arrays, holes and sparse arrays follow lua-cjson's rules, and OpenResty's
 * cjson markers (array_mt, empty_array_mt, empty_array) give what its
 * cjson gives when a loaded cjson defines them. It writes into one buffer
 * per Lua state that produce hands to librdkafka (which copies it), so a
 * table costs no Lua string and no garbage. docs/json.md has the contract.
 *
 * A producer made with json = "lua-cjson" encodes with a lua-cjson
 * instance of its own (cjson.new()), loaded when first asked for. Either
 * way a script that changes the global cjson's settings neither breaks nor
 * changes what a producer sends.
 *
 * Caveats: an empty table encodes as {} (an array needs a marker); NaN and
 * infinities are refused; a table nested deeper than 1000 levels (a cycle,
 * for instance) is refused; a metatable's __index, __pairs and __len are
 * not consulted (OpenResty's cjson calls __len); an integer key above
 * INT_MAX makes its table an object; a number key and a string key
 * written as the same member name ({[1] = "a", ["1"] = "b"}) are refused;
 * strings are written as their bytes, so bytes that are not UTF-8 stay
 * so; out of memory raises a Lua error (the buffer is malloc's, not the
 * Lua state's allocator's). Floats are written from their shortest
 * digits (json_double.c), with no printf and no strtod.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_double.h"
#include "core/call.h"
#include "core/json.h"

#if defined(__GNUC__)
#define NOINLINE __attribute__((noinline))  /* a rare path kept out of a hot loop */
#else
#define NOINLINE
#endif

#define MAX_DEPTH 1000
#define SPARSE_RATIO 2
#define SPARSE_SAFE 10

/* lua-cjson's escapes: NULL means the byte stands for itself. */
static const char *const escapes[256] = {
    "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006", "\\u0007",
    "\\b", "\\t", "\\n", "\\u000b", "\\f", "\\r", "\\u000e", "\\u000f",
    "\\u0010", "\\u0011", "\\u0012", "\\u0013", "\\u0014", "\\u0015", "\\u0016", "\\u0017",
    "\\u0018", "\\u0019", "\\u001a", "\\u001b", "\\u001c", "\\u001d", "\\u001e", "\\u001f",
    [0x22] = "\\\"", [0x2f] = "\\/", [0x5c] = "\\\\", [0x7f] = "\\u007f",
};

/* Errors say what lua-cjson says, after the same prefix as its errors. */
#define CANNOT_ENCODE "value: cannot encode table as JSON: "

/* ---- the buffer ---------------------------------------------------- */

/*
 * Object keys repeat from message to message: the text of a key seen
 * before ("key": quoted, escaped, with its colon) is remembered under the
 * identity of its Lua string (lua_topointer), and the string is kept
 * alive in a table of the registry while it is remembered, so no other
 * string can take its address. A slot's key earns a point at each use and
 * loses one to each other key that falls in its slot, which takes the slot
 * at zero: two keys of one table sharing a slot do not evict each other
 * at every message. Where lua_topointer gives strings no identity (Lua 5.1
 * to 5.3), nothing is remembered.
 */
#define KEYS 128                /* remembered keys, a power of two */
#define KEY_TEXT 32             /* longest text remembered */
#define KEY_POINTS 4            /* most points a key holds */

typedef struct key {
    const void *id;             /* lua_topointer of the string; NULL: none */
    int points;
    size_t len;
    char text[KEY_TEXT];
} key;

struct prd_buf {
    char *data;
    size_t len, cap;
    lua_State *L;               /* the thread encoding, for errors */
    int keys_ref;               /* registry: the remembered strings, or
                                   LUA_NOREF when none can be */
    key keys[KEYS];
};

/*
 * The buffer grows by doubling from BUF_MIN and is kept from message to
 * message; after a value that used a quarter of it or less, a buffer
 * above BUF_SHRINK_ABOVE is given back and replaced by one of
 * BUF_SHRINK_TO (or the next power of two that holds the value): one
 * large value does not keep its memory for the life of the state, and
 * the ordinary small ones never reach the test.
 */
#define BUF_MIN 256
#define BUF_SHRINK_ABOVE ((size_t)1 << 20)
#define BUF_SHRINK_TO ((size_t)64 << 10)

/* No memory for a buffer of cap bytes: the buffer is given back whole
 * and the encoding raises (produce encodes before anything is handed to
 * librdkafka or held for the message, so nothing is left half made). */
static void out_of_memory(prd_buf *b, size_t cap)
{
    char why[80];

    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    snprintf(why, sizeof why, "not enough memory (a buffer of %.0f bytes)", (double)cap);
    luaL_error(b->L, CANNOT_ENCODE "%s", why);
}

static void grow(prd_buf *b, size_t more)
{
    size_t cap = b->cap ? b->cap : BUF_MIN;
    char *data;

    while (cap - b->len < more) {
        if (cap > SIZE_MAX / 2)
            out_of_memory(b, SIZE_MAX);
        cap *= 2;
    }
    if (!(data = realloc(b->data, cap)))
        out_of_memory(b, cap);
    b->data = data;
    b->cap = cap;
}

/* After an encoding: a large buffer that the value used a quarter of or
 * less is replaced by a small one holding the value. Left as it is when
 * no memory can be had for the small one. */
static void shrink(prd_buf *b)
{
    size_t cap = BUF_SHRINK_TO;
    char *data;

    while (cap < b->len)
        cap *= 2;
    if (!(data = malloc(cap)))
        return;
    memcpy(data, b->data, b->len);
    free(b->data);
    b->data = data;
    b->cap = cap;
}

static inline void reserve(prd_buf *b, size_t n)
{
    if (b->cap - b->len < n)
        grow(b, n);
}

static inline void put(prd_buf *b, const char *s, size_t n)
{
    reserve(b, n);
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

static inline void put_char(prd_buf *b, char c)
{
    reserve(b, 1);
    b->data[b->len++] = c;
}

static int buf_gc(lua_State *L)
{
    prd_buf *b = lua_touserdata(L, 1);

    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    luaL_unref(L, LUA_REGISTRYINDEX, b->keys_ref);
    b->keys_ref = LUA_NOREF;
    memset(b->keys, 0, sizeof b->keys);
    return 0;
}

/* ---- the encoder ---------------------------------------------------- */

/* s, quoted and escaped. Most bytes stand for themselves and are copied
 * one by one; room is made again only at an escape. Inline: the callers
 * have the bytes from lua_tolstring, and a key or a short value is a few
 * bytes, where a call would cost as much as the copy. */
static inline void put_string(prd_buf *b, const char *s, size_t len)
{
    const char *end = s + len;
    char *out;

    reserve(b, len + 2);
    out = b->data + b->len;
    *out++ = '"';
    while (s < end) {
        const char *esc = escapes[(unsigned char)*s];
        size_t n;

        if (!esc) {
            *out++ = *s++;
            continue;
        }
        b->len = (size_t)(out - b->data);
        reserve(b, (size_t)(end - s) + 6);  /* this escape, the rest, the quote */
        out = b->data + b->len;
        n = esc[1] == 'u' ? 6 : 2;       /* \u00XX or \X */
        memcpy(out, esc, n);
        out += n;
        s++;
    }
    *out++ = '"';
    b->len = (size_t)(out - b->data);
}

static inline void put_lua_string(prd_buf *b, lua_State *L, int idx)
{
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);

    put_string(b, s, len);
}

static void fail(lua_State *L, int idx, const char *reason)
{
    luaL_error(L, CANNOT_ENCODE "Cannot serialise %s: %s", luaL_typename(L, idx), reason);
}

#define INT_TEXT 24             /* room for an integer: 20 digits and '-' */

/* An integer, every digit: four digits a division, written two at a
 * time backwards into digits, ending at its middle, then copied INT_TEXT
 * bytes at once (a copy of a known size, made inline; what follows the
 * number is overwritten by what comes next or lies past the text). */
static void put_integer(prd_buf *b, long long v)
{
    static const char pairs[] =
        "00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899";
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    char digits[2 * INT_TEXT], *end = digits + INT_TEXT, *p = end;

    while (u >= 10000) {                    /* four digits a division */
        unsigned r = (unsigned)(u % 10000);

        u /= 10000;
        p -= 4;
        memcpy(p, pairs + (r / 100) * 2, 2);
        memcpy(p + 2, pairs + (r % 100) * 2, 2);
    }
    if (u >= 100) {
        p -= 2;
        memcpy(p, pairs + (u % 100) * 2, 2);
        u /= 100;
    }
    if (u >= 10) {
        p -= 2;
        memcpy(p, pairs + u * 2, 2);
    } else {
        *--p = (char)('0' + u);
    }
    if (v < 0)
        *--p = '-';
    reserve(b, INT_TEXT);
    memcpy(b->data + b->len, p, INT_TEXT);
    b->len += (size_t)(end - p);
}

#define EXACT_LIMIT 9007199254740992.0  /* 2^53: integral floats up to it
                                           are written as integers */

/* A finite float that put_number does not write as an integer, as
 * Python's repr writes it (a point or an exponent always shows): the
 * shortest digits that read back as x, of those the nearest
 * (json_double.c), laid out without printf. The copies have fixed sizes
 * (no call): digits has room for them past the n written, and only what
 * is laid out is put. */
static void put_float(prd_buf *b, double x)
{
    char digits[JSON_DOUBLE_DIGITS + 16], out[48], *o = out;
    int n, exp10;

    if (signbit(x)) {
        *o++ = '-';
        x = -x;
    }
    if (x == 0) {
        put(b, "-0.0", 4);
        return;
    }
    n = json_double_digits(x, digits, &exp10);
    if (exp10 < -4 || exp10 >= 16) {        /* 1e-05, 1.5e+300 */
        int e = exp10 < 0 ? -exp10 : exp10;

        o[0] = digits[0];
        o[1] = '.';
        memcpy(o + 2, digits + 1, 16);
        o += n > 1 ? n + 1 : 1;
        *o++ = 'e';
        *o++ = exp10 < 0 ? '-' : '+';
        if (e >= 100) {
            *o++ = (char)('0' + e / 100);
            e %= 100;
        }
        *o++ = (char)('0' + e / 10);
        *o++ = (char)('0' + e % 10);
    } else if (exp10 < 0) {                 /* 0.001 */
        memcpy(o, "0.0000", 6);
        o += 1 - exp10;
        memcpy(o, digits, 17);
        o += n;
    } else if (n > exp10 + 1) {             /* 12.5 */
        memcpy(o, digits, 16);
        o[exp10 + 1] = '.';
        memcpy(o + exp10 + 2, digits + exp10 + 1, 16);
        o += n + 1;
    } else {                                /* 9007199254740994.0 */
        memcpy(o, digits, 16);
        memcpy(o + n, "0000000000000000", 16);
        o += exp10 + 1;
        *o++ = '.';
        *o++ = '0';
    }
    put(b, out, (size_t)(o - out));
}

/* The number at idx; 0 (nothing written) for NaN and infinities. */
static int put_number(prd_buf *b, lua_State *L, int idx)
{
    lua_Number n;

#if LUA_VERSION_NUM >= 503
    {
        /* One call for the common case: an integer, or a float of
         * integral value, within 2^53 but 0 (a float zero may be -0.0) is
         * written as digits either way; else the subtype decides. */
        int exact;
        lua_Integer v = lua_tointegerx(L, idx, &exact);
        if (exact && ((v != 0 && v <= (lua_Integer)EXACT_LIMIT && v >= -(lua_Integer)EXACT_LIMIT) ||
                      lua_isinteger(L, idx))) {
            put_integer(b, (long long)v);
            return 1;
        }
    }
#endif
    n = lua_tonumber(L, idx);
    if (fabs(n) <= EXACT_LIMIT) {           /* false for NaN and infinities */
        long long v = (long long)n;         /* in range: no overflow */
        if ((lua_Number)v == n && (v != 0 || !signbit(n))) {
            put_integer(b, v);
            return 1;
        }
    } else if (isinf(n) || isnan(n)) {
        return 0;
    }
    put_float(b, (double)n);
    return 1;
}

/* A string, a finite number, a boolean or null (cjson.null, ngx.null: a
 * NULL light userdata) (type: its type)
 * at idx: written, 1. Anything else: 0, nothing written. */
static int put_scalar(prd_buf *b, lua_State *L, int idx, int type)
{
    switch (type) {
    case LUA_TSTRING:
        put_lua_string(b, L, idx);
        return 1;
    case LUA_TNUMBER:
        return put_number(b, L, idx);
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx))
            put(b, "true", 4);
        else
            put(b, "false", 5);
        return 1;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) != NULL)
            return 0;
        put(b, "null", 4);
        return 1;
    default:
        return 0;
    }
}

/* The key at idx if it may belong to an array (an integer from 1 to
 * INT_MAX), else 0. lua-cjson takes larger ones too, and its int holding
 * the largest overflows: the table becomes an object, or an array that
 * drops them, by the order of the keys. Here it is always an object. */
static inline lua_Number array_index(lua_State *L, int idx)
{
#if LUA_VERSION_NUM >= 503
    /* A table keeps a float key of integral value as an integer (5.3+):
     * an index is an integer key. Two calls where the float test took
     * three and floor (bench/README.md, issue #24). */
    lua_Integer i;

    if (!lua_isinteger(L, idx))
        return 0;
    i = lua_tointeger(L, idx);
    return i >= 1 && i <= INT_MAX ? (lua_Number)i : 0;
#else
    lua_Number k;

    if (lua_type(L, idx) != LUA_TNUMBER)
        return 0;
    k = lua_tonumber(L, idx);
    return k >= 1 && k <= INT_MAX && floor(k) == k ? k : 0;
#endif
}

/* lua-cjson's test: the largest index if every key is an integer >= 1
 * and the array is not too sparse, 0 for an empty table, else -1. */
static int array_length(lua_State *L, int t)
{
    int max = 0, items = 0;

    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_Number k = array_index(L, -2);
        if (k) {
            if (k > max)
                max = (int)k;
            items++;
            lua_pop(L, 1);
            continue;
        }
        lua_pop(L, 2);
        return -1;
    }
    if (max > items * SPARSE_RATIO && max > SPARSE_SAFE)
        fail(L, t, "excessively sparse array");
    return max;
}

static void put_value(prd_buf *b, lua_State *L, int type, int depth);

static key *key_slot(prd_buf *b, const void *id)
{
    uintptr_t h = (uintptr_t)id;

    return &b->keys[(h >> 4 ^ h >> 10) & (KEYS - 1)];
}

/* Remembers the text written at start in the buffer for the string key
 * at the top but one (its identity id; NULL: not remembered) in slot k, if
 * k is free or has lost its points; keeps the string alive. */
static void remember_key(prd_buf *b, lua_State *L, key *k, const void *id, size_t start)
{
    size_t len = b->len - start;

    if (!id || len > KEY_TEXT || (k->id && --k->points > 0))
        return;
    lua_rawgeti(L, LUA_REGISTRYINDEX, b->keys_ref);
    lua_pushvalue(L, -3);
    lua_rawseti(L, -2, (int)(k - b->keys) + 1);     /* the string it held may go */
    lua_pop(L, 1);
    k->id = id;
    k->points = 1;
    k->len = len;
    memcpy(k->text, b->data + start, len);
}

/* The key at the top but one, as an object's key, and the colon: 1 for
 * a number key (written as a string), else 0. A string seen before is
 * found by its identity (lua_topointer); its type is read first, so a
 * light userdata holding that string's address is never taken for it
 * (it is refused below, as other key types are), and one lua_type call
 * serves both the lookup and the writing (bench/README.md, issue #24). */
static int put_key(prd_buf *b, lua_State *L)
{
    int type = lua_type(L, -2);
    const void *id;
    key *k;
    size_t start;

    switch (type) {
    case LUA_TSTRING:
        id = b->keys_ref != LUA_NOREF ? lua_topointer(L, -2) : NULL;
        k = key_slot(b, id);
        if (id && k->id == id) {            /* remembered: this very string */
            if (k->points < KEY_POINTS)
                k->points++;
            reserve(b, KEY_TEXT);
            memcpy(b->data + b->len, k->text, KEY_TEXT);
            b->len += k->len;
            return 0;
        }
        start = b->len;
        put_lua_string(b, L, -2);
        put_char(b, ':');
        remember_key(b, L, k, id, start);
        return 0;
    case LUA_TNUMBER:
        put_char(b, '"');
        if (!put_number(b, L, -2))
            fail(L, -2, "must not be NaN or Inf");
        put(b, "\":", 2);
        return 1;
    default:
        fail(L, -2, "table key must be a number or string");
        return 0;
    }
}

/*
 * Whether the string key s (len bytes) of the table at t is the name a
 * number key of that table is written as ({[1] = "a", ["1"] = "b"}): the
 * number s reads as, in the form Lua keeps it as a key (an integral float
 * as an integer on 5.3+; 0 for -0.0), is a key of t written as exactly s.
 * The buffer's free end is used to write it.
 */
static int number_key_named(prd_buf *b, lua_State *L, int t, const char *s, size_t len)
{
    size_t at = b->len;
    int same;

#if LUA_VERSION_NUM >= 503
    lua_Integer i;
    int exact;

    if (!lua_stringtonumber(L, s))
        return 0;
    if (!lua_isinteger(L, -1) && (i = lua_tointegerx(L, -1, &exact), exact)) {
        lua_pop(L, 1);
        lua_pushinteger(L, i);
    }
#else
    int isnum;
    lua_Number n = lua_tonumberx(L, -1, &isnum);

    if (!isnum)
        return 0;
    lua_pushnumber(L, n == 0 ? 0 : n);
#endif
    lua_pushvalue(L, -1);
    lua_rawget(L, t);                       /* number, t[number] */
    same = !lua_isnil(L, -1) && put_number(b, L, -2) &&
           b->len - at == len && memcmp(b->data + at, s, len) == 0;
    b->len = at;
    lua_pop(L, 2);
    return same;
}

/*
 * Refuses the table at t, written as an object with at least one number
 * key, when one of its string keys is the name a number key is written
 * as: JSON readers keep one of two equal names, so a value would be lost
 * silently. Tables whose keys are all strings are never walked again
 * (Lua's strings are unique keys); here only the strings that may be a
 * number's text (a digit or '-' first) are read.
 */
static NOINLINE void check_names(prd_buf *b, lua_State *L, int t)
{
    luaL_checkstack(L, 4, CANNOT_ENCODE "no room on the stack");
    lua_pushnil(L);
    while (lua_next(L, t)) {
        size_t len;
        const char *s;

        lua_pop(L, 1);                      /* table, key */
        if (lua_type(L, -1) != LUA_TSTRING)
            continue;
        s = lua_tolstring(L, -1, &len);
        if (len > 0 && ((s[0] >= '0' && s[0] <= '9') || s[0] == '-') &&
            number_key_named(b, L, t, s, len))
            luaL_error(L, CANNOT_ENCODE "Cannot serialise table: duplicate key \"%s\" "
                       "(a number key and a string key)", s);
    }
}

/*
 * A table at t as an object, its first key and value (from lua_next) on
 * the stack. lua-cjson encodes a table as an object as soon as one key is
 * not an array index, walking it from the start: when the first key is
 * such a key, this one walk both decides and encodes.
 */
static void put_object(prd_buf *b, lua_State *L, int t, int depth)
{
    int numbers = 0;                        /* number keys written */

    put_char(b, '{');
    for (;;) {                              /* table, key, value */
        numbers |= put_key(b, L);
        put_value(b, L, lua_type(L, -1), depth);
        lua_pop(L, 1);
        if (!lua_next(L, t))
            break;
        put_char(b, ',');
    }
    if (numbers)
        check_names(b, L, t);
    put_char(b, '}');
}

/*
 * A list of scalars ({"a", "b"}), its first key and value (from lua_next)
 * on the stack, that key (first) already read as an array index: lua_next
 * gives the keys 1, 2, ... in order, so the list is written as it is
 * walked, once. At anything else (another key, a table, a value that
 * cannot be written) the buffer goes back to where it was, the stack to
 * the table alone, and 0 says to apply lua-cjson's rules in full
 * (array_length: sparse arrays, the order of its errors).
 */
static int put_list(prd_buf *b, lua_State *L, int t, lua_Number first)
{
    size_t start = b->len;
    lua_Number i = 1, k = first;

    put_char(b, '[');
    for (;;) {                              /* table, key, value */
        if (k != i || !put_scalar(b, L, -1, lua_type(L, -1))) {
            lua_pop(L, 2);
            b->len = start;
            return 0;
        }
        lua_pop(L, 1);
        if (!lua_next(L, t))
            break;
        put_char(b, ',');
        i++;
        k = array_index(L, -2);
    }
    put_char(b, ']');
    return 1;
}

/* The names cjson_marker looks up, as Lua strings made once (see
 * prd_json_open) and kept in the registry under &marker_names: pushing a
 * new string there could run the collector, and a finalizer that encodes
 * a value (a produce) would overwrite the buffer being written (spec/core/collector_spec.lua). */
static const char *const marker_names[] = {
    "_LOADED", "cjson", "cjson.safe", "array_mt", "empty_array_mt", "empty_array"
};
enum { NAME_LOADED = 1, NAME_CJSON, NAME_CJSON_SAFE, NAME_ARRAY_MT,
       NAME_EMPTY_ARRAY_MT, NAME_EMPTY_ARRAY };

/* Whether the value at idx is the field (NAME_...) of OpenResty's cjson,
 * loaded as "cjson" or "cjson.safe" (lua-cjson 2.1.0 has no such fields).
 * Looked up at each use: only tables with a metatable and light userdata
 * ask. Raw reads of strings made beforehand: allocates nothing. */
static int cjson_marker(lua_State *L, int idx, int name)
{
    int i, is = 0;

    idx = lua_absindex(L, idx);
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, marker_names) != LUA_TTABLE) {
        lua_pop(L, 1);
        return 0;
    }
    lua_rawgeti(L, -1, NAME_LOADED);
    lua_rawget(L, LUA_REGISTRYINDEX);       /* names, _LOADED */
    for (i = 0; i < 2 && !is && lua_istable(L, -1); i++) {
        lua_rawgeti(L, -2, NAME_CJSON + i);
        lua_rawget(L, -2);                  /* names, _LOADED, module */
        if (lua_istable(L, -1)) {
            lua_rawgeti(L, -3, name);
            lua_rawget(L, -2);              /* names, _LOADED, module, field */
            is = !lua_isnil(L, -1) && lua_rawequal(L, -1, idx);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
    return is;
}

/* Elements 1 to n of the table at t, as an array; holes are null. */
static void put_array(prd_buf *b, lua_State *L, int t, int n, int depth)
{
    int i;

    put_char(b, '[');
    for (i = 1; i <= n; i++) {
        if (i > 1)
            put_char(b, ',');
        lua_rawgeti(L, t, i);
        put_value(b, L, lua_type(L, -1), depth);
        lua_pop(L, 1);
    }
    put_char(b, ']');
}

/*
 * The table at t, its metatable at the top (popped): 1 when that is one of OpenResty's array
 * markers and the table was written as its cjson writes it: with
 * cjson.array_mt, elements 1 to #t; with cjson.empty_array_mt, an array
 * by lua-cjson's rules, else elements 1 to #t ([] when empty, even with
 * other keys). Else 0, nothing written.
 */
static int put_marked(prd_buf *b, lua_State *L, int t, int depth)
{
    int n;

    if (cjson_marker(L, -1, NAME_ARRAY_MT)) {
        lua_pop(L, 1);
        put_array(b, L, t, (int)lua_rawlen(L, t), depth);
        return 1;
    }
    if (cjson_marker(L, -1, NAME_EMPTY_ARRAY_MT)) {
        lua_pop(L, 1);
        n = array_length(L, t);
        put_array(b, L, t, n > 0 ? n : (int)lua_rawlen(L, t), depth);
        return 1;
    }
    lua_pop(L, 1);
    return 0;
}

/* Each level of nesting holds two stack slots (key and value) over its
 * table, and remember_key two more for a moment, cjson_marker four; room
 * for LEVELS_PER_CHECK levels is made at once. */
#define LEVELS_PER_CHECK 8

/* The table at t, an absolute index. */
static void put_table(prd_buf *b, lua_State *L, int t, int depth)
{
    int n;
    lua_Number first;

    if (++depth > MAX_DEPTH ||
        (depth % LEVELS_PER_CHECK == 1 && !lua_checkstack(L, 2 * LEVELS_PER_CHECK + 5)))
        luaL_error(L, CANNOT_ENCODE "Cannot serialise, excessive nesting (%d)", depth);
    if (lua_getmetatable(L, t) && put_marked(b, L, t, depth))
        return;                             /* rare: tables seldom have one */
    lua_pushnil(L);
    if (!lua_next(L, t)) {                  /* empty: an object, as lua-cjson */
        put(b, "{}", 2);
        return;
    }
    first = array_index(L, -2);
    if (!first) {
        put_object(b, L, t, depth);
        return;
    }
    if (put_list(b, L, t, first))
        return;
    n = array_length(L, t);
    if (n > 0) {
        put_array(b, L, t, n, depth);
        return;
    }
    lua_pushnil(L);
    lua_next(L, t);                         /* not empty: seen above */
    put_object(b, L, t, depth);
}

/* The value at the top of the stack that put_scalar did not write:
 * OpenResty's cjson.empty_array, else an error. Kept out of put_value,
 * which stays small enough to inline. */
static void put_other(prd_buf *b, lua_State *L, int type)
{
    if (type == LUA_TLIGHTUSERDATA && cjson_marker(L, -1, NAME_EMPTY_ARRAY))
        put(b, "[]", 2);
    else
        fail(L, -1, type == LUA_TNUMBER ? "must not be NaN or Inf" : "type not supported");
}

/* Appends the value at the top of the stack, of the given type. */
static inline void put_value(prd_buf *b, lua_State *L, int type, int depth)
{
    if (type == LUA_TTABLE)
        put_table(b, L, lua_gettop(L), depth);
    else if (type == LUA_TNIL)          /* a hole in an array */
        put(b, "null", 4);
    else if (!put_scalar(b, L, -1, type))
        put_other(b, L, type);
}

/* ---- the module's side ---------------------------------------------- */

/* The protected half of prd_json_call_encoder: the encoder at 1 (or,
 * when nil, the lua-cjson instance of the JSON state, upvalue 1) on the
 * value at 2; returns the bytes. */
static int call_encoder(lua_State *L)
{
    size_t len;

    if (lua_isnil(L, 1)) {
        prd_json_encode_value(L, 2, lua_upvalueindex(1), NULL, &len);
        return 1;
    }
    lua_settop(L, 2);
    lua_call(L, 1, 1);
    if (lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "value: encoder must return a string, got %s",
                          luaL_typename(L, -1));
    return 1;
}

/*
 * The value at val_idx encoded by Lua code: the encoder at enc_idx (json =
 * function), or lua-cjson's instance when enc_idx is 0, in a protected
 * call with *busy raised (the producer's: that code cannot close it).
 * Pushes the bytes, a string. Raises "value: encoder failed: <its
 * error>" for a string a user's encoder raised, other errors as they are.
 */
void prd_json_call_encoder(lua_State *L, int *busy, int state_idx, int enc_idx, int val_idx)
{
    val_idx = lua_absindex(L, val_idx);
    lua_rawgeti(L, state_idx, 3);                       /* call_encoder */
    if (enc_idx)
        lua_pushvalue(L, enc_idx);
    else
        lua_pushnil(L);
    lua_pushvalue(L, val_idx);
    /* no traceback: the error is raised again as the caller's own */
    if (prd_call_pcall(L, busy, 2, 1, 0) != LUA_OK) {
        if (enc_idx && lua_type(L, -1) == LUA_TSTRING &&
            strncmp(lua_tostring(L, -1), "value: ", 7) != 0)
            luaL_error(L, "value: encoder failed: %s", lua_tostring(L, -1));
        lua_error(L);
    }
}

/* Pushes the module's JSON state: a table { buffer, cjson_encode,
 * call_encoder }, cjson_encode set by the first json = "lua-cjson"
 * (open_cjson). */
void prd_json_open(lua_State *L)
{
    prd_buf *b;
    int i;

    lua_createtable(L, 3, 0);
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, call_encoder, 1);
    lua_rawseti(L, -2, 3);
    b = lua_newuserdata(L, sizeof *b);
    memset(b, 0, sizeof *b);
    b->keys_ref = LUA_NOREF;
    lua_pushliteral(L, "key");
    if (lua_topointer(L, -1)) {             /* strings have an identity */
        lua_createtable(L, KEYS, 0);
        b->keys_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, buf_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_rawseti(L, -2, 1);

    lua_createtable(L, (int)(sizeof marker_names / sizeof *marker_names), 0);
    for (i = 0; i < (int)(sizeof marker_names / sizeof *marker_names); i++) {
        lua_pushstring(L, marker_names[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_rawsetp(L, LUA_REGISTRYINDEX, marker_names);
}

/* Stores the encode function of a lua-cjson instance of its own in the
 * JSON state at state_idx, at the first producer that asks for one: a host
 * without lua-cjson loads the module all the same. */
static void open_cjson(lua_State *L, int state_idx)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "cjson");
    if (prd_call_pcall(L, NULL, 1, 1, 0) != LUA_OK)
        luaL_error(L, "json = \"lua-cjson\": %s", lua_tostring(L, -1));
    lua_getfield(L, -1, "new");             /* cjson, new */
    if (!lua_isfunction(L, -1))
        luaL_error(L, "json = \"lua-cjson\": lua-cjson without cjson.new(), need 2.1 or later");
    lua_call(L, 0, 1);                      /* cjson, instance */
    /* A buffer of its own for each call, not the instance's: on LuaJIT
     * and Lua 5.1 the collector runs inside lua_pushlstring before it
     * copies encode's buffer, and a finalizer that produces with
     * json = "lua-cjson" there overwrote the bytes being copied (a value
     * of the right length with another's JSON at its head, spec/core/collector_spec.lua) */
    lua_getfield(L, -1, "encode_keep_buffer");
    if (lua_isfunction(L, -1)) {
        lua_pushboolean(L, 0);
        lua_call(L, 1, 0);
    } else {
        lua_pop(L, 1);
    }
    lua_getfield(L, -1, "encode");
    lua_rawseti(L, state_idx, 2);
    lua_pop(L, 2);
}

/* The buffer of the JSON state at state_idx, or NULL when the json option
 * at json_idx asks for lua-cjson ("lua-cjson", which loads it; raises when
 * it cannot be loaded). The state keeps it. */
prd_buf *prd_json_buffer(lua_State *L, int state_idx, int json_idx)
{
    prd_buf *b;

    if (lua_type(L, json_idx) == LUA_TSTRING && strcmp(lua_tostring(L, json_idx), "lua-cjson") == 0) {
        state_idx = lua_absindex(L, state_idx);
        lua_rawgeti(L, state_idx, 2);
        if (lua_isnil(L, -1))
            open_cjson(L, state_idx);
        lua_pop(L, 1);
        return NULL;
    }
    lua_rawgeti(L, state_idx, 1);
    b = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return b;
}

/*
 * Checks the message value at idx and returns its bytes: the string
 * itself, a table's JSON, or NULL for nil (a tombstone). A table is
 * encoded into b (prd_json_buffer), where the bytes stay until the next
 * encoding; with b NULL, by the lua-cjson instance of the JSON state at
 * state_idx, whose string is left on the stack. Raises on a value that
 * cannot be sent.
 */
const char *prd_json_encode_value(lua_State *L, int idx, int state_idx, prd_buf *b,
                                  size_t *len)
{
    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        return lua_tolstring(L, idx, len);
    case LUA_TNIL:
    case LUA_TNONE:
        *len = 0;
        return NULL;
    case LUA_TTABLE:
        break;
    default:
        luaL_error(L, "value: expected table, string or nil, got %s",
                   luaL_typename(L, idx));
    }
    idx = lua_absindex(L, idx);
    if (!b) {
        lua_rawgeti(L, state_idx, 2);
        lua_pushvalue(L, idx);
        if (prd_call_pcall(L, NULL, 1, 1, 0) != LUA_OK) {
            const char *why = lua_tostring(L, -1);
            luaL_error(L, CANNOT_ENCODE "%s", why ? why : "(error object is not a string)");
        }
        return lua_tolstring(L, -1, len);
    }
    return prd_json_encode_table(L, idx, b, len);
}

/*
 * The JSON of the table at idx (an absolute index) in b (prd_json_buffer),
 * where the bytes stay until the next encoding: prd_json_encode_value's
 * last step, for a caller that has checked the type already (produce).
 * Raises on a table that cannot be encoded.
 */
const char *prd_json_encode_table(lua_State *L, int idx, prd_buf *b, size_t *len)
{
    b->len = 0;
    b->L = L;
    put_table(b, L, idx, 0);
    if (b->cap > BUF_SHRINK_ABOVE && b->len <= b->cap / 4)
        shrink(b);
    *len = b->len;
    return b->data ? b->data : "";
}
