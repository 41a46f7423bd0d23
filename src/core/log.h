/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * log.h: a producer's log lines, to its Lua logger or to the host.
 */
#ifndef PRD_CORE_LOG_H
#define PRD_CORE_LOG_H

#include "core/base.h"

/* Log levels, lowest first; the logger function receives their names. */
enum prd_log_level { PRD_DEBUG = 1, PRD_INFO, PRD_WARN, PRD_ERROR };

typedef struct prd_log {
    int logger;                  /* registry ref: function(level, message),
                                    or LUA_NOREF: the host's hook or stderr */
    int level;                   /* lowest enum prd_log_level passed on */
    void (*redact)(const void *ud, char *text);   /* hides secrets from a
                                    line (PRD_TEXT_MAX bytes), or NULL */
    const void *redact_ud;
} prd_log;

const char *prd_log_level_name(int level);
int prd_log_f(lua_State *L, const prd_log *log, int *busy, int level, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 5, 6)))
#endif
    ;
void prd_log_open(lua_State *L);

#endif
