/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * msgstate.h: what a message carries to its report, in the one pointer a
 * transport keeps for it (librdkafka's opaque):
 * - NULL: nothing;
 * - an odd value: its own callback's registry ref, shifted left by two,
 *   bit 1 set when the callback takes a report;
 * - else a prd_msgstate (malloc'd, so even): for a message whose value
 *   the transport does not copy, a Lua string kept alive until the report;
 *   or the first member of a larger state whose release hook takes the
 *   memory back (spooling.c's pooled entries).
 * prd_msgstate_release releases what it holds, once, after the report.
 * The common message (no callback, or one) needs no malloc.
 */
#ifndef PRD_CORE_MSGSTATE_H
#define PRD_CORE_MSGSTATE_H

#include <stdint.h>

#include "core/base.h"

typedef struct prd_msgstate {
    int callback;                /* registry ref, or LUA_NOREF */
    int takes_report;
    int value;                   /* registry ref of the value's string */
    void (*release)(void *state); /* gives the memory back; NULL: free() */
} prd_msgstate;

static inline void *prd_msgstate_pack(int ref, int takes_report)
{
    if (ref == LUA_NOREF)
        return NULL;
    return (void *)(((intptr_t)ref << 2) | (takes_report ? 2 : 0) | 1);
}

static inline int prd_msgstate_packed(const void *state)
{
    return ((intptr_t)state & 1) != 0;
}

static inline int prd_msgstate_ref(const void *state)
{
    if (!state)
        return LUA_NOREF;
    if (prd_msgstate_packed(state))
        return (int)((intptr_t)state >> 2);
    return ((const prd_msgstate *)state)->callback;
}

static inline int prd_msgstate_takes_report(const void *state)
{
    if (!state)
        return 0;
    if (prd_msgstate_packed(state))
        return ((intptr_t)state & 2) != 0;
    return ((const prd_msgstate *)state)->takes_report;
}

void *prd_msgstate_keep(int ref, int takes_report, int value);
void prd_msgstate_release(lua_State *L, void *state);
void prd_msgstate_set_on_delivery(lua_State *L, const void *state);
int prd_msgstate_push_callback(lua_State *L, const void *state, int on_delivery,
                               int on_delivery_report, int *takes_report);

/* Where prd_msgstate_push_callback keeps the producer's on_delivery for
 * the rest of a batch (a transport's report may): one registry read a
 * batch instead of one a report (bench/README.md, issue #24). */
#define PRD_ON_DELIVERY_SLOT 2

#endif
