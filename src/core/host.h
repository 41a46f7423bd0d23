/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * host.h: the host's log hook (producers_set_log) and __gc's shared
 * deadline, per lua_State.
 */
#ifndef PRD_CORE_HOST_H
#define PRD_CORE_HOST_H

#include "core/base.h"

void prd_host_log(lua_State *L, const char *level, const char *line);
int prd_host_write(lua_State *L);
int prd_host_gc_wait_ms(lua_State *L, int timeout_ms);
void prd_host_gc_done(lua_State *L);

#endif
