/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * seqtable.c: seq -> entry, a ring over the recent seqs and a hash on the
 * side for the few the ring moved past (seqtable.h).
 */
#include <stdlib.h>

#include "core/seqtable.h"

#define RING_MIN 1024            /* the ring's first size (a power of two) */
#define SIDE_MIN 16              /* the side hash's first size */

/* --- the side hash: open addressing, the seq in the slot --- */

static size_t side_home(size_t cap, uint64_t seq)
{
    return (size_t)((seq * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
}

static void side_insert(prd_seqslot *slots, size_t cap, uint64_t seq, void *value)
{
    size_t i = side_home(cap, seq);

    while (slots[i].value)
        i = (i + 1) & (cap - 1);
    slots[i].seq = seq;
    slots[i].value = value;
}

/* Room for more seqs in the side hash (at most half full): 0, or -1 out
 * of memory (t unchanged). */
static int side_reserve(prd_seqtable *t, size_t more)
{
    size_t need = t->side_count + more, cap = t->side_cap ? t->side_cap : SIDE_MIN, i;
    prd_seqslot *slots;

    if (need * 2 <= t->side_cap)
        return 0;
    while (need * 2 > cap)
        cap *= 2;
    if (!(slots = calloc(cap, sizeof *slots)))
        return -1;
    for (i = 0; i < t->side_cap; i++)
        if (t->side[i].value)
            side_insert(slots, cap, t->side[i].seq, t->side[i].value);
    free(t->side);
    t->side = slots;
    t->side_cap = cap;
    return 0;
}

static prd_seqslot *side_find(const prd_seqtable *t, uint64_t seq)
{
    size_t i;

    if (!t->side_cap)
        return NULL;
    for (i = side_home(t->side_cap, seq); t->side[i].value; i = (i + 1) & (t->side_cap - 1))
        if (t->side[i].seq == seq)
            return &t->side[i];
    return NULL;
}

/* Whether slot k, home of an entry, lies cyclically in (i, j]. */
static int between(size_t i, size_t k, size_t j)
{
    return i <= j ? (i < k && k <= j) : (i < k || k <= j);
}

/* Empties slot s (backward shift: no tombstones). */
static void side_remove(prd_seqtable *t, prd_seqslot *s)
{
    size_t mask = t->side_cap - 1, i = (size_t)(s - t->side), j;

    t->side[i].value = NULL;
    t->side_count--;
    for (j = (i + 1) & mask; t->side[j].value; j = (j + 1) & mask)
        if (!between(i, side_home(t->side_cap, t->side[j].seq), j)) {
            t->side[i] = t->side[j];
            t->side[j].value = NULL;
            i = j;
        }
}

/* --- the ring: [base, base + ring_cap), a slot a seq --- */

/* The seq the ring's slot i stands for. */
static uint64_t ring_seq(const prd_seqtable *t, size_t i)
{
    return t->base + ((i - (size_t)t->base) & (t->ring_cap - 1));
}

/* Doubles the ring (RING_MIN the first time): 0, or -1 out of memory. */
static int ring_grow(prd_seqtable *t)
{
    size_t cap = t->ring_cap ? t->ring_cap * 2 : RING_MIN, i;
    void **ring = calloc(cap, sizeof *ring);

    if (!ring)
        return -1;
    for (i = 0; i < t->ring_cap; i++)
        if (t->ring[i])
            ring[ring_seq(t, i) & (cap - 1)] = t->ring[i];
    free(t->ring);
    t->ring = ring;
    t->ring_cap = cap;
    return 0;
}

/* Moves the ring's window to start at base (past the current one): the
 * seqs it leaves go to the side hash. 0, or -1 out of memory (t
 * unchanged). */
static int ring_shift(prd_seqtable *t, uint64_t base)
{
    uint64_t end = base - t->base < t->ring_cap ? base : t->base + t->ring_cap, seq;
    size_t mask = t->ring_cap - 1, moving = 0;

    for (seq = t->base; seq < end && moving < t->ring_count; seq++)
        moving += t->ring[seq & mask] != NULL;
    if (moving && side_reserve(t, moving) != 0)
        return -1;
    for (seq = t->base; seq < end && moving; seq++) {
        void **slot = &t->ring[seq & mask];

        if (*slot) {
            side_insert(t->side, t->side_cap, seq, *slot);
            t->side_count++;
            t->ring_count--;
            moving--;
            *slot = NULL;
        }
    }
    t->base = base;
    return 0;
}

/* --- the table --- */

void *prd_seqtable_get(const prd_seqtable *t, uint64_t seq)
{
    prd_seqslot *s;

    if (seq >= t->base)
        return seq - t->base < t->ring_cap ? t->ring[seq & (t->ring_cap - 1)] : NULL;
    s = side_find(t, seq);
    return s ? s->value : NULL;
}

int prd_seqtable_put(prd_seqtable *t, uint64_t seq, void *value)
{
    if (!t->ring_cap) {
        if (ring_grow(t) != 0)
            return -1;
        t->base = seq;
    }
    if (seq < t->base) {
        if (side_reserve(t, 1) != 0)
            return -1;
        side_insert(t->side, t->side_cap, seq, value);
        t->side_count++;
        return 0;
    }
    while (seq - t->base >= t->ring_cap) {
        int dense = t->ring_count >= t->ring_cap / 4, near = seq - t->base < 2 * t->ring_cap;

        if ((dense && near ? ring_grow(t) : ring_shift(t, seq - t->ring_cap + 1)) != 0)
            return -1;
    }
    t->ring[seq & (t->ring_cap - 1)] = value;
    t->ring_count++;
    return 0;
}

void prd_seqtable_del(prd_seqtable *t, uint64_t seq)
{
    prd_seqslot *s;

    if (seq >= t->base) {
        if (seq - t->base < t->ring_cap && t->ring[seq & (t->ring_cap - 1)]) {
            t->ring[seq & (t->ring_cap - 1)] = NULL;
            t->ring_count--;
        }
        return;
    }
    if ((s = side_find(t, seq)))
        side_remove(t, s);
}

size_t prd_seqtable_count(const prd_seqtable *t)
{
    return t->ring_count + t->side_count;
}

void prd_seqtable_each(const prd_seqtable *t, void (*fn)(void *value, void *ud), void *ud)
{
    size_t i;

    for (i = 0; i < t->ring_cap; i++)
        if (t->ring[i])
            fn(t->ring[i], ud);
    for (i = 0; i < t->side_cap; i++)
        if (t->side[i].value)
            fn(t->side[i].value, ud);
}

void prd_seqtable_free(prd_seqtable *t)
{
    free(t->ring);
    free(t->side);
    t->ring = NULL;
    t->side = NULL;
    t->ring_cap = t->ring_count = t->side_cap = t->side_count = 0;
    t->base = 0;
}
