/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * produce.c: p:produce(topic, key, value, opts), whatever the transport:
 * checks the arguments and options, encodes the value (json.c), makes the
 * message's state (msgstate.h) and hands a prd_message to the transport's
 * send, then serves the reports that are ready. From the encoding to the
 * send no Lua runs (options are read raw), so nothing can close the
 * producer between its checks and the transport's call.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "core/arg.h"
#include "core/call.h"
#include "core/error.h"
#include "core/json.h"
#include "core/msgstate.h"
#include "core/produce.h"
#include "core/producer.h"
#include "core/queue.h"
#include "core/spooling.h"

/* Strings from this size are lent to the transport, not copied: beyond it
 * a copy costs more than the ref that keeps the string (bench/README.md,
 * bench/large_values.lua; a build with -DPRD_NOCOPY_MIN=... compares). */
#ifndef PRD_NOCOPY_MIN
#define PRD_NOCOPY_MIN 1024
#endif

/* opts[field], read raw: produce runs no metamethod, so no Lua can run
 * between its checks and librdkafka's call. Pushes the field. */
static int raw_field(lua_State *L, int opts, const char *field)
{
    lua_pushstring(L, field);
    return lua_rawget(L, opts);
}

/* opts.field as an integer from min to max, or def when absent. */
static lua_Integer opt_integer(lua_State *L, int opts, const char *field,
                               lua_Integer def, lua_Integer min, lua_Integer max)
{
    lua_Integer n = def;
    int type = raw_field(L, opts, field), found;

    if (type != LUA_TNIL) {
        found = type == LUA_TNUMBER ? prd_arg_integer(L, -1, min, max, &n) : PRD_ARG_FRACTION;
        if (found & PRD_ARG_FRACTION)
            luaL_error(L, "opts.%s: expected an integer, got %s", field,
                       type == LUA_TNUMBER ? "a fraction" : luaL_typename(L, -1));
        if (found & PRD_ARG_OUTSIDE) {
            char range[96];     /* lua_pushfstring has no %I on 5.1 */
            snprintf(range, sizeof range, "(%lld to %lld), got %lld",
                     (long long)min, (long long)max, (long long)n);
            luaL_error(L, "opts.%s: out of range %s", field, range);
        }
    }
    lua_pop(L, 1);
    return n;
}

/* The string at idx as a C string: raises naming what when it holds a
 * NUL byte, which C would cut it at. */
static const char *check_c_string(lua_State *L, int idx, const char *what)
{
    const char *s = prd_arg_c_string(L, idx, NULL);

    if (!s)
        luaL_error(L, "%s must not contain a NUL byte", what);
    return s;
}

/* The type check of a header's name and value at name_idx, value_idx. */
static void check_header(lua_State *L, int name_idx, int value_idx)
{
    int bad = lua_type(L, name_idx) != LUA_TSTRING ? name_idx
            : lua_type(L, value_idx) != LUA_TSTRING ? value_idx : 0;

    if (bad)
        luaL_error(L, "opts.headers: names and values must be strings, got %s",
                   luaL_typename(L, bad));
    check_c_string(L, name_idx, "opts.headers: names");
}

/* Calls f(L, name_idx, value_idx, ud) for each header of the table at t:
 * name = value, or an array of {name, value} pairs (to keep their order
 * and repeat names). Raw reads: no Lua runs. */
void prd_produce_each_header(lua_State *L, int t,
                             void (*f)(lua_State *, int, int, void *), void *ud)
{
    lua_pushnil(L);
    while (lua_next(L, t)) {                 /* ..., name, value */
        if (lua_type(L, -2) == LUA_TNUMBER && lua_istable(L, -1)) {
            lua_rawgeti(L, -1, 1);
            lua_rawgeti(L, -2, 2);           /* ..., pair, name, value */
            f(L, -2, -1, ud);
            lua_pop(L, 2);
        } else {
            f(L, -2, -1, ud);
        }
        lua_pop(L, 1);
    }
}

static void check_header_cb(lua_State *L, int name_idx, int value_idx, void *ud)
{
    (void)ud;
    check_header(L, name_idx, value_idx);
}

