/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * signal.h: what a waiting call compares with to see that it was
 * interrupted: the interpreter's hook (lua.c's Ctrl-C sets one) and the
 * count of trapped signals caught.
 */
#ifndef PRD_CORE_SIGNAL_H
#define PRD_CORE_SIGNAL_H

#include "core/base.h"

typedef struct prd_watch {
    lua_State *main;             /* the main thread (Lua 5.2+; else NULL): in
                                    PUC Lua hooks are per thread, and lua.c
                                    sets its hook on the main one */
    lua_Hook hook, main_hook;
    int mask, count, main_mask;
    long caught;
} prd_watch;

#define PRD_INTR_HOOK (-1)       /* prd_watch_check: the hook changed */
#define PRD_WATCH_SLICE_MS 100   /* waits are checked at least this often */

void prd_watch_start(lua_State *L, prd_watch *w);
void prd_watch_hook(lua_State *L, prd_watch *w);
int prd_watch_check(lua_State *L, const prd_watch *w);
int prd_watch_fail(lua_State *L, int why, long queued);
void prd_signal_open(lua_State *L);

#endif
