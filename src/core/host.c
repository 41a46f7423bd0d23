/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * host.c: what a lua_State's host hears outside any Lua logger, and the
 * one deadline its producers' __gc share.
 *
 * - producers_set_log (include/producers.h): a C function that receives
 *   the lines the library would write to stderr: a producer collected
 *   with messages not delivered, a log line with no Lua logger, and the
 *   default Lua logger's lines under libproducers (prd_host_write).
 * - prd_host_write: the default logger's writer for hosts that open no io
 *   or os library (a sandbox); producers_preload hands it to log.lua.
 * - prd_host_gc_wait_ms / prd_host_gc_done: lua_close finalizes every producer in
 *   turn; each waiting its gc_flush_timeout made four unreachable
 *   producers take four timeouts. The first __gc of a burst sets a
 *   deadline for the state and the next ones, if they follow within
 *   GC_BURST_GAP_MS, wait only what is left of it.
 *
 * All of it lives in one userdata in the registry (HOST_KEY), made on
 * first use. No Lua code runs here: the registry has no metamethods.
 *
 * Caveats: a burst is told apart by time alone, so two producers
 * collected by one ordinary GC step, one right after the other, share a
 * deadline too. The hook is per lua_State, called on the thread running
 * that state, and must not call into that state.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/host.h"
#include "producers.h"

#define HOST_KEY "producers.host"
#define GC_BURST_GAP_MS 100

typedef struct prd_host {
    producers_log_fn log;
    void *log_ud;
    int64_t gc_deadline;         /* prd_clock_now_ms of the current burst's end */
    int64_t gc_last;             /* when the last __gc returned, or 0 */
} prd_host;

/* The state's prd_host, made when create is set; NULL when absent. */
static prd_host *get_host(lua_State *L, int create)
{
    prd_host *h;

    lua_getfield(L, LUA_REGISTRYINDEX, HOST_KEY);
    h = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (h || !create)
        return h;
    h = lua_newuserdata(L, sizeof *h);
    memset(h, 0, sizeof *h);
    lua_setfield(L, LUA_REGISTRYINDEX, HOST_KEY);
    return h;
}

PRODUCERS_API void producers_set_log(lua_State *L, producers_log_fn fn, void *ud)
{
    prd_host *h = get_host(L, fn != NULL);

    if (h) {
        h->log = fn;
        h->log_ud = ud;
    }
}

/* A line for the host: to its hook when set, else to stderr as
 * "producers: LEVEL: line". */
void prd_host_log(lua_State *L, const char *level, const char *line)
{
    prd_host *h = get_host(L, 0);

    if (h && h->log)
        h->log(h->log_ud, level, line);
    else
        fprintf(stderr, "producers: %s: %s\n", level, line);
}

/*
 * The default logger's writer, log(level, message): the host's hook when
 * set, else one line on stderr, "2025-01-31T12:00:00Z producers WARN
 * message", as log.lua writes it with io and os.
 */
int prd_host_write(lua_State *L)
{
    const char *level = luaL_checkstring(L, 1);
    const char *message = luaL_checkstring(L, 2);
    prd_host *h = get_host(L, 0);
    char stamp[32], upper[16];
    time_t now;
    struct tm tm;
    size_t i;

    if (h && h->log) {
        h->log(h->log_ud, level, message);
        return 0;
    }
    now = time(NULL);
    if (!gmtime_r(&now, &tm) || !strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm))
        strcpy(stamp, "-");
    for (i = 0; level[i] && i < sizeof upper - 1; i++)
        upper[i] = (char)(level[i] >= 'a' && level[i] <= 'z' ? level[i] - 'a' + 'A' : level[i]);
    upper[i] = '\0';
    fprintf(stderr, "%s producers %s %s\n", stamp, upper, message);
    return 0;
}

/* How long a producer collected now may wait for deliveries: its own
 * timeout_ms, or what is left of the state's deadline within a burst. */
int prd_host_gc_wait_ms(lua_State *L, int timeout_ms)
{
    prd_host *h = get_host(L, 1);
    int64_t now = prd_clock_now_ms();

    if (h->gc_last && now - h->gc_last <= GC_BURST_GAP_MS) {
        int64_t left = h->gc_deadline - now;

        if (left < 0)
            left = 0;
        return left < timeout_ms ? (int)left : timeout_ms;
    }
    h->gc_deadline = now + timeout_ms;
    return timeout_ms;
}

/* Marks the end of a producer's __gc: one that follows soon joins the
 * burst. */
void prd_host_gc_done(lua_State *L)
{
    prd_host *h = get_host(L, 1);

    h->gc_last = prd_clock_now_ms();
}
