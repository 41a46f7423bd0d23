/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * spooling.h: the durable spool (src/spool/) between a producer and its
 * transport (issue #22, docs/spool.md). With a spool, produce appends the
 * message to it and a feeder hands the records not acked and not in
 * flight to the transport, oldest first; a final report acks its record,
 * a retriable one leaves it for the feeder to send again. Every function
 * but open, produce and adopt runs no Lua.
 */
#ifndef PRD_CORE_SPOOLING_H
#define PRD_CORE_SPOOLING_H

#include "core/transport.h"

/* The header every spooled record is sent with: its stable id, the
 * spool's id in 32 hex digits, '-', its seq (docs/spool.md). */
#define PRD_SPOOL_ID_HEADER "producers-id"

/* prd_produce_each_header's shape (produce.h), passed in by produce. */
typedef void (*prd_each_header_fn)(lua_State *L, int t,
                                   void (*f)(lua_State *, int, int, void *), void *ud);

void prd_spooling_open(lua_State *L, prd_producer *p, int opts);
void prd_spooling_start(lua_State *L, prd_producer *p);
int prd_spooling_produce(lua_State *L, prd_producer *p, const prd_message *m, int callback,
                         void (*serve)(lua_State *, prd_producer *), prd_each_header_fn each);
void prd_spooling_feed(lua_State *L, prd_producer *p);
int prd_spooling_settle(prd_producer *p, const void *report);
void prd_spooling_flush(prd_producer *p);
void prd_spooling_report_fields(lua_State *L, prd_producer *p, const void *state);
void prd_spooling_push_metrics(lua_State *L, prd_producer *p);
int prd_spooling_adopt(lua_State *L, prd_producer *p, const char *dir);
void prd_spooling_close(lua_State *L, prd_producer *p);
void prd_spooling_forget(prd_producer *p);

#endif
