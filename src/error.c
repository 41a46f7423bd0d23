/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * error.c: the small checks and result shapes every Lua-facing function
 * shares. Misuse raises; operational failures return nil, message, name.
 */
#include <limits.h>
#include <string.h>
#include <time.h>

#include "prd.h"

/* Pushes the failure tuple nil, message, name (e.g. "_QUEUE_FULL"). */
int prd_fail(lua_State *L, rd_kafka_resp_err_t err)
{
    lua_pushnil(L);
    lua_pushstring(L, rd_kafka_err2str(err));
    lua_pushstring(L, rd_kafka_err2name(err));
    return 3;
}

/* nil, text, name: a failure that librdkafka's message does not say. */
int prd_fail_text(lua_State *L, rd_kafka_resp_err_t err, const char *text)
{
    lua_pushnil(L);
    lua_pushstring(L, text);
    lua_pushstring(L, rd_kafka_err2name(err));
    return 3;
}

/* True if the value at idx can be called: a function, or has __call. */
int prd_check_callable(lua_State *L, int idx)
{
    if (lua_isfunction(L, idx))
        return 1;
    if (luaL_getmetafield(L, idx, "__call") != LUA_TNIL) {
        lua_pop(L, 1);
        return 1;
    }
    return 0;
}

/*
 * Whether the callable at idx can see a delivery report: a Lua function
 * declared with one parameter, function(err), cannot, and then no report
 * table is built for it. Lua 5.2+ tell through lua_getinfo; LuaJIT's
 * debug.getinfo has the same fields; on Lua 5.1 every callback gets one.
 */
int prd_takes_report(lua_State *L, int idx)
{
    int takes = 1;

    if (lua_type(L, idx) != LUA_TFUNCTION || lua_iscfunction(L, idx))
        return 1;
    idx = lua_absindex(L, idx);
#if LUA_VERSION_NUM >= 502
    {
        lua_Debug ar;

        lua_pushvalue(L, idx);
        if (lua_getinfo(L, ">u", &ar))
            takes = ar.nparams >= 2 || ar.isvararg;
    }
#else
    {
        int top = lua_gettop(L);

        lua_pushglobaltable(L);         /* raw reads: no metamethod runs */
        lua_pushliteral(L, "debug");
        lua_rawget(L, -2);              /* _G, debug */
        if (lua_istable(L, -1)) {       /* a sandbox may have none */
            lua_pushliteral(L, "getinfo");
            lua_rawget(L, -2);
            lua_pushvalue(L, idx);
            lua_pushliteral(L, "u");
            if (lua_pcall(L, 2, 1, 0) == LUA_OK && lua_istable(L, -1)) {
                lua_getfield(L, -1, "nparams");
                lua_getfield(L, -2, "isvararg");
                if (lua_isnumber(L, -2))
                    takes = lua_tointeger(L, -2) >= 2 || lua_toboolean(L, -1);
            }
        }
        lua_settop(L, top);
    }
#endif
    return takes;
}

/* Optional timeout in seconds at idx, as milliseconds for librdkafka. */
int prd_check_timeout_ms(lua_State *L, int idx, int default_ms)
{
    lua_Number s;

    if (lua_isnoneornil(L, idx))
        return default_ms;
    s = luaL_checknumber(L, idx);
    luaL_argcheck(L, s >= 0, idx, "timeout must be a number of seconds >= 0");
    if (s * 1000 >= (lua_Number)INT_MAX)
        return INT_MAX;
    return (int)(s * 1000 + 0.5);
}

int64_t prd_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The error name at idx ("NOT_LEADER_FOR_PARTITION", "_TIMED_OUT") as
 * its code; raises on a name librdkafka does not know. */
rd_kafka_resp_err_t prd_check_err_name(lua_State *L, int idx)
{
    const struct rd_kafka_err_desc *descs;
    const char *name = luaL_checkstring(L, idx);
    size_t i, n;

    rd_kafka_get_err_descs(&descs, &n);
    for (i = 0; i < n; i++)
        if (descs[i].name && strcmp(descs[i].name, name) == 0)
            return descs[i].code;
    luaL_argerror(L, idx, lua_pushfstring(L, "unknown error name '%s'", name));
    return RD_KAFKA_RESP_ERR_NO_ERROR;
}

/***
 * core.error_string(name) --> librdkafka's message for an error name
 * ("_MSG_TIMED_OUT" --> "Local: Message timed out"); raises if unknown.
 */
int prd_error_string(lua_State *L)
{
    lua_pushstring(L, rd_kafka_err2str(prd_check_err_name(L, 1)));
    return 1;
}
