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
