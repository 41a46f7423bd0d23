/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * base.h: what every C file of the module includes first: Lua's headers
 * (with lua-compat-5.3's 5.3 API on 5.1, 5.2 and LuaJIT), the version and
 * the bound on text handed to Lua. No transport's header is included from
 * src/core/: a transport (src/kafka/) includes core, never the reverse.
 *
 * Thread rule: a producer belongs to the lua_State that created it and is
 * only ever touched from the thread running that state. A transport's own
 * threads never call into Lua: what they report is queued and served by
 * the producer's methods on the caller's thread; their only touch on a
 * producer is prd_wake_signal (wake.c).
 */
#ifndef PRD_CORE_BASE_H
#define PRD_CORE_BASE_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM < 503
#include "compat-5.3.h"
#endif

#define PRD_VERSION "0.1.0"

/* The longest text (a log line, an error) handed to Lua, with its NUL. */
#define PRD_TEXT_MAX 1024

/* The timeout of flush and close when none is given. */
#define PRD_DEFAULT_TIMEOUT_MS 30000

#endif
