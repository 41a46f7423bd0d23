/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * msgstate.c: the malloc'd form of a message's state (msgstate.h), and
 * the release of either form after its report.
 */
#include <stdlib.h>

#include "core/msgstate.h"

/* A state holding the value's string ref too (and the callback's, if
 * any): NULL when out of memory. */
void *prd_msgstate_keep(int ref, int takes_report, int value)
{
    prd_msgstate *s = malloc(sizeof *s);

    if (s) {
        s->callback = ref;
        s->takes_report = takes_report;
        s->value = value;
        s->release = NULL;
    }
    return s;
}

/* Releases the refs a state holds, and its memory (through its release
 * hook when it has one). */
void prd_msgstate_release(lua_State *L, void *state)
{
    prd_msgstate *s = state;

    if (!state)
        return;
    if (prd_msgstate_packed(state)) {
        luaL_unref(L, LUA_REGISTRYINDEX, prd_msgstate_ref(state));
        return;
    }
    luaL_unref(L, LUA_REGISTRYINDEX, s->callback);
    luaL_unref(L, LUA_REGISTRYINDEX, s->value);
    if (s->release)
        s->release(s);
    else
        free(s);
}

/* Sets the message's own callback, when it has one, as the field
 * on_delivery of the table on top (a report for reports()). */
void prd_msgstate_set_on_delivery(lua_State *L, const void *state)
{
    int ref = prd_msgstate_ref(state);

    if (ref == LUA_NOREF)
        return;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    lua_setfield(L, -2, "on_delivery");
}

/*
 * Pushes the function a report of the message with state goes to: its
 * own callback, else the producer's on_delivery (a registry ref, kept at
 * stack slot PRD_ON_DELIVERY_SLOT from the batch's first report on).
 * Returns 0 and pushes nothing when it has neither (the transport's
 * default report); *takes_report: whether the function takes the report
 * table.
 */
int prd_msgstate_push_callback(lua_State *L, const void *state, int on_delivery,
                               int on_delivery_report, int *takes_report)
{
    int ref = prd_msgstate_ref(state);

    if (ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
        *takes_report = prd_msgstate_takes_report(state);
        return 1;
    }
    if (on_delivery == LUA_NOREF)
        return 0;
    if (lua_gettop(L) < PRD_ON_DELIVERY_SLOT)       /* the batch's first */
        lua_rawgeti(L, LUA_REGISTRYINDEX, on_delivery);
    lua_pushvalue(L, PRD_ON_DELIVERY_SLOT);
    *takes_report = on_delivery_report;
    return 1;
}
