/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * arg.h: the checks of arguments and options every method shares.
 */
#ifndef PRD_CORE_ARG_H
#define PRD_CORE_ARG_H

#include <string.h>

#include "core/base.h"

int prd_arg_callable(lua_State *L, int idx);
int prd_arg_takes_report(lua_State *L, int idx);
int prd_arg_timeout_ms(lua_State *L, int idx, int default_ms);

/* The string at idx (its length in *len when len is given), or NULL when
 * it holds a NUL byte, which C would cut it at: the caller raises or
 * fails, naming what it was. Inline: produce checks its topic with it. */
static inline const char *prd_arg_c_string(lua_State *L, int idx, size_t *len)
{
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);

    if (len)
        *len = n;
    return s && strlen(s) == n ? s : NULL;
}

/* prd_arg_integer's findings: 0, or either or both of these. */
enum { PRD_ARG_FRACTION = 1, PRD_ARG_OUTSIDE = 2 };
int prd_arg_integer(lua_State *L, int idx, lua_Integer min, lua_Integer max, lua_Integer *n);

#endif
