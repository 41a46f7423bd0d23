/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * producer.c: the producer every transport makes (producer.h), and its
 * methods that need nothing of the transport but its prd_transport: poll,
 * flush, close, reports, event_fd, queue_length, stats, is_closed and the
 * metamethods.
 *
 * close, __close and __gc share one teardown that is safe to run twice;
 * __gc runs no Lua code: it waits a bounded time for deliveries, purges
 * the rest and writes the number of undelivered messages to the host's
 * log (host.c). Every method but close raises "producer is closed" after
 * close. A transport's threads do not survive fork(): a forked child
 * counts one more generation than its parent, and refuses the parent's
 * producers.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/arg.h"
#include "core/call.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/host.h"
#include "core/json.h"
#include "core/producer.h"
#include "core/queue.h"
#include "core/spooling.h"

#define PURGE_WAIT_MS 1000        /* close gives up on purged reports when
                                     none came for this long */
#define PURGE_SLICE_MS 100        /* and purges again after each slice */

/* Its address marks the memory of a producer (see prd_producer_check). */
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

/* Pushes a new producer of transport tr (tr->size bytes, zeroed, its
 * metatable tr->type's), closed until the transport has opened it. */
prd_producer *prd_producer_new(lua_State *L, const prd_transport *tr)
{
    prd_producer *p = lua_newuserdata(L, tr->size);

    memset(p, 0, tr->size);
    p->magic = &producer_magic;
    p->tr = tr;
    p->closed = 1;
    p->generation = fork_generation;
    p->log.logger = LUA_NOREF;
    prd_wake_init(&p->wake);
    luaL_setmetatable(L, tr->type);
    return p;
}

/* Reads the options every transport takes alike from the table at idx
 * (the Lua layer built it from the user's): logger, log_level,
 * gc_flush_timeout, serve_on_produce, and json (a callable encoder, else
 * the builtin encoder with the JSON state at json_idx). */
void prd_producer_options(lua_State *L, prd_producer *p, int idx, int json_idx)
{
    p->log.logger = prd_arg_callback_ref(L, idx, "logger", "opts");
    lua_getfield(L, idx, "log_level");
    p->log.level = (int)luaL_optinteger(L, -1, PRD_INFO);
    lua_getfield(L, idx, "gc_flush_timeout");
    p->gc_flush_ms = prd_arg_timeout_ms(L, -1, 1000);
    lua_getfield(L, idx, "serve_on_produce");
    p->serve_on_produce = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, idx, "json");
    if (prd_arg_callable(L, -1)) {
        lua_pushvalue(L, -1);
        p->encoder = luaL_ref(L, LUA_REGISTRYINDEX);
    } else {
        p->json = prd_json_buffer(L, json_idx, -1);
    }
    lua_pop(L, 3);
}

/* The producer at 1, open or not. A userdata that starts with the mark
 * and has its transport's size is one (Lua code cannot write into a
 * userdata): cheaper than luaL_checkudata's registry lookup by name, which
 * then only runs to raise the error. */
static inline prd_producer *check_any(lua_State *L)
{
    prd_producer *p = lua_touserdata(L, 1);
    size_t len = lua_rawlen(L, 1);

    if (!p || len < sizeof *p || p->magic != &producer_magic || len != p->tr->size)
        p = luaL_checkudata(L, 1, PRD_PRODUCER_T);
    return p;
}

prd_producer *prd_producer_check_any(lua_State *L)
{
    return check_any(L);
}

/* The open producer at 1 (produce's first step: one call). */
prd_producer *prd_producer_check(lua_State *L)
{
    prd_producer *p = check_any(L);

    if (p->closed)
        luaL_error(L, "producer is closed");
    if (p->generation != fork_generation)
        luaL_error(L, PRD_PRODUCER_FORKED_MSG);
    return p;
}

