/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * producer.h: the Producer's constructor and methods.
 */
#ifndef PRD_KAFKA_PRODUCER_H
#define PRD_KAFKA_PRODUCER_H

#include "core/base.h"

void prd_producer_open(lua_State *L, int json_idx);
int prd_producer_new(lua_State *L);

#endif