/* Serves reports without waiting; raises what a callback raised. */
static void serve_now(lua_State *L, prd_producer *p)
{
    int served = 0;

    if (prd_queue_serve(L, p, 0, &served, INT_MAX) != LUA_OK)
        lua_error(L);
}

/*
 * The state of a message whose value is the Lua string at idx, lent to
 * the transport instead of copied (m->lent): a ref in the state keeps the
 * string alive until the report has been served. Out of memory for the
 * state, the string is copied after all.
 */
static void *lend(lua_State *L, int idx, int ref, int takes_report, prd_message *m)
{
    void *opaque;
    int kept;

    lua_pushvalue(L, idx);
    kept = luaL_ref(L, LUA_REGISTRYINDEX);
    if (!(opaque = prd_msgstate_keep(ref, takes_report, kept))) {
        luaL_unref(L, LUA_REGISTRYINDEX, kept);
        return prd_msgstate_pack(ref, takes_report);
    }
    m->lent = 1;
    return opaque;
}

/* Stack slots of produce, after its arguments (1 to 5): CALLBACK and
 * HEADERS are made and read only when opts is given. */
enum { CALLBACK = 6, HEADERS, ENCODED };

/* Checks produce's arguments into m and, when opts is given, the stack
 * slots CALLBACK and HEADERS; returns whether it was. Raises on misuse;
 * nothing is held yet. */
static int check_args(lua_State *L, prd_message *m)
{
    int opts = 0, type;

    if (lua_type(L, 2) != LUA_TSTRING)
        luaL_error(L, "topic: expected string, got %s", luaL_typename(L, 2));
    m->topic = check_c_string(L, 2, "topic:");
    if (lua_type(L, 3) == LUA_TSTRING)
        m->key = lua_tolstring(L, 3, &m->key_len);
    else if (!lua_isnoneornil(L, 3))
        luaL_error(L, "key: expected string or nil, got %s", luaL_typename(L, 3));
    if ((type = lua_type(L, 5)) == LUA_TTABLE)
        opts = 5;
    else if (type != LUA_TNIL && type != LUA_TNONE)
        luaL_error(L, "opts: expected table or nil, got %s", luaL_typename(L, 5));
    if (!opts) {                /* the common case: defaults, no slot made */
        m->partition = PRD_PARTITION_ANY;
        return 0;
    }
    lua_settop(L, 5);

    m->partition = opt_integer(L, opts, "partition", PRD_PARTITION_ANY,
                               PRD_PARTITION_ANY, INT32_MAX);
    m->timestamp = opt_integer(L, opts, "timestamp", 0, 0, INT64_MAX);
    if (raw_field(L, opts, "on_delivery") != LUA_TNIL &&     /* CALLBACK */
        !prd_arg_callable(L, CALLBACK))
        luaL_error(L, "opts.on_delivery: expected a function or callable, got %s",
                   luaL_typename(L, CALLBACK));
    switch (raw_field(L, opts, "headers")) {                 /* HEADERS */
    case LUA_TNIL:
        break;
    case LUA_TTABLE:
        prd_produce_each_header(L, HEADERS, check_header_cb, NULL);
        break;
    default:
        luaL_error(L, "opts.headers: expected a table, got %s", luaL_typename(L, HEADERS));
    }
    if (!lua_isnil(L, CALLBACK))
        m->takes_report = prd_arg_takes_report(L, CALLBACK);
    return 1;
}

/* The table at 4 encoded by Lua code (lua-cjson, or json = function),
 * with the producer busy, so that code cannot close it; the bytes are
 * left in slot ENCODED. Raises what the encoder raised. */
static void encode_with_lua(lua_State *L, prd_producer *p)
{
    if (p->encoder == LUA_NOREF) {
        prd_json_call_encoder(L, &p->busy, lua_upvalueindex(1), 0, 4);
        return;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->encoder);      /* ENCODED, for now */
    prd_json_call_encoder(L, &p->busy, lua_upvalueindex(1), ENCODED, 4);
    lua_remove(L, ENCODED);
}

