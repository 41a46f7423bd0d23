/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * call.h: protected calls into Lua, and the re-entrancy guard they keep.
 */
#ifndef PRD_CORE_CALL_H
#define PRD_CORE_CALL_H

#include "core/base.h"

void prd_call_push_function(lua_State *L, const void *key, lua_CFunction f);
void prd_call_push_handler(lua_State *L);
int prd_call_pcall(lua_State *L, int *busy, int nargs, int nresults, int handler);
int prd_call_protected(lua_State *L, int *busy, const void *key, lua_CFunction f,
                       void *ud);
void prd_call_check_not_busy(lua_State *L, int busy, const char *method);
void prd_call_open(lua_State *L);

#endif
