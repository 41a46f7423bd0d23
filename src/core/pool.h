/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * pool.h: a free list of blocks of one size, so that a thing made for
 * every message (a spooled message's entry, a NATS report) needs no
 * malloc/free once warm. A block given back holds the list's link in its
 * first bytes; past `keep` blocks, it is freed instead. One thread uses
 * a pool (no lock).
 */
#ifndef PRD_CORE_POOL_H
#define PRD_CORE_POOL_H

#include <stdlib.h>
#include <string.h>

typedef struct prd_pool {
    void *free;                  /* the first block given back, or NULL */
    size_t count;                /* blocks in the list */
    size_t keep;                 /* at most this many kept */
} prd_pool;

/* A zeroed block of size bytes (every block of a pool has the same
 * size): one given back, else a new one; NULL out of memory. */
static inline void *prd_pool_take(prd_pool *pool, size_t size)
{
    void *block = pool->free;

    if (!block)
        return calloc(1, size);
    memcpy(&pool->free, block, sizeof pool->free);
    pool->count--;
    memset(block, 0, size);
    return block;
}

/* Gives block back (NULL: nothing), or frees it when the pool keeps
 * enough. */
static inline void prd_pool_give(prd_pool *pool, void *block)
{
    if (!block)
        return;
    if (pool->count >= pool->keep) {
        free(block);
        return;
    }
    memcpy(block, &pool->free, sizeof pool->free);
    pool->free = block;
    pool->count++;
}

/* Frees every block the pool keeps. */
static inline void prd_pool_free(prd_pool *pool)
{
    void *block;

    while ((block = pool->free)) {
        memcpy(&pool->free, block, sizeof pool->free);
        free(block);
    }
    pool->count = 0;
}

#endif
