/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * handle.c: the Producer userdata: making one, and finding an open one on
 * the stack for a method (prd_handle_check). librdkafka's threads do not
 * survive fork(): a forked child counts one more generation than its
 * parent, and refuses the parent's producers.
 */
#include <pthread.h>
#include <string.h>

#include "kafka/handle.h"

/* Its address marks the memory of a producer (see prd_handle_check). */
static const char producer_magic;

static int fork_generation;
static pthread_once_t fork_watch = PTHREAD_ONCE_INIT;

static void forked(void)
{
    fork_generation++;
}

static void watch_forks(void)
{
    pthread_atfork(NULL, NULL, forked);
}

/* Counts forks from now on (once per process). */
void prd_handle_watch_forks(void)
{
    pthread_once(&fork_watch, watch_forks);
}

/* Whether p was made in another process (before a fork). */
int prd_handle_forked(const prd_producer *p)
{
    return p->generation != fork_generation;
}

/* Pushes a new producer, no handle yet, its refs LUA_NOREF. */
prd_producer *prd_handle_new(lua_State *L)
{
    prd_producer *p = lua_newuserdata(L, sizeof *p);

    memset(p, 0, sizeof *p);
    p->magic = &producer_magic;
    p->generation = fork_generation;
    p->on_delivery = p->on_error = p->on_token = p->encoder = p->on_stats = LUA_NOREF;
    p->log.logger = LUA_NOREF;
    prd_wake_init(&p->wake);
    luaL_setmetatable(L, PRD_PRODUCER_T);
    return p;
}

/* The open producer at 1. A userdata of a producer's size that starts
 * with the mark is one (Lua code cannot write into a userdata): cheaper
 * than luaL_checkudata's registry lookup by name, which then only runs to
 * raise the error. */
prd_producer *prd_handle_check(lua_State *L)
{
    prd_producer *p = lua_touserdata(L, 1);

    if (!p || lua_rawlen(L, 1) != sizeof *p || p->magic != &producer_magic)
        p = luaL_checkudata(L, 1, PRD_PRODUCER_T);
    if (!p->rk)
        luaL_error(L, "producer is closed");
    if (p->generation != fork_generation)
        luaL_error(L, PRD_HANDLE_FORKED_MSG);
    return p;
}
