/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * report.h: librdkafka's main queue as the Kafka transport's events
 * (prd_transport's queue functions: core/transport.h).
 */
#ifndef PRD_KAFKA_REPORT_H
#define PRD_KAFKA_REPORT_H

#include "kafka/handle.h"

int prd_report_next_event(lua_State *L, prd_producer *base, int timeout_ms, int serve,
                          int *status);
const void *prd_report_next(prd_producer *base);
void *prd_report_state(const void *report);
void prd_report_count(prd_producer *base, const void *report);
int prd_report_call(lua_State *L, prd_producer *base, const void *report);
int prd_report_push(lua_State *L, prd_producer *base, const void *report);
int prd_report_waiting(prd_producer *base);
void prd_report_send_now(prd_producer *base);
void prd_report_wake(rd_kafka_t *rk, void *opaque);

#endif
