/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * spool.h: the NATS transport's side of the durable spool (spool.c).
 */
#ifndef PRD_NATS_SPOOL_H
#define PRD_NATS_SPOOL_H

#include "core/transport.h"
#include "nats/handle.h"

#define PRD_NATS_MSG_ID_HEADER "Nats-Msg-Id"

int prd_nats_outcome(const void *report);
int prd_nats_spool_headers(lua_State *L, const prd_message *m, natsMsg *msg);
void prd_nats_connection_moved(prd_nats *p, int64_t now_us);
int prd_nats_stream_loading(prd_nats *p, int64_t now_us);
int prd_nats_spool_full(lua_State *L, prd_nats *p);

#endif
