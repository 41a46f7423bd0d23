/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * wake.h: the wake-up of a producer whose queue got work: a flag its
 * serving reads without a lock, and event_fd()'s pipe.
 */
#ifndef PRD_CORE_WAKE_H
#define PRD_CORE_WAKE_H

#include <stdatomic.h>

#include "core/base.h"

typedef struct prd_wake {
    int pipe[2];                 /* made by event_fd(), or -1, -1 */
    atomic_int write_fd;         /* pipe[1] for prd_wake_signal, or -1 */
    atomic_int ready;            /* work may be waiting: set by
                                    prd_wake_signal, cleared by serving */
} prd_wake;

void prd_wake_init(prd_wake *w);
void prd_wake_signal(prd_wake *w);
void prd_wake_clear(prd_wake *w);
void prd_wake_take(prd_wake *w);
int prd_wake_push_fd(lua_State *L, prd_wake *w);
void prd_wake_close(prd_wake *w);

/* Whether work may be waiting since the last prd_wake_take: the check
 * produce makes on every call, without taking the queue's lock. */
static inline int prd_wake_ready(prd_wake *w)
{
    return atomic_load(&w->ready);
}

#endif
