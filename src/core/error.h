/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * error.h: error objects (producers.Error) and the one failure shape,
 * nil, message, name, error object.
 */
#ifndef PRD_CORE_ERROR_H
#define PRD_CORE_ERROR_H

#include "core/base.h"

#define PRD_ERROR_T "producers.Error"

/* Error codes core itself fails with. Every transport reports Kafka's
 * numbers and names (librdkafka's RD_KAFKA_RESP_ERR__TIMED_OUT,
 * RD_KAFKA_RESP_ERR__INTR and RD_KAFKA_RESP_ERR__DESTROY), so an error reads the same whatever the
 * backend. */
#define PRD_ERR_TIMED_OUT (-185)
#define PRD_ERR_INTR (-163)
#define PRD_ERR_DESTROY (-197)

/* The error object's flags. */
enum { PRD_E_RETRIABLE = 1, PRD_E_FATAL = 2, PRD_E_TXN_ABORT = 4 };

void prd_error_push(lua_State *L, int code, const char *name, const char *message,
                    int flags);
int prd_fail(lua_State *L, int code, const char *name, const char *message, int flags);
int prd_fail_queued(lua_State *L, int code, const char *name, const char *message,
                    int flags, long queued);
void prd_error_open(lua_State *L);

#endif
