/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * errors.h: nats.c's statuses and JetStream's errors as core's error
 * names and codes (errors.c).
 */
#ifndef PRD_NATS_ERRORS_H
#define PRD_NATS_ERRORS_H

#include "nats/handle.h"

/* An error as the library names it. */
typedef struct prd_nats_err {
    int code;
    const char *name;
    int retriable;
    int maybe_stored;            /* the server may have stored the message */
} prd_nats_err;

/* Codes of the library's own (Kafka's numbers where Kafka has the name). */
#define PRD_NATS_NO_STREAM 503           /* JetStream's "no responders" */
#define PRD_NATS_STREAM_FULL 10077       /* JSStreamStoreFailedErr */

prd_nats_err prd_nats_err_of(natsStatus s, int js_code);
prd_nats_err prd_nats_err_named(const char *name);
int prd_nats_fail(lua_State *L, natsStatus s, const char *text);
const char *prd_nats_last_error(void);
int prd_nats_fail_named(lua_State *L, const char *name, const char *text);
void prd_nats_error_push(lua_State *L, prd_nats_err e, const char *text);
void prd_nats_errors_open(lua_State *L);
int prd_nats_event_serve(lua_State *L, prd_nats *p, const prd_nats_event *ev);

#endif
