/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * producers.h: the embedding API, for C and C++ programs that run Lua.
 *
 * The library is built for one Lua (5.1, 5.2, 5.3, 5.4 or LuaJIT) and
 * named after it, as Debian names Lua libraries, so builds for several
 * install into one prefix side by side:
 *
 *     Lua 5.4   liblua5.4-producers.so.0   pkg-config lua5.4-producers
 *               find_package(lua5.4-producers)  include/lua5.4-producers/
 *     LuaJIT    libluajit-producers.so.0   pkg-config luajit-producers
 *               find_package(luajit-producers)  include/luajit-producers/
 *
 * Both bring Lua's headers and library and librdkafka with them:
 *
 *     cc host.c $(pkg-config --cflags --libs lua5.4-producers)
 *
 * Open the module in your own lua_State, with no Lua search path needed
 * (the Lua half of the module is compiled in):
 *
 *     lua_State *L = luaL_newstate();
 *     luaL_openlibs(L);               // at least base, package, string, table, math
 *     producers_preload(L);           // package.preload: producers, producers.*
 *     luaL_dostring(L, "local producers = require('producers') ...");
 *
 * This header includes <lua.h> with C linkage, as lua.hpp does, so C++
 * hosts may include it before or after lua.hpp. It stops the compile
 * when <lua.h> is another Lua than the one the library was built for
 * (producers_lua.h, written at build time, says which).
 *
 * Threads: a lua_State, and every producer made in it, belongs to one
 * thread at a time; Lua's own rule. librdkafka's threads never call into
 * Lua: reports, logs and errors are served on the thread that calls
 * produce, poll, flush or close. Run one producer per lua_State and as
 * many lua_States on as many threads as you like; never touch one state
 * from two threads at once. A producer is freed by close or when its
 * lua_State is closed: lua_close waits for deliveries at most one
 * gc_flush_timeout (default 1 s) for all the state's producers together.
 *
 * The library does not link liblua: the host provides it.
 */
#ifndef PRODUCERS_H
#define PRODUCERS_H

#ifdef __cplusplus
extern "C" {
#endif
#include <lua.h>
#ifdef __cplusplus
}
#endif

#include "producers_lua.h"   /* PRODUCERS_LUA, PRODUCERS_LUA_VERSION_NUM */

#if LUA_VERSION_NUM != PRODUCERS_LUA_VERSION_NUM
#error "producers.h: <lua.h> is not the Lua this libproducers was built for (PRODUCERS_LUA in producers_lua.h): compile with its package's flags, $(pkg-config --cflags lua5.4-producers) or luajit-producers ..."
#endif
/* LuaJIT's luaconf.h defines LUAI_MAXSTACK, PUC Lua 5.1's does not */
#if PRODUCERS_LUA_VERSION_NUM == 501 && defined(PRODUCERS_LUAJIT) && !defined(LUAI_MAXSTACK)
#error "producers.h: this libproducers was built for LuaJIT, <lua.h> is PUC Lua 5.1's: use $(pkg-config --cflags luajit-producers)"
#endif
#if PRODUCERS_LUA_VERSION_NUM == 501 && !defined(PRODUCERS_LUAJIT) && defined(LUAI_MAXSTACK)
#error "producers.h: this libproducers was built for PUC Lua 5.1, <lua.h> is LuaJIT's: use $(pkg-config --cflags lua5.1-producers)"
#endif

#if defined(__GNUC__)
#define PRODUCERS_API __attribute__((visibility("default")))
#else
#define PRODUCERS_API
#endif

#define PRODUCERS_VERSION "0.1.0"

#ifdef __cplusplus
extern "C" {
#endif

/* Registers loaders for "producers", "producers.core" and the module's Lua
 * files in package.preload. Needs the package library opened. */
PRODUCERS_API void producers_preload(lua_State *L);

/* The C half: what require("producers.core") returns. */
PRODUCERS_API int luaopen_producers_core(lua_State *L);

/* The library's version, "0.1.0": PRODUCERS_VERSION of the libproducers
 * linked, which a host can compare with the header's. */
PRODUCERS_API const char *producers_version(void);

/*
 * A C log hook for hosts that route diagnostics themselves: fn(ud, level,
 * message) receives, for producers of L, each line the library would
 * write to stderr (level "debug", "info", "warn" or "error"; message with
 * no newline), instead of stderr:
 *   - "NAME collected with N message(s) not delivered", from a producer's
 *     __gc (lua_close), when no Lua code may run;
 *   - the default logger's lines (a producer made with no `logger`).
 * A producer's own `logger` option still takes its lines. fn runs on the
 * thread running L, possibly inside lua_close: it must not call into L.
 * fn NULL restores stderr.
 */
typedef void (*producers_log_fn)(void *ud, const char *level, const char *message);
PRODUCERS_API void producers_set_log(lua_State *L, producers_log_fn fn, void *ud);

#ifdef __cplusplus
}
#endif

#endif
