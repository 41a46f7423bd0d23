/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * produce.h: p:produce, whatever the transport (produce.c).
 */
#ifndef PRD_CORE_PRODUCE_H
#define PRD_CORE_PRODUCE_H

#include "core/transport.h"

void prd_produce_each_header(lua_State *L, int t,
                             void (*f)(lua_State *, int, int, void *), void *ud);
void prd_produce_methods(lua_State *L, int json_idx);
void prd_produce_class(lua_State *L, const char *type, int json_idx, const luaL_Reg *own);

#endif
