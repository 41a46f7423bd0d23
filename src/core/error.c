/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * error.c: the small checks and result shapes every Lua-facing function
 * shares. Misuse raises; operational failures return nil, message, name
 * and an error object (producers.Error): a table with message, name,
 * code, retriable, fatal and txn_requires_abort, that prints as its
 * message. Reports carry one as report.error_object, on_error gets one.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "prd.h"

/*
 * Errors after which the same request may succeed if made again: Kafka's
 * retriable broker errors (its RetriableException family) and librdkafka's
 * local ones of the same kind (a full queue, a timeout, a lost
 * connection). librdkafka has already retried a failed delivery as far as
 * message.timeout.ms allowed: retriable there means producing it again
 * may succeed.
 */
static int is_retriable(rd_kafka_resp_err_t err)
{
    switch ((int)err) {
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__RESOLVE:
    case RD_KAFKA_RESP_ERR__WAIT_COORD:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:              /* a corrupt message */
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
    case RD_KAFKA_RESP_ERR_CONCURRENT_TRANSACTIONS:
    case RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR:
    case RD_KAFKA_RESP_ERR_UNKNOWN_LEADER_EPOCH:
    case RD_KAFKA_RESP_ERR_OFFSET_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_THROTTLING_QUOTA_EXCEEDED:
        return 1;
    default:
        return 0;
    }
}

static void set_flag(lua_State *L, const char *field, int on)
{
    lua_pushboolean(L, on);
    lua_setfield(L, -2, field);
}

/* Pushes an error object: err's name and code, message (librdkafka's for
 * err when NULL), the PRD_E_* flags. */
void prd_push_error(lua_State *L, rd_kafka_resp_err_t err, const char *message,
                    int flags)
{
    lua_createtable(L, 0, 6);
    lua_pushstring(L, message ? message : rd_kafka_err2str(err));
    lua_setfield(L, -2, "message");
    lua_pushstring(L, rd_kafka_err2name(err));
    lua_setfield(L, -2, "name");
    lua_pushinteger(L, err);
    lua_setfield(L, -2, "code");
    set_flag(L, "retriable", (flags & PRD_E_RETRIABLE) || is_retriable(err));
    set_flag(L, "fatal", flags & PRD_E_FATAL);
    set_flag(L, "txn_requires_abort", flags & PRD_E_TXN_ABORT);
    luaL_setmetatable(L, PRD_ERROR_T);
}

/* Pushes librdkafka's error e as an error object. */
void prd_push_rd_error(lua_State *L, const rd_kafka_error_t *e, const char *message)
{
    prd_push_error(L, rd_kafka_error_code(e),
                   message ? message : rd_kafka_error_string(e),
                   (rd_kafka_error_is_retriable(e) ? PRD_E_RETRIABLE : 0) |
                   (rd_kafka_error_is_fatal(e) ? PRD_E_FATAL : 0) |
                   (rd_kafka_error_txn_requires_abort(e) ? PRD_E_TXN_ABORT : 0));
}

/* nil, message, name, error object: a failure whose message librdkafka's
 * does not say when text is given (NULL: librdkafka's). */
int prd_fail_text(lua_State *L, rd_kafka_resp_err_t err, const char *text)
{
    lua_pushnil(L);
    lua_pushstring(L, text ? text : rd_kafka_err2str(err));
    lua_pushstring(L, rd_kafka_err2name(err));
    prd_push_error(L, err, lua_tostring(L, -2), 0);
    return 4;
}

/* The failure tuple nil, message, name (e.g. "_QUEUE_FULL"), error object. */
int prd_fail(lua_State *L, rd_kafka_resp_err_t err)
{
    return prd_fail_text(L, err, NULL);
}

/*
 * The failure tuple for a producer that had a fatal error (err _FATAL):
 * nil, "Local: Fatal error", "_FATAL" as before, and an error object that
 * names the fatal error itself (e.g. "_FENCED"), fatal = true, with the
 * message "fatal error: <what happened>".
 */
int prd_fail_fatal(lua_State *L, rd_kafka_t *rk)
{
    char text[PRD_TEXT_MAX - 16], message[PRD_TEXT_MAX];
    rd_kafka_resp_err_t err = rd_kafka_fatal_error(rk, text, sizeof text);

    snprintf(message, sizeof message, "fatal error: %s", err ? text : "unknown");
    lua_pushnil(L);
    lua_pushstring(L, rd_kafka_err2str(RD_KAFKA_RESP_ERR__FATAL));
    lua_pushliteral(L, "_FATAL");
    prd_push_error(L, err ? err : RD_KAFKA_RESP_ERR__FATAL, message, PRD_E_FATAL);
    return 4;
}

static int error_tostring(lua_State *L)
{
    lua_getfield(L, 1, "message");
    if (lua_type(L, -1) != LUA_TSTRING)
        lua_pushliteral(L, "producers.Error");
    return 1;
}

/* The boolean field of the table at idx as flag, or 0. */
static int flag_field(lua_State *L, int idx, const char *field, int flag)
{
    lua_getfield(L, idx, field);
    flag = lua_toboolean(L, -1) ? flag : 0;
    lua_pop(L, 1);
    return flag;
}

/***
 * core.error(name [, message [, flags]]) --> an error object, as the
 * Kafka backend returns them (for backends written in Lua and tests):
 * flags is a table of booleans fatal, txn_requires_abort and retriable
 * (which, when absent, is what the name says).
 */
static int new_error(lua_State *L)
{
    rd_kafka_resp_err_t err = prd_check_err_name(L, 1);
    const char *message = luaL_optstring(L, 2, NULL);

    if (lua_isnoneornil(L, 3)) {
        prd_push_error(L, err, message, 0);
        return 1;
    }
    luaL_checktype(L, 3, LUA_TTABLE);
    prd_push_error(L, err, message, flag_field(L, 3, "fatal", PRD_E_FATAL) |
                                    flag_field(L, 3, "txn_requires_abort", PRD_E_TXN_ABORT));
    lua_getfield(L, 3, "retriable");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
    } else {
        lua_pushboolean(L, lua_toboolean(L, -1));
        lua_setfield(L, -3, "retriable");
        lua_pop(L, 1);
    }
    return 1;
}

/* Makes the error object's metatable; pushes core.error. */
void prd_error_open(lua_State *L)
{
    luaL_newmetatable(L, PRD_ERROR_T);
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, PRD_ERROR_T);
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);
    lua_pushcfunction(L, new_error);
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
