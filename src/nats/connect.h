/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * connect.h: the NATS connection and JetStream context from the Lua
 * layer's options (connect.c).
 */
#ifndef PRD_NATS_CONNECT_H
#define PRD_NATS_CONNECT_H

#include "nats/handle.h"

int prd_nats_connect(lua_State *L, prd_nats *p, int conf);
void prd_nats_disconnect(prd_nats *p);

#endif
