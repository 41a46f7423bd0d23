/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * report.h: the NATS transport's queue of reports and events, filled by
 * nats.c's threads, served by core (prd_transport's queue functions).
 */
#ifndef PRD_NATS_REPORT_H
#define PRD_NATS_REPORT_H

#include "nats/handle.h"

int prd_nats_queue_init(prd_nats *p);
void prd_nats_queue_free(prd_nats *p);
int prd_nats_track(prd_nats *p, prd_nats_report *r);
prd_nats_report *prd_nats_untrack(prd_nats *p, natsMsg *msg);
void prd_nats_take_back(prd_nats *p, const char *name, const char *text);
void prd_nats_push_event(prd_nats *p, int level, natsStatus s, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 4, 5)))
#endif
    ;
void prd_nats_on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure);
prd_nats_report *prd_nats_report_new(prd_nats *p);
void prd_nats_report_free(prd_nats *p, prd_nats_report *r);
int64_t prd_nats_now_us(void);
void prd_nats_note_denial(prd_nats *p, const char *text, int64_t now_us);

int prd_nats_next_event(lua_State *L, prd_producer *base, int timeout_ms, int serve,
                        int *status);
const void *prd_nats_next_report(prd_producer *base);
void *prd_nats_report_state(const void *report);
void prd_nats_count(prd_producer *base, const void *report);
int prd_nats_report_call(lua_State *L, prd_producer *base, const void *report);
int prd_nats_report_push(lua_State *L, prd_producer *base, const void *report);
int prd_nats_waiting(prd_producer *base);

#endif
