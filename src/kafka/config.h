/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * config.h: a Lua table of librdkafka properties into a new conf. Raises,
 * naming the property, on a bad key or value. The values of secret
 * properties are kept in *secrets (freed by prd_secrets_free) so that
 * prd_redact can hide them.
 */
#ifndef PRD_KAFKA_CONFIG_H
#define PRD_KAFKA_CONFIG_H

#include <librdkafka/rdkafka.h>

#include "core/base.h"

typedef struct prd_secrets prd_secrets;
rd_kafka_conf_t *prd_conf_from_table(lua_State *L, int idx, prd_secrets **secrets);
void prd_secrets_free(prd_secrets *secrets);
void prd_redact(const prd_secrets *secrets, char *text);   /* text: PRD_TEXT_MAX bytes */
void prd_redact_log(const void *ud, char *text);   /* prd_log's redact: ud = &secrets */
int prd_secrets_token(prd_secrets **secrets, const char *token, int in_use);
int prd_conf_check(lua_State *L);

#endif