/* The optional bound on reports at idx: an integer from 1, or def. */
static int check_max_reports(lua_State *L, int idx, int def)
{
    lua_Integer max = def;

    if (!lua_isnoneornil(L, idx))
        luaL_argcheck(L, lua_type(L, idx) == LUA_TNUMBER &&
                         prd_arg_integer(L, idx, 1, INT32_MAX, &max) == 0, idx,
                      "max must be an integer from 1 to 2147483647");
    return (int)max;
}

/***
 * Serves delivery reports, logs and errors, waiting up to timeout for
 * the first one; with max_reports, serves at most that many reports
 * (the rest wait for the next call, and event_fd stays readable).
 * @function poll
 * @number[opt=0] timeout seconds
 * @int[opt] max_reports
 * @treturn int number of delivery reports served
 */
static int producer_poll(lua_State *L)
{
    prd_producer *p = prd_producer_check(L);
    int timeout_ms = prd_arg_timeout_ms(L, 2, 0);
    int max = check_max_reports(L, 3, INT32_MAX), served = 0;

    if (!p->busy)
        prd_wake_clear(&p->wake);     /* event_fd is not readable after a poll
                                         that finds nothing */
    if (prd_queue_serve(L, p, timeout_ms, &served, max) != LUA_OK)
        return lua_error(L);
    lua_pushinteger(L, served);
    return 1;
}

/***
 * Waits until every queued message is delivered or has failed, serving
 * their reports; what the transport holds back (Kafka's linger.ms) is
 * sent at once.
 * @function flush
 * @number[opt=30] timeout seconds
 * @treturn[1] true
 * @treturn[2] nil
 * @treturn[2] string "timed out" (or "interrupted by SIGINT": docs/signals.md)
 * @treturn[2] string "_TIMED_OUT" (or "_INTR")
 * @treturn[2] table error object, whose queued is the number of messages
 *   still queued
 */
