/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * seqtable.h: a table from a spool record's seq to its entry
 * (core/spooling.c's messages in flight or waiting with a callback).
 *
 * Seqs are handed out in order and mostly leave in order, so the table is
 * a ring indexed by seq over a window [base, base + ring_cap): a lookup is
 * one slot, the next message's slot is the next one (in the cache). An
 * entry the window moves past (a message in flight far longer than the
 * others: a partition without a leader) goes to a small hash on the side,
 * so memory follows the entries held, not the span of their seqs: the
 * ring grows only while a quarter of it is used.
 */
#ifndef PRD_CORE_SEQTABLE_H
#define PRD_CORE_SEQTABLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct prd_seqslot {
    uint64_t seq;
    void *value;                 /* NULL: empty */
} prd_seqslot;

typedef struct prd_seqtable {
    void **ring;                 /* seq & (ring_cap - 1) -> value */
    size_t ring_cap, ring_count;
    uint64_t base;               /* the ring's first seq */
    prd_seqslot *side;           /* seqs below base: open addressing */
    size_t side_cap, side_count;
} prd_seqtable;

/* The value of seq, or NULL. */
void *prd_seqtable_get(const prd_seqtable *t, uint64_t seq);

/* Adds seq (not in t) with value (not NULL): 0, or -1 out of memory
 * (t unchanged). */
int prd_seqtable_put(prd_seqtable *t, uint64_t seq, void *value);

/* Removes seq (nothing when it is not in t). */
void prd_seqtable_del(prd_seqtable *t, uint64_t seq);

/* How many seqs t holds. */
size_t prd_seqtable_count(const prd_seqtable *t);

/* Calls fn(value, ud) for every value of t, in no order; fn must not
 * change t. */
void prd_seqtable_each(const prd_seqtable *t, void (*fn)(void *value, void *ud), void *ud);

/* Frees t's memory (not its values); t is then empty and usable. */
void prd_seqtable_free(prd_seqtable *t);

#endif
