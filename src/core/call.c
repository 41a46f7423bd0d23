/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * call.c: the one way C calls into Lua: prd_call_pcall, with the producer
 * marked busy while the Lua runs (close is refused and nested calls serve
 * nothing: prd_call_check_not_busy) and, where the error goes on to the
 * caller, the traceback handler below. prd_call_protected runs a C
 * function with a light userdata that way: nothing that allocates (so
 * nothing that can run a finalizer, which could close the producer or
 * raise past us) runs outside the protected call.
 *
 * The functions called are made once per Lua state and kept in the
 * registry (prd_call_push_function): LuaJIT allocates a new closure on
 * every lua_pushcfunction.
 */
#include <string.h>

#include "core/call.h"

#ifndef LUA_GCISRUNNING            /* Lua 5.1: taken as running */
#define gc_is_running(L) 1
#else
#define gc_is_running(L) lua_gc(L, LUA_GCISRUNNING, 0)
#endif

static const char handler_key;

/* Whether msg is the interpreter's Ctrl-C, "interrupted!" (lua.c's and
 * luajit's), bare or after a position ("script.lua:12: "): the
 * interpreter prints its own traceback for it. */
static int is_interrupt(const char *msg)
{
    size_t len = strlen(msg), i;

    if (len < 12 || strcmp(msg + len - 12, "interrupted!") != 0)
        return 0;
    if (len == 12)
        return 1;
    if (len < 16 || msg[len - 13] != ' ' || msg[len - 14] != ':')
        return 0;
    for (i = len - 15; i > 0 && msg[i] >= '0' && msg[i] <= '9'; i--)
        ;
    return i < len - 15 && msg[i] == ':';       /* ":<line>: interrupted!" */
}

/*
 * Message handler for protected calls: appends a traceback to strings
 * (but the interpreter's Ctrl-C: one traceback, the interpreter's).
 * The collector waits while it allocates: a finalizer run from here would
 * run inside the error handler, where an error it raises is taken for an
 * error in the handler.
 */
static int traceback(lua_State *L)
{
    int running = gc_is_running(L);
    const char *msg;

    if (running)
        lua_gc(L, LUA_GCSTOP, 0);
    if ((msg = lua_tostring(L, 1)) && !is_interrupt(msg))
        luaL_traceback(L, L, msg, 1);
    if (running)
        lua_gc(L, LUA_GCRESTART, 0);
    return 1;
}

/* Pushes f, made once per Lua state and kept in the registry under key. */
void prd_call_push_function(lua_State *L, const void *key, lua_CFunction f)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) == LUA_TFUNCTION)
        return;
    lua_pop(L, 1);
    lua_pushcfunction(L, f);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

/* Pushes the traceback handler. */
void prd_call_push_handler(lua_State *L)
{
    prd_call_push_function(L, &handler_key, traceback);
}

/*
 * lua_pcall with *busy raised while the Lua runs (busy may be NULL).
 * handler: the stack index of the traceback handler, or 0 for none, where
 * the caller turns the error into a message of its own (an encoder's
 * error raised by produce with the caller's line).
 */
int prd_call_pcall(lua_State *L, int *busy, int nargs, int nresults, int handler)
{
    int status;

    if (busy)
        (*busy)++;
    status = lua_pcall(L, nargs, nresults, handler);
    if (busy)
        (*busy)--;
    return status;
}

/*
 * Calls f (kept under key) with the light userdata ud, protected, with
 * the traceback handler, *busy raised. f pushes what it needs. Returns
 * the status, the error on top of the stack on failure.
 */
int prd_call_protected(lua_State *L, int *busy, const void *key, lua_CFunction f,
                       void *ud)
{
    int base = lua_gettop(L) + 1, status;

    prd_call_push_handler(L);
    prd_call_push_function(L, key, f);
    lua_pushlightuserdata(L, ud);
    status = prd_call_pcall(L, busy, 1, 0, base);
    lua_remove(L, base);
    return status;
}

/* Raises when Lua called by one of a producer's methods is running:
 * closing or flushing there would pull the producer from under that
 * method. */
void prd_call_check_not_busy(lua_State *L, int busy, const char *method)
{
    if (busy)
        luaL_error(L, "%s: not allowed from a delivery callback, logger or "
                      "encoder of the same producer", method);
}

/* Makes the handler before any producer exists: made later, on first
 * use, the allocation could run a finalizer that closes the producer
 * being served. */
void prd_call_open(lua_State *L)
{
    prd_call_push_handler(L);
    lua_pop(L, 1);
}
