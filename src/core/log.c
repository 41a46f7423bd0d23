/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * log.c: a producer's log lines. A line below the producer's level is
 * dropped before it is formatted; one kept is redacted (the transport's
 * secrets) and handed to the Lua logger in a protected call with the
 * producer busy, or, without one, to the host (host.c: its hook or
 * stderr). The level names are C's one list; core.log_levels gives it
 * to Lua.
 */
#include <stdarg.h>
#include <stdio.h>

#include "core/call.h"
#include "core/host.h"
#include "core/log.h"

static const char *const level_names[] = {NULL, "debug", "info", "warn", "error"};
#define NLEVELS ((int)(sizeof level_names / sizeof level_names[0]) - 1)

static const char log_line_key;

const char *prd_log_level_name(int level)
{
    return level >= 1 && level <= NLEVELS ? level_names[level] : "error";
}

/* A line for the logger: what log_line needs. */
typedef struct {
    int logger;                 /* registry ref */
    const char *level, *line;
} prd_line;

/* Protected: calls the logger with the line. */
static int log_line(lua_State *L)
{
    const prd_line *l = lua_touserdata(L, 1);

    lua_rawgeti(L, LUA_REGISTRYINDEX, l->logger);
    lua_pushstring(L, l->level);
    lua_pushstring(L, l->line);
    lua_call(L, 2, 0);
    return 0;
}

/* printf-style logging through log's logger, if the level is enabled;
 * returns the logger's status (an error on top of the stack). */
int prd_log_f(lua_State *L, const prd_log *log, int *busy, int level, const char *fmt, ...)
{
    char line[PRD_TEXT_MAX];
    prd_line l;
    va_list ap;

    if (level < log->level)
        return LUA_OK;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (log->redact)
        log->redact(log->redact_ud, line);
    if (log->logger == LUA_NOREF) {
        prd_host_log(L, prd_log_level_name(level), line);
        return LUA_OK;
    }
    l.logger = log->logger;
    l.level = prd_log_level_name(level);
    l.line = line;
    return prd_call_protected(L, busy, &log_line_key, log_line, &l);
}

/* Makes log_line once per state (call.c's prd_call_open says why);
 * pushes core.log_levels, the names from the lowest level. */
void prd_log_open(lua_State *L)
{
    int i;

    prd_call_push_function(L, &log_line_key, log_line);
    lua_pop(L, 1);
    lua_createtable(L, NLEVELS, 0);
    for (i = 1; i <= NLEVELS; i++) {
        lua_pushstring(L, level_names[i]);
        lua_rawseti(L, -2, i);
    }
}
