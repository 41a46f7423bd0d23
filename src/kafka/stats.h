/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * stats.h: statistics.interval.ms's events, on_stats and metrics().
 */
#ifndef PRD_KAFKA_STATS_H
#define PRD_KAFKA_STATS_H

#include "kafka/handle.h"

int prd_stats_interval_ms(rd_kafka_conf_t *conf);
int prd_stats_start(lua_State *L, prd_kafka *p);
int prd_stats_serve(lua_State *L, prd_kafka *p, rd_kafka_event_t *ev);
void prd_latency_tick(prd_latency *l, int64_t now_ms);
void prd_stats_free(prd_kafka *p);
void prd_stats_open(lua_State *L);
int prd_stats_metrics(lua_State *L);

#endif
