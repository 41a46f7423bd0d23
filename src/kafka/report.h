/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * report.h: serving the producer's main queue (delivery reports, logs,
 * errors, statistics, token requests) on the caller's thread, and
 * waiting for it to empty.
 */
#ifndef PRD_KAFKA_REPORT_H
#define PRD_KAFKA_REPORT_H

#include "kafka/handle.h"

int prd_report_serve(lua_State *L, prd_producer *p, int timeout_ms, int *served, int max);
void prd_report_wake(rd_kafka_t *rk, void *opaque);
void prd_report_wake_if_waiting(prd_producer *p);
int prd_report_take(lua_State *L, prd_producer *p, int max);
long prd_report_drain(lua_State *L, prd_producer *p, int timeout_ms, int *kept);
void prd_report_drain_silently(lua_State *L, prd_producer *p, int timeout_ms);
void prd_report_drop(lua_State *L, prd_producer *p);
void prd_report_open(lua_State *L);

#endif
