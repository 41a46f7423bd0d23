/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * queue.c: serving a producer's report queue on the caller's thread,
 * whatever the transport (producer.h's prd_transport gives the events).
 *
 * A transport's threads never call into Lua: they queue delivery reports
 * (in batches) and other events and wake the producer (wake.c). Serving
 * takes them off in poll, flush, produce and close, so Lua runs only here,
 * in protected calls (one for a batch of reports): a Lua error never
 * unwinds through the transport's library. When a callback raises, the
 * batch being served is kept in p->pending and the next call resumes with
 * the report after it: no report is lost or served twice. queue_batch is
 * the one walk over the queue that serving, reports() and the silent
 * drain of __gc share.
 *
 * A message's own callback, and the string of a value the transport does
 * not copy, ride in its message state (msgstate.h), released when its
 * report has been served.
 */
#include <limits.h>

#include "core/call.h"
#include "core/clock.h"
#include "core/msgstate.h"
#include "core/queue.h"
#include "core/spooling.h"

#define SERVE_SLICE_MS 100        /* drain serves in slices of this */

/* The keys of the functions prd_call_push_function keeps (their addresses). */
static const char serve_reports_key, collect_reports_key;

/* When events are waiting (after an early return, or as event_fd()
 * makes its pipe): ready, and the event loop woken. */
void prd_queue_wake_if_waiting(prd_producer *p)
{
    if (p->pending || p->tr->waiting(p))
        prd_wake_signal(&p->wake);
}

/* The transport's next report of p->pending; with a spool, a retriable
 * one is kept from Lua (spooling.c sends its message again). */
static const void *take_report(prd_producer *p)
{
    const void *m;

    while ((m = p->tr->next_report(p)) && p->spool && !prd_spooling_settle(p, m))
        ;
    return m;
}

/* One run of serve_reports: what it needs, and what it leaves behind. */
typedef struct {
    prd_producer *p;
    int *served;
    int max;                    /* stop when *served reaches it */
    void *opaque;               /* of the report being served, until released */
    int status;                 /* a logger's error status */
} prd_batch;

/*
 * Serves the reports of the batch p->pending, called in a protected call
 * (serve_batch): one for the batch rather than one for each report. The
 * batch is read anew each turn: a callback may have served (and finished)
 * it itself by calling poll or flush. A finished batch is destroyed here.
 * A logger's error is returned, its status in b->status; a callback's
 * error unwinds to serve_batch, which releases what b->opaque holds.
 */
static int serve_reports(lua_State *L)
{
    prd_batch *b = lua_touserdata(L, 1);
    prd_producer *p = b->p;
    const prd_transport *tr = p->tr;
    const void *m;

    while (p->pending && *b->served < b->max) {
        if (!(m = take_report(p)))
            break;
        (*b->served)++;
        tr->count(p, m);
        b->opaque = tr->report_state(m);   /* m may be freed by a callback's poll */
        /* the stack: b, then what tr->report keeps for the batch */
        if ((b->status = tr->report(L, p, m)) != LUA_OK)
            return 1;
        prd_msgstate_release(L, b->opaque);
        b->opaque = NULL;
    }
    return 0;
}

/* Serves p->pending in one protected call, with the traceback handler at
 * *handler (pushed at the top when 0). Returns LUA_OK, or an error status
 * with the error on top of the stack. */
static int serve_batch(lua_State *L, prd_producer *p, int *served, int max, int *handler)
{
    prd_batch b = {p, served, max, NULL, LUA_OK};
    int status;

    if (!*handler) {
        prd_call_push_handler(L);
        *handler = lua_gettop(L);
    }
    prd_call_push_function(L, &serve_reports_key, serve_reports);
    lua_pushlightuserdata(L, &b);
    status = prd_call_pcall(L, &p->busy, 1, 1, *handler);
    prd_msgstate_release(L, b.opaque);    /* the report whose call failed */
    if (status == LUA_OK && (status = b.status) == LUA_OK)
        lua_pop(L, 1);
    return status;
}

/* Whether the waiting call was interrupted (signal.c): recorded in
 * p->interrupted. */
static int interrupted(lua_State *L, prd_producer *p)
{
    return (p->interrupted = prd_watch_check(L, &p->watch)) != 0;
}

/* The next event (next_event), waiting up to timeout_ms in slices
 * between which an interrupt ends the wait; PRD_EVENT_NONE at the
 * timeout or when interrupted. */
static int wait_event(lua_State *L, prd_producer *p, int timeout_ms, int serve, int *status)
{
    int64_t deadline;
    int slice, found;

    if (timeout_ms < 0)         /* a transport takes -1 as "forever" */
        timeout_ms = 0;
    deadline = prd_clock_now_ms() + timeout_ms;

    for (;;) {
        slice = timeout_ms < PRD_WATCH_SLICE_MS ? timeout_ms : PRD_WATCH_SLICE_MS;
        found = p->tr->next_event(L, p, slice, serve, status);
        if (found != PRD_EVENT_NONE || slice == timeout_ms)
            return found;
        if (interrupted(L, p) || (timeout_ms = (int)(deadline - prd_clock_now_ms())) <= 0)
            return PRD_EVENT_NONE;
    }
}

/* How queue_batch walks the queue. */
enum {
    Q_WATCH = 1,                /* waits in slices; an interrupt (before
                                   each event too) stops the walk */
    Q_SERVE = 2                 /* events other than reports are served
                                   (Lua runs); else dropped */
};

/*
 * The one walk over the main queue that every serving shares: makes
 * p->pending the batch of reports to serve next, the batch left there or
 * the next one from the queue (waiting up to *timeout_ms for the first
 * event, 0 after). Events that are not reports are served on the way
 * (Q_SERVE: Kafka's logs, errors, statistics, tokens) or dropped (__gc). Returns
 * 1 with a batch in p->pending; 0 when the queue is empty, the wait
 * ended, an interrupt came (Q_WATCH) or an event's Lua failed (*status,
 * the error on top of the stack). The transport's next_report takes its
 * reports.
 */
static int queue_batch(lua_State *L, prd_producer *p, int *timeout_ms, int how, int *status)
{
    int found;

    for (;;) {
        if ((how & Q_WATCH) && interrupted(L, p))
            return 0;
        if (p->pending)
            return 1;
        found = how & Q_WATCH ? wait_event(L, p, *timeout_ms, how & Q_SERVE, status)
                              : p->tr->next_event(L, p, *timeout_ms, how & Q_SERVE, status);
        if (found == PRD_EVENT_NONE)
            return 0;
        *timeout_ms = 0;
        if (found == PRD_EVENT_BATCH)
            return 1;
        if (*status != LUA_OK)
            return 0;
        if (how & Q_WATCH)
            prd_watch_hook(L, &p->watch);   /* Lua ran: hooks it set are its own */
    }
}

/* Serves events until max reports are served or the queue is empty.
 * Before each, an interrupt stops it: no Lua runs once the interpreter's
 * hook is set, so that it fires in the caller, at once. */
static int serve_events(lua_State *L, prd_producer *p, int timeout_ms, int *served,
                        int max, int *handler)
{
    int status = LUA_OK;

    while (*served < max) {
        if (!queue_batch(L, p, &timeout_ms, Q_WATCH | Q_SERVE, &status))
            return status;
        if ((status = serve_batch(L, p, served, max, handler)) != LUA_OK)
            return status;
        prd_watch_hook(L, &p->watch);
    }
    return LUA_OK;
}

/* Serves with one traceback handler on the stack for every batch's
 * protected call, pushed when first needed and removed after (an error
 * object above it moves down). */
static int serve(lua_State *L, prd_producer *p, int timeout_ms, int *served, int max)
{
    int handler = 0, status;

    status = serve_events(L, p, timeout_ms, served, max, &handler);
    if (handler)
        lua_remove(L, handler);
    return status;
}

/* One run of collect_reports. */
typedef struct {
    prd_producer *p;
    int max;
} prd_take;

/* The next report of p->pending, or NULL when the queue has none. Other
 * events are served on the way (logger); a logger's error stops it:
 * *status, with the error on top of the stack. */
static const void *next_report(lua_State *L, prd_producer *p, int *status)
{
    const void *m;
    int timeout_ms = 0;

    while (queue_batch(L, p, &timeout_ms, Q_SERVE, status))
        if ((m = take_report(p)))
            return m;
    return NULL;
}

/* Protected: fills a new list with up to max reports; returns it, and a
 * logger's error when one stopped it. */
static int collect_reports(lua_State *L)
{
    prd_take *t = lua_touserdata(L, 1);
    prd_producer *p = t->p;
    const prd_transport *tr = p->tr;
    const void *m;
    int n = 0, status = LUA_OK;

    lua_newtable(L);                                 /* t, list */
    while (n < t->max && (m = next_report(L, p, &status))) {
        tr->count(p, m);
        if (tr->push_report(L, p, m))
            lua_rawseti(L, 2, ++n);
        prd_msgstate_release(L, tr->report_state(m));
    }
    return status == LUA_OK ? 1 : 2;                 /* list[, error] */
}

/*
 * Serves up to max waiting delivery reports as values (no callback is
 * called); logs and errors go to the logger. Pushes the list, and a
 * logger's error if one raised; returns the number of values pushed.
 */
int prd_queue_take(lua_State *L, prd_producer *p, int max)
{
    prd_take t = {p, max};
    int base, status;

    if (p->busy) {
        lua_newtable(L);
        return 1;
    }
    if (p->spool)               /* re-sends what a retriable report left */
        prd_spooling_feed(L, p);
    prd_wake_take(&p->wake);
    base = lua_gettop(L) + 1;
    prd_call_push_handler(L);
    prd_call_push_function(L, &collect_reports_key, collect_reports);
    lua_pushlightuserdata(L, &t);
    status = prd_call_pcall(L, &p->busy, 1, 2, base);
    lua_remove(L, base);
    if (p->spool)
        prd_spooling_flush(p);                 /* the taken reports' acks: one write */
    prd_queue_wake_if_waiting(p);          /* what max left behind */
    if (status != LUA_OK)
        lua_error(L);
    return lua_isnil(L, -1) ? (lua_pop(L, 1), 1) : 2;
}

/*
 * Serves events for up to timeout_ms (waiting only for the first one)
 * until the queue is empty or *served reaches max, adding the number of
 * delivery reports served to *served. Returns LUA_OK, or a Lua error
 * status with the error object on top of the stack.
 */
int prd_queue_serve(lua_State *L, prd_producer *p, int timeout_ms, int *served, int max)
{
    int status;

    /* Called by Lua that serving runs (a callback that produces): the
     * outer call goes on serving, so the depth stays one however many
     * reports a batch holds. */
    if (p->busy)
        return LUA_OK;
    if (p->spool)
        prd_spooling_feed(L, p);
    if (!p->watching)
        p->interrupted = 0;
    /* Not waiting and nothing arrived since the queue was last emptied:
     * done, without taking the queue's lock (produce calls this each time). */
    if (timeout_ms == 0 && !p->pending && !prd_wake_ready(&p->wake))
        return LUA_OK;
    /* a call of its own: interrupts count from now (flush and close
     * hold theirs, taken when they started) */
    if (!p->watching)
        prd_watch_start(L, &p->watch);
    /* first: what arrives after this sets them again */
    prd_wake_take(&p->wake);
    status = serve(L, p, timeout_ms, served, max);
    if (p->spool)
        prd_spooling_flush(p);                 /* the batch's acks: one write */
    if (status != LUA_OK || *served >= max || p->interrupted)
        prd_queue_wake_if_waiting(p);          /* what is left stays ready */
    return status;
}

/*
 * Empties the queue without running Lua (for __gc), waiting up to
 * timeout_ms for the first event: drops logs, releases the callbacks of
 * reports, counts failed deliveries.
 */
static void empty_silently(lua_State *L, prd_producer *p, int timeout_ms)
{
    const void *m;
    int status = LUA_OK;

    while (queue_batch(L, p, &timeout_ms, 0, &status))
        while ((m = take_report(p))) {
            p->tr->count(p, m);
            prd_msgstate_release(L, p->tr->report_state(m));
        }
}

/* Releases what the reports still queued hold, running no Lua, waiting
 * for none (the last step of close). */
void prd_queue_drop(lua_State *L, prd_producer *p)
{
    empty_silently(L, p, 0);
}

/* The next slice of waiting for reports before the deadline, once
 * the transport has been told to send at once (not after close's purge:
 * nothing is left to send, and Kafka's send_now waits a millisecond, which
 * a raising callback would cost each report); 0 when nothing is queued any
 * more or the deadline has passed. */
static int next_slice(prd_producer *p, int64_t deadline)
{
    int64_t left = deadline - prd_clock_now_ms();

    if (p->closed || p->queued == 0 || left <= 0)
        return 0;
    if (p->closing != PRD_PURGED)
        p->tr->send_now(p);
    return left < SERVE_SLICE_MS ? (int)left : SERVE_SLICE_MS;
}

/*
 * Serves reports until every message produced has had its report, or the
 * deadline passes. Raises a callback's error unless kept is given: then
 * the first error is left at the top of the stack, later ones dropped,
 * *kept counts them, and serving goes on. Returns the messages still
 * queued.
 */
long prd_queue_drain(lua_State *L, prd_producer *p, int timeout_ms, int *kept)
{
    int64_t deadline = prd_clock_now_ms() + timeout_ms;
    int served = 0, slice = 0;

    /* an interrupt (signal.c) ends the wait: p->interrupted says which */
    prd_watch_start(L, &p->watch);
    p->watching = 1;
    p->interrupted = 0;
    do {                /* serves what waits already, even at timeout 0 */
        if (prd_queue_serve(L, p, slice, &served, INT_MAX) != LUA_OK) {
            if (!kept) {
                p->watching = 0;
                lua_error(L);
            }
            if ((*kept)++)
                lua_pop(L, 1);
        }
    } while (!(p->interrupted = prd_watch_check(L, &p->watch)) &&
             (slice = next_slice(p, deadline)));
    p->watching = 0;
    return p->queued;
}

/* Waits up to timeout_ms for the queue to empty, running no Lua. */
void prd_queue_drain_silently(lua_State *L, prd_producer *p, int timeout_ms)
{
    int64_t deadline = prd_clock_now_ms() + timeout_ms;
    int slice;

    while ((slice = next_slice(p, deadline)))
        empty_silently(L, p, slice);
}

/*
 * Makes the functions the serving pushes, once per Lua state, before any
 * producer exists: made later, on first use, the allocation could run a
 * finalizer that closes the producer being served.
 */
void prd_queue_open(lua_State *L)
{
    prd_call_push_function(L, &serve_reports_key, serve_reports);
    prd_call_push_function(L, &collect_reports_key, collect_reports);
    lua_pop(L, 2);
}
