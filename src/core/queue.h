/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * queue.h: serving a producer's report queue (queue.c).
 */
#ifndef PRD_CORE_QUEUE_H
#define PRD_CORE_QUEUE_H

#include "core/transport.h"

int prd_queue_serve(lua_State *L, prd_producer *p, int timeout_ms, int *served, int max);
int prd_queue_take(lua_State *L, prd_producer *p, int max);
long prd_queue_drain(lua_State *L, prd_producer *p, int timeout_ms, int *kept);
void prd_queue_drain_silently(lua_State *L, prd_producer *p, int timeout_ms);
void prd_queue_drop(lua_State *L, prd_producer *p);
void prd_queue_wake_if_waiting(prd_producer *p);
void prd_queue_open(lua_State *L);

#endif
