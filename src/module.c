/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * module.c: luaopen_producers_core, the C half of the `producers` module.
 * The public module is lua/producers/init.lua on top of it. The one file
 * that knows both src/core/ and the Kafka transport (src/kafka/).
 */
#include <time.h>

#include "core/base.h"
#include "core/call.h"
#include "core/error.h"
#include "core/json.h"
#include "core/log.h"
#include "core/signal.h"
#include "kafka/config.h"
#include "kafka/errors.h"
#include "kafka/mock.h"
#include "kafka/producer.h"
#ifdef PRODUCERS_HAVE_NATS
#include "nats/producer.h"
#endif
#include "producers.h"

/* core.encode_value(value [, json]) --> bytes or nil: a message value as
 * produce would send it (for backends written in Lua); json as the
 * producer option: "lua-cjson", or a function called for a table, which
 * must return a string. */
static int prd_encode_value_fn(lua_State *L)
{
    prd_buf *b;
    size_t len;
    const char *bytes;

    lua_settop(L, 2);
    if (lua_type(L, 1) == LUA_TTABLE && !lua_isnoneornil(L, 2) && lua_type(L, 2) != LUA_TSTRING) {
        prd_json_call_encoder(L, NULL, lua_upvalueindex(1), 2, 1);
        return 1;
    }
    b = prd_json_buffer(L, lua_upvalueindex(1), 2);
    bytes = prd_json_encode_value(L, 1, lua_upvalueindex(1), b, &len);
    if (bytes)
        lua_pushlstring(L, bytes, len);
    else
        lua_pushnil(L);
    return 1;
}

/* core.time_ms() --> the wall clock in milliseconds since the epoch, a
 * message timestamp for backends written in Lua (os.time counts seconds,
 * and a sandboxed host may have no os). */
static int prd_time_ms(lua_State *L)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushinteger(L, (lua_Integer)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    return 1;
}

PRODUCERS_API int luaopen_producers_core(lua_State *L)
{
    int json;

    prd_json_open(L);
    json = lua_gettop(L);

    lua_newtable(L);
    lua_pushliteral(L, PRD_VERSION);
    lua_setfield(L, -2, "version");
    lua_pushstring(L, rd_kafka_version_str());
    lua_setfield(L, -2, "librdkafka_version");
    lua_pushvalue(L, json);
    lua_pushcclosure(L, prd_kafka_new, 1);
    lua_setfield(L, -2, "new");
    prd_kafka_open(L, json);
    lua_setfield(L, -2, "methods");
#ifdef PRODUCERS_HAVE_NATS
    /* the NATS transport: core.nats_new, its methods, nats.c's version
     * (absent when built without it: producers.nats says so) */
    lua_pushvalue(L, json);
    lua_pushcclosure(L, prd_nats_new, 1);
    lua_setfield(L, -2, "nats_new");
    prd_nats_open(L, json);
    lua_setfield(L, -2, "nats_methods");
    prd_nats_version(L);
    lua_setfield(L, -2, "nats_version");
#endif
    prd_mock_open(L);
    lua_setfield(L, -2, "mock_cluster");
    lua_pushcfunction(L, prd_kafka_error_string);
    lua_setfield(L, -2, "error_string");
    prd_error_open(L);
    lua_pushcfunction(L, prd_kafka_error_new);
    lua_setfield(L, -2, "error");
    prd_log_open(L);
    lua_setfield(L, -2, "log_levels");
    lua_pushcfunction(L, prd_time_ms);
    lua_setfield(L, -2, "time_ms");
    lua_pushcfunction(L, prd_conf_check);
    lua_setfield(L, -2, "check_config");
    lua_pushvalue(L, json);
    lua_pushcclosure(L, prd_encode_value_fn, 1);
    lua_setfield(L, -2, "encode_value");
    prd_signal_open(L);
    lua_setfield(L, -2, "signals");
    /* JSON text into Lua values, as statistics are decoded: for
     * producers-cat's JSON lines and the specs */
    lua_pushcfunction(L, prd_json_decode_fn);
    lua_setfield(L, -2, "json_decode");
    /* hooks for the specs only, apart from what backends use */
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, prd_mock_test_fatal_error);
    lua_setfield(L, -2, "fatal_error");
    lua_setfield(L, -2, "testing");
    return 1;
}