static int producer_flush(lua_State *L)
{
    prd_producer *p = prd_producer_check(L);
    int timeout_ms = prd_arg_timeout_ms(L, 2, PRD_DEFAULT_TIMEOUT_MS);
    long left;

    prd_call_check_not_busy(L, p->busy, "flush");
    left = prd_queue_drain(L, p, timeout_ms, NULL);

    if (left == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (p->interrupted)
        return prd_watch_fail(L, p->interrupted, left);
    return prd_fail_queued(L, PRD_ERR_TIMED_OUT, "_TIMED_OUT", "timed out", PRD_E_RETRIABLE,
                           left);
}

/* Waits for reports, serving them with Lua (keeping the first error) or,
 * in __gc, without. */
static void settle(lua_State *L, prd_producer *p, int timeout_ms, int run_lua,
                   int *kept)
{
    if (run_lua)
        prd_queue_drain(L, p, timeout_ms, kept);
    else
        prd_queue_drain_silently(L, p, timeout_ms);
}

/*
 * Purges what close's wait left and serves the purged messages' reports
 * (there is no other chance: the transport's close drops what is left).
 * produce refuses from now on, so the reports that came are all served,
 * however long their callbacks take. A message the purge missed (Kafka:
 * librdkafka moving it between its queues as the purge ran, when a
 * partition changes leader) is purged by the next slice's purge. Gives up
 * when no report came for PURGE_WAIT_MS (a message the transport still
 * holds, or a spool's record, which stays in the spool).
 */
static void settle_purged(lua_State *L, prd_producer *p, int run_lua, int *kept)
{
    int64_t deadline = prd_clock_now_ms() + PURGE_WAIT_MS;
    long left;

    do {
        left = p->queued;
        p->tr->purge(p);
        settle(L, p, PURGE_SLICE_MS, run_lua, kept);
        if (p->queued < left)
            deadline = prd_clock_now_ms() + PURGE_WAIT_MS;
    } while (p->queued > 0 && !p->interrupted && prd_clock_now_ms() < deadline);
}

/*
 * The one teardown: waits up to timeout_ms for deliveries, purges what is
 * left, serves the purged reports, has the transport free what it holds.
 * With run_lua, callbacks and the logger run and the first error they
 * raise is left on the stack (returns 1); without, no Lua runs (__gc).
 */
static int teardown(lua_State *L, prd_producer *p, int timeout_ms, int run_lua)
{
    long failures_before = p->failures;
    int kept = 0;
    long lost;

    if (p->closed)
        return 0;
    if (p->generation != fork_generation) {
        prd_spooling_forget(p);          /* the parent's files */
        p->tr->abandon(L, p);
        p->closed = 1;
        if (run_lua)
            luaL_error(L, PRD_PRODUCER_FORKED_MSG);
        return 0;
    }
    if (run_lua)
        prd_call_check_not_busy(L, p->busy, "close");
    /* callbacks may still produce while it waits (a retry): their
     * messages are waited for too; once it purges, produce refuses */
    p->closing = PRD_CLOSING;
    settle(L, p, timeout_ms, run_lua, &kept);
    p->closing = PRD_PURGED;
    if (p->queued > 0)
        settle_purged(L, p, run_lua, &kept);

    lost = p->failures - failures_before;
    if (lost > 0 && run_lua) {
        int status = prd_log_f(L, &p->log, &p->busy, PRD_WARN, "%s closed with %ld message(s) not delivered",
                              p->name, lost);

        if (status != LUA_OK && kept++)
            lua_pop(L, 1);
    } else if (lost > 0) {
        char line[PRD_TEXT_MAX];

        snprintf(line, sizeof line, "%s collected with %ld message(s) not delivered",
                 p->name, lost);
        prd_host_log(L, "warn", line);  /* the host's C hook, or stderr */
    }

    p->tr->close(L, p, timeout_ms);      /* runs no Lua */
    p->closed = 1;
    return kept > 0;
}

/***
 * Flushes, then frees the producer. What is still queued after timeout is
 * purged: its reports are served with error "_PURGE_QUEUE" (or
 * "_PURGE_INFLIGHT") and the number lost is logged as a warning. Closing
 * twice is allowed; every other method raises after close.
 * @function close
 * @number[opt=30] timeout seconds
 * @raise the first error a callback raised while closing (after closing)
 */
static int producer_close(lua_State *L)
{
    prd_producer *p = prd_producer_check_any(L);
    int timeout_ms = prd_arg_timeout_ms(L, 2, PRD_DEFAULT_TIMEOUT_MS);

    if (teardown(L, p, timeout_ms, 1))
        return lua_error(L);
    return 0;
}

/* __close (Lua 5.4): close with the default timeout. */
static int producer_tbc_close(lua_State *L)
{
    prd_producer *p = prd_producer_check_any(L);

    /* leaving the scope by an error: that error goes on, not a callback's */
    if (teardown(L, p, PRD_DEFAULT_TIMEOUT_MS, 1) && lua_isnoneornil(L, 2))
        return lua_error(L);
    return 0;
}

static int producer_gc(lua_State *L)
{
    prd_producer *p = prd_producer_check_any(L);

    if (!p->closed) {   /* lua_close's producers share one deadline (host.c);
                      one whose last wait was interrupted waits no more */
        teardown(L, p, p->interrupted ? 0 : prd_host_gc_wait_ms(L, p->gc_flush_ms), 0);
        prd_host_gc_done(L);
    }
    p->tr->release(L, p);             /* set even when the transport failed to open */
    return 0;
}

/***
 * Messages produced whose report has not been served yet (with
 * delivery.report.only.error: librdkafka's count of messages and events
 * not yet done).
 * @function queue_length
 * @treturn int
 */
static int producer_queue_length(lua_State *L)
{
    lua_pushinteger(L, prd_producer_check(L)->queued);
    return 1;
}

/***
 * A file descriptor that becomes readable when reports, logs or errors
 * are waiting, for event loops (luv, cqueues, epoll) to wait on instead of
 * polling on a timer: when it is readable, call p:poll(0), which also
 * empties it. The same descriptor is returned on every call; it is closed
 * by close. Do not read it or close it yourself.
 * @function event_fd
 * @treturn int
 */
static int producer_event_fd(lua_State *L)
{
    prd_producer *p = prd_producer_check(L);

    if (prd_wake_push_fd(L, &p->wake))
        prd_queue_wake_if_waiting(p);          /* events already waiting */
    return 1;
}

/***
 * Counters since the producer was made: delivered and failed messages
 * (their reports served), and queued (produced, report not yet served).
 * Counting deliveries this way needs no per-message callback.
 * @function stats
 * @treturn table {delivered = n, failed = n, queued = n}
 */
static int producer_stats(lua_State *L)
{
    prd_producer *p = prd_producer_check(L);

    lua_createtable(L, 0, 3);
    lua_pushinteger(L, p->delivered);
    lua_setfield(L, -2, "delivered");
    lua_pushinteger(L, p->failures);
    lua_setfield(L, -2, "failed");
    lua_pushinteger(L, p->queued);
    lua_setfield(L, -2, "queued");
    return 1;
}

/***
 * Serves up to max waiting delivery reports as values, for event loops
 * that run callbacks in their own coroutines: no callback is called.
 * Logs and errors still go to the logger. Returns {} inside a callback
 * of the same producer.
 * @function reports
 * @int[opt=1000] max
 * @treturn table an array of reports, each with err (the message, absent
 *   on success) and on_delivery (the message's own callback, not called)
 * @treturn[opt] the error a logger raised, which stopped the serving
 */
static int producer_reports(lua_State *L)
{
    prd_producer *p = prd_producer_check(L);

    return prd_queue_take(L, p, check_max_reports(L, 2, 1000));
}

/***
 * True once closed.
 * @function is_closed
 */
static int producer_is_closed(lua_State *L)
{
    prd_producer *p = prd_producer_check_any(L);

    lua_pushboolean(L, p->closed);
    return 1;
}

static int producer_tostring(lua_State *L)
{
    prd_producer *p = prd_producer_check_any(L);

    lua_pushfstring(L, "%s (%s%s)", p->tr->kind, p->name, p->closed ? ", closed" : "");
    return 1;
}

/***
 * Adopts the spool of another directory (nginx: the spool of a worker
 * that is gone, I17; docs/spool.md): takes its lock, delivers its
 * records through this producer, oldest first and before this
 * producer's own, acks them there, and removes the directory once it is
 * empty. Its records count as queued (flush waits for them) and are
 * reported to on_delivery with replayed = true. Every transport's (Kafka, NATS).
 * @function spool_adopt
 * @string dir
 * @treturn[1] true
 * @treturn[2] nil, message, "SPOOL_LOCKED" (its owner lives), "SPOOL_IO"
 *   or "SPOOL_VERSION", err
 * @raise when the producer has no spool of its own
 */
static int producer_spool_adopt(lua_State *L)
{
    prd_producer *p = prd_producer_check(L);

    return prd_spooling_adopt(L, p, luaL_checkstring(L, 2));
}

static const luaL_Reg methods[] = {
    {"poll", producer_poll},
    {"flush", producer_flush},
    {"close", producer_close},
    {"queue_length", producer_queue_length},
    {"is_closed", producer_is_closed},
    {"event_fd", producer_event_fd},
    {"stats", producer_stats},
    {"reports", producer_reports},
    {"spool_adopt", producer_spool_adopt},
    {NULL, NULL}};

static const luaL_Reg metamethods[] = {
    {"__gc", producer_gc},
    {"__close", producer_tbc_close},
    {"__tostring", producer_tostring},
    {NULL, NULL}};

/* Sets core's methods into the table on top (a transport's method table,
 * which adds its own). */
void prd_producer_methods(lua_State *L)
{
    luaL_setfuncs(L, methods, 0);
}

/* Sets the metamethods into the metatable on top. */
void prd_producer_metamethods(lua_State *L)
{
    luaL_setfuncs(L, metamethods, 0);
}

/* Once per Lua state, before any producer exists: what serving pushes
 * (call.c's prd_call_open says why), and the fork watch (once per
 * process). */
void prd_producer_open(lua_State *L)
{
    pthread_once(&fork_watch, watch_forks);
    prd_call_open(L);
    prd_queue_open(L);
}