/* The value at 4 into m: a string as it is, nil as a tombstone, a table
 * encoded. The last step of produce that may run Lua. */
static void encode(lua_State *L, prd_producer *p, prd_message *m)
{
    switch (lua_type(L, 4)) {
    case LUA_TSTRING:
        m->value = lua_tolstring(L, 4, &m->value_len);
        m->value_string = 4;
        return;
    case LUA_TTABLE:
        if (p->json) {          /* the C encoder: runs no Lua */
            m->value = prd_json_encode_value(L, 4, lua_upvalueindex(1), p->json,
                                        &m->value_len);
            return;
        }
        lua_settop(L, HEADERS);     /* opts' slots, or two nil ones */
        encode_with_lua(L, p);                           /* ENCODED */
        m->value = lua_tolstring(L, ENCODED, &m->value_len);
        m->value_string = ENCODED;
        return;
    case LUA_TNIL:
    case LUA_TNONE:
        return;
    default:
        luaL_error(L, "value: expected table, string or nil, got %s",
                   luaL_typename(L, 4));
    }
}

/* The opaque that carries m's callback (at CALLBACK, when opts was given)
 * and, for a large string value, the string, to the report. Allocates no
 * Lua object, so no finalizer runs before the message is sent. */
static void *message_state(lua_State *L, prd_message *m, int opts)
{
    int ref = LUA_NOREF;

    if (opts && !lua_isnil(L, CALLBACK)) {
        lua_pushvalue(L, CALLBACK);
        ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    if (m->value_len >= PRD_NOCOPY_MIN && m->value_string)
        return lend(L, m->value_string, ref, m->takes_report, m);
    return prd_msgstate_pack(ref, m->takes_report);
}

/***
 * Queues a message, then serves the reports that are ready (not when
 * called from a callback of the same producer: the outer call serves).
 * @function produce
 * @string topic
 * @tparam[opt] string key
 * @tparam[opt] table|string value table: encoded (JSON by default);
 *   string: as is; nil: a null value (tombstone)
 * @tparam[opt] table opts partition, timestamp (ms), headers, on_delivery
 *   (read raw: metamethods are not called)
 * @treturn[1] true
 * @treturn[2] nil, nothing queued, no report will come
 * @treturn[2] string message, e.g. "Local: Queue full"
 * @treturn[2] string error name, e.g. "_QUEUE_FULL"
 * @treturn[2] table error object (producers.Error)
 * @raise on bad arguments, and with the error of a delivery callback
 *   served after queueing (the message is queued all the same)
 */
static int producer_produce(lua_State *L)
{
    prd_producer *p = prd_producer_check(L);
    prd_message m = {0};
    int n, opts;

    opts = check_args(L, &m);
    encode(L, p, &m);
    /* A finalizer may have run above, at an allocation, and closed the
     * producer; from here to librdkafka's call no Lua runs, and the
     * encoder's buffer holds the bytes. */
    if (p->closed)
        return luaL_error(L, "producer is closed");
    if (p->closing == PRD_PURGED)
        return prd_fail(L, PRD_ERR_DESTROY, "_DESTROY", "producer is closing", 0);
    if (opts && lua_istable(L, HEADERS))
        m.headers = HEADERS;
    if (p->spool)               /* the durable spool: spooling.c */
        return prd_spooling_produce(L, p, &m, opts ? CALLBACK : 0, serve_now,
                                    prd_produce_each_header);
    m.state = message_state(L, &m, opts);
    if ((n = p->tr->send(L, p, &m))) {
        prd_msgstate_release(L, m.state);
        return n;               /* serves nothing: the refusal stands */
    }
    p->queued++;
    if (p->serve_on_produce)
        serve_now(L, p);
    lua_pushboolean(L, 1);
    return 1;
}


static const luaL_Reg methods[] = {
    {"produce", producer_produce},
    {NULL, NULL}};

/* Sets produce into the table on top, with the JSON state (json.c) at
 * json_idx as its upvalue. */
void prd_produce_methods(lua_State *L, int json_idx)
{
    lua_pushvalue(L, json_idx);
    luaL_setfuncs(L, methods, 1);
}
