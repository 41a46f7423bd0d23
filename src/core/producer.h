/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * producer.h: making and checking a producer, and its transport-free
 * methods (producer.c).
 */
#ifndef PRD_CORE_PRODUCER_H
#define PRD_CORE_PRODUCER_H

#include "core/transport.h"

prd_producer *prd_producer_new(lua_State *L, const prd_transport *tr);
prd_producer *prd_producer_check(lua_State *L);
prd_producer *prd_producer_check_any(lua_State *L);
void prd_producer_methods(lua_State *L);
void prd_producer_metamethods(lua_State *L);
void prd_producer_open(lua_State *L);

#endif
