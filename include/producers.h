/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * producers.h: the embedding API, for C programs that run Lua.
 *
 * Link libproducers (static or shared; CMake: find_package(producers) and
 * target producers::producers_static or producers::producers_shared;
 * pkg-config: producers) and open the module in your own lua_State, with
 * no Lua search path needed: the Lua half of the module is compiled in.
 *
 *     lua_State *L = luaL_newstate();
 *     luaL_openlibs(L);
 *     producers_preload(L);           // package.preload: producers, producers.*
 *     luaL_dostring(L, "local producers = require('producers') ...");
 *
 * lua-cjson must be loadable by `require("cjson")` (Debian: lua-cjson), or
 * put in package.preload["cjson"] by the host before the first require.
 *
 * Threads: a lua_State, and every producer made in it, belongs to one
 * thread at a time; Lua's own rule. librdkafka's threads never call into
 * Lua: reports, logs and errors are served on the thread that calls
 * produce, poll, flush or close. Run one producer per lua_State and as
 * many lua_States on as many threads as you like; never touch one state
 * from two threads at once. A producer is freed by close or when its
 * lua_State is closed (lua_close waits at most the producer's
 * gc_flush_timeout, default 1 s, for deliveries).
 *
 * The library is built for one Lua version (PRODUCERS_LUA at configure
 * time) and does not link liblua: the host provides it.
 */
#ifndef PRODUCERS_H
#define PRODUCERS_H

#include <lua.h>

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

#ifdef __cplusplus
}
#endif

#endif
