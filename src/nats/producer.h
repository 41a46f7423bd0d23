/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * producer.h: the NATS JetStream transport (prd_nats_transport), its
 * constructor and its methods.
 */
#ifndef PRD_NATS_PRODUCER_H
#define PRD_NATS_PRODUCER_H

#include "core/transport.h"

extern const prd_transport prd_nats_transport;
void prd_nats_open(lua_State *L, int json_idx);
int prd_nats_new(lua_State *L);
int prd_nats_version(lua_State *L);

#endif
