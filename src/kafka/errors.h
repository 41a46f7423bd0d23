/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * errors.h: librdkafka's errors as core's error objects and failures, and
 * client-level errors handed to on_error.
 */
#ifndef PRD_KAFKA_ERRORS_H
#define PRD_KAFKA_ERRORS_H

#include "core/error.h"
#include "kafka/handle.h"

void prd_kafka_error_push(lua_State *L, rd_kafka_resp_err_t err, const char *message,
                          int flags);
void prd_kafka_error_push_rd(lua_State *L, const rd_kafka_error_t *e, const char *message);
int prd_kafka_fail(lua_State *L, rd_kafka_resp_err_t err);
int prd_kafka_fail_rd(lua_State *L, const rd_kafka_error_t *e);
int prd_kafka_fail_text(lua_State *L, rd_kafka_resp_err_t err, const char *text);
int prd_kafka_fail_fatal(lua_State *L, rd_kafka_t *rk);
rd_kafka_resp_err_t prd_kafka_check_err_name(lua_State *L, int idx);
int prd_kafka_error_new(lua_State *L);
int prd_kafka_error_string(lua_State *L);
int prd_kafka_error_report(lua_State *L, prd_kafka *p, rd_kafka_resp_err_t err,
                           char *text, int fatal);
int prd_kafka_outcome(const void *report);
void prd_kafka_errors_open(lua_State *L);

#endif
