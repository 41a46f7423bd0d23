/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * oauth.h: SASL/OAUTHBEARER tokens from the on_oauthbearer_token callback.
 */
#ifndef PRD_KAFKA_OAUTH_H
#define PRD_KAFKA_OAUTH_H

#include "kafka/handle.h"

int prd_oauth_refresh(lua_State *L, prd_kafka *p, rd_kafka_event_t *ev);
int prd_oauth_echo(const prd_kafka *p, rd_kafka_event_t *ev);
void prd_oauth_open(lua_State *L);

#endif
