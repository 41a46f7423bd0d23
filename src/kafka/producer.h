/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * producer.h: the Kafka transport (prd_kafka_transport), its constructor
 * and its methods.
 */
#ifndef PRD_KAFKA_PRODUCER_H
#define PRD_KAFKA_PRODUCER_H

#include "core/transport.h"

extern const prd_transport prd_kafka_transport;
void prd_kafka_open(lua_State *L, int json_idx);
int prd_kafka_new(lua_State *L);

#endif
