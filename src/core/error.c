/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * error.c: error objects and the one failure shape. Misuse raises;
 * operational failures return nil, message, name and an error object
 * (producers.Error): a table with message, name, code, retriable, fatal
 * and txn_requires_abort, that prints as its message. Reports carry one
 * as report.error_object, on_error gets one. A failure of a call that
 * waited for the queue (flush, a transaction's commit) also says how
 * many messages are still queued, err.queued. A transport maps its own
 * errors onto codes and names (kafka/errors.c); core knows none.
 */
#include "core/error.h"

static void set_flag(lua_State *L, const char *field, int on)
{
    lua_pushboolean(L, on);
    lua_setfield(L, -2, field);
}

/* Pushes an error object: code, name, message, the PRD_E_* flags. */
void prd_error_push(lua_State *L, int code, const char *name, const char *message,
                    int flags)
{
    lua_createtable(L, 0, 6);
    lua_pushstring(L, message);
    lua_setfield(L, -2, "message");
    lua_pushstring(L, name);
    lua_setfield(L, -2, "name");
    lua_pushinteger(L, code);
    lua_setfield(L, -2, "code");
    set_flag(L, "retriable", flags & PRD_E_RETRIABLE);
    set_flag(L, "fatal", flags & PRD_E_FATAL);
    set_flag(L, "txn_requires_abort", flags & PRD_E_TXN_ABORT);
    luaL_setmetatable(L, PRD_ERROR_T);
}

/* The failure tuple nil, message, name (e.g. "_QUEUE_FULL"), error
 * object; returns 4. */
int prd_fail(lua_State *L, int code, const char *name, const char *message, int flags)
{
    lua_pushnil(L);
    lua_pushstring(L, message);
    lua_pushstring(L, name);
    prd_error_push(L, code, name, message, flags);
    return 4;
}

/* prd_fail for a wait cut short: the error object's queued is the
 * number of messages still queued. */
int prd_fail_queued(lua_State *L, int code, const char *name, const char *message,
                    int flags, long queued)
{
    prd_fail(L, code, name, message, flags);
    lua_pushinteger(L, queued);
    lua_setfield(L, -2, "queued");
    return 4;
}

static int error_tostring(lua_State *L)
{
    lua_getfield(L, 1, "message");
    if (lua_type(L, -1) != LUA_TSTRING)
        lua_pushliteral(L, "producers.Error");
    return 1;
}

/* Makes the error object's metatable. */
void prd_error_open(lua_State *L)
{
    luaL_newmetatable(L, PRD_ERROR_T);
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, PRD_ERROR_T);
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);
}
