/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * report.c: serving the producer's main queue on the caller's thread.
 *
 * librdkafka puts delivery reports (in batches), log lines, errors and
 * OAUTHBEARER token requests (served by oauth.c) on the main queue as
 * events. prd_serve takes them off after librdkafka has returned, so Lua
 * runs only here, in protected calls (one for a batch of reports): a Lua
 * error never unwinds through librdkafka. When a callback
 * raises, the batch being served is kept in p->pending and the next call
 * resumes with the report after it: no report is lost or served twice.
 *
 * A message's own callback, and the string of a value librdkafka does not
 * copy, ride in its opaque (prd_opaque, prd_msgstate_keep) and are unreffed
 * when its report has been served. A callback declared with one
 * parameter, function(err), gets no report table: none is built.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/call.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/msgstate.h"
#include "core/signal.h"
#include "kafka/errors.h"
#include "kafka/oauth.h"
#include "kafka/report.h"
#include "kafka/stats.h"

#define SERVE_SLICE_MS 100        /* drain serves in slices of this */
#define SEND_NOW_MS 1             /* send_now's wait */

/* The keys of the functions prd_call_push_function keeps (their addresses). */
static const char serve_reports_key, collect_reports_key;

static void set_bytes(lua_State *L, const char *field, const void *bytes, size_t len)
{
    if (bytes) {
        lua_pushlstring(L, bytes, len);
        lua_setfield(L, -2, field);
    }
}

/* report.headers (name -> value, the last of a repeated name) and
 * report.header_list ({name, value} pairs, in order), when there are any. */
static void push_headers(lua_State *L, const rd_kafka_message_t *m)
{
    rd_kafka_headers_t *hdrs;
    const char *name;
    const void *value;
    size_t i, len;

    if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    lua_createtable(L, 0, (int)rd_kafka_header_cnt(hdrs));   /* report, map */
    lua_createtable(L, (int)rd_kafka_header_cnt(hdrs), 0);   /* report, map, list */
    for (i = 0; rd_kafka_header_get_all(hdrs, i, &name, &value, &len) ==
                RD_KAFKA_RESP_ERR_NO_ERROR; i++) {
        lua_createtable(L, 2, 0);
        lua_pushstring(L, name);
        lua_rawseti(L, -2, 1);
        lua_pushlstring(L, value ? value : "", value ? len : 0);
        lua_pushvalue(L, -1);
        lua_setfield(L, -5, name);                           /* map[name] */
        lua_rawseti(L, -2, 2);
        lua_rawseti(L, -2, (lua_Integer)i + 1);              /* list[i + 1] */
    }
    lua_setfield(L, -3, "header_list");
    lua_setfield(L, -2, "headers");
}

/* A local failure (timed out, purged) after a client error: that error
 * is its likely cause, named in the report and the default log line. */
static int has_cause(const prd_producer *p, const rd_kafka_message_t *m)
{
    return m->err < 0 && p->last_error;
}

/*
 * Pushes err: nil, or the message of m's error. A local failure (timed
 * out, purged) that follows a client error such as failed authentication
 * names that error too.
 */
static void push_error(lua_State *L, prd_producer *p, const rd_kafka_message_t *m)
{
    if (has_cause(p, m))
        lua_pushfstring(L, "%s (last error: %s)", rd_kafka_err2str(m->err),
                        p->last_error_text);
    else if (m->err)
        lua_pushstring(L, rd_kafka_err2str(m->err));
    else
        lua_pushnil(L);
}

/* Pushes m's failure as an error object, with err's message (push_error).
 * A message failed by a fatal error (_FATAL) names that error. */
static void push_error_object(lua_State *L, prd_producer *p, const rd_kafka_message_t *m)
{
    rd_kafka_resp_err_t err = m->err;
    int flags = 0;

    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        rd_kafka_resp_err_t fatal = rd_kafka_fatal_error(p->rk, NULL, 0);

        if (fatal)
            err = fatal;
        flags = PRD_E_FATAL;
    }
    push_error(L, p, m);
    prd_kafka_error_push(L, err, lua_tostring(L, -1), flags);
    lua_remove(L, -2);
}

/* Pushes the report table of message m. */
static void push_report(lua_State *L, prd_producer *p, const rd_kafka_message_t *m)
{
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    int cause = has_cause(p, m);

    lua_createtable(L, 0, 11);
    lua_pushstring(L, rd_kafka_topic_name(m->rkt));
    lua_setfield(L, -2, "topic");
    lua_pushinteger(L, m->partition);
    lua_setfield(L, -2, "partition");
    lua_pushinteger(L, m->offset);
    lua_setfield(L, -2, "offset");
    set_bytes(L, "key", m->key, m->key_len);
    set_bytes(L, "value", m->payload, m->len);
    if (ts >= 0) {
        lua_pushinteger(L, ts);
        lua_setfield(L, -2, "timestamp");
    }
    lua_pushnumber(L, (lua_Number)rd_kafka_message_latency(m) / 1e6);
    lua_setfield(L, -2, "latency");
    if (m->err) {
        lua_pushstring(L, rd_kafka_err2name(m->err));
        lua_setfield(L, -2, "error");
        push_error_object(L, p, m);
        lua_setfield(L, -2, "error_object");
        /* failed, yet maybe written: timed out or purged in flight, a
         * lost connection (librdkafka's message status) */
        lua_pushboolean(L, rd_kafka_message_status(m) == RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED);
        lua_setfield(L, -2, "possibly_persisted");
    }
    if (cause) {
        lua_pushstring(L, rd_kafka_err2name(p->last_error));
        lua_setfield(L, -2, "cause");
    }
    push_headers(L, m);
}

/* The default report: failures at error level, successes at debug. */
static int default_report(lua_State *L, prd_producer *p, const rd_kafka_message_t *m)
{
    const char *topic = rd_kafka_topic_name(m->rkt);

    /* purged by close: its one summary line counts them */
    if (p->closing && (m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE ||
                       m->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT))
        return LUA_OK;

    if (has_cause(p, m))
        return prd_log_f(L, &p->log, &p->busy, PRD_ERROR, "delivery failed: %s [%d]: %s (%s; last error: %s (%s))",
                        topic, (int)m->partition, rd_kafka_err2str(m->err),
                        rd_kafka_err2name(m->err), p->last_error_text,
                        rd_kafka_err2name(p->last_error));
    if (m->err)
        return prd_log_f(L, &p->log, &p->busy, PRD_ERROR, "delivery failed: %s [%d]: %s (%s)",
                     topic, (int)m->partition, rd_kafka_err2str(m->err),
                     rd_kafka_err2name(m->err));
    return prd_log_f(L, &p->log, &p->busy, PRD_DEBUG, "delivered to %s [%d] at offset %lld",
                 topic, (int)m->partition, (long long)m->offset);
}

/* Counts m's report: served, delivered or failed, its bytes and latency. */
static void count_report(prd_producer *p, const rd_kafka_message_t *m)
{
    p->queued--;
    prd_latency_record(&p->latency, rd_kafka_message_latency(m));
    if (m->err) {
        p->failures++;
        p->failed_bytes += m->len + m->key_len;
    } else {
        p->delivered++;
        p->delivered_bytes += m->len + m->key_len;
        p->last_error = RD_KAFKA_RESP_ERR_NO_ERROR;   /* the cluster answers again */
    }
}

/*
 * Calls m's callback with err and, if it takes one, the report table,
 * unprotected: serve_batch's protected call holds the batch. Without a
 * callback, the default report, whose logger runs in a protected call of
 * its own: returns its status, an error on top of the stack.
 */
static int report(lua_State *L, prd_producer *p, const rd_kafka_message_t *m)
{
    int ref = prd_msgstate_ref(m->_private), takes_report;

    if (!m->err && p->only_errors)
        return LUA_OK;
    if (ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
        takes_report = prd_msgstate_takes_report(m->_private);
    } else if (p->on_delivery != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, p->on_delivery);
        takes_report = p->on_delivery_report;
    } else {
        return default_report(L, p, m);
    }
    push_error(L, p, m);
    if (takes_report) {
        push_report(L, p, m);
        lua_call(L, 2, 0);
    } else {
        lua_call(L, 1, 0);
    }
    return LUA_OK;
}

/* One run of serve_reports: what it needs, and what it leaves behind. */
typedef struct {
    prd_producer *p;
    int *served;
    int max;                    /* stop when *served reaches it */
    void *opaque;               /* of the report being served, until released */
    int status;                 /* a logger's error status */
} prd_batch;

/* The next report of the batch p->pending; NULL once the batch is done
 * (and destroyed). */
static const rd_kafka_message_t *batch_next(prd_producer *p)
{
    const rd_kafka_message_t *m = rd_kafka_event_message_next(p->pending);

    if (!m) {
        rd_kafka_event_destroy(p->pending);
        p->pending = NULL;
    }
    return m;
}

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
    const rd_kafka_message_t *m;

    while (p->pending && *b->served < b->max) {
        if (!(m = batch_next(p)))
            break;
        (*b->served)++;
        count_report(p, m);
        b->opaque = m->_private;        /* m may be freed by a callback's poll */
        if ((b->status = report(L, p, m)) != LUA_OK)
            return 1;
        prd_msgstate_release(L, b->opaque);
        b->opaque = NULL;
    }
    return 0;
}

/* Makes ev, a batch of reports, the one being served: a new batch is
 * where the latency window may turn (stats.c), one clock read a batch. */
static void hold_batch(prd_producer *p, rd_kafka_event_t *ev)
{
    p->pending = ev;
    prd_latency_tick(&p->latency, prd_clock_now_ms());
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

/*
 * A log line for the logger. librdkafka reports a broker's failure (a
 * refused connection, a disconnect) twice: a "FAIL" line, then an error
 * event with the same text, one after the other in the queue
 * (rd_kafka_broker_set_error, 2.0 to 2.8). The error event is the one
 * kept (it has the error's name and goes to on_error): the FAIL line is
 * dropped, unless at debug level (debug=broker), where no event follows.
 * Matching the two instead fails when brokers fail together and their
 * lines interleave.
 */
static int serve_log(lua_State *L, prd_producer *p, rd_kafka_event_t *ev)
{
    const char *fac, *str;
    int level;

    rd_kafka_event_log(ev, &fac, &str, &level);
    /* syslog levels; librdkafka's LOG_ERR lines repeat what error
     * events and failed reports say, so they log as warnings */
    level = level <= 2 ? PRD_ERROR : level <= 4 ? PRD_WARN
          : level <= 6 ? PRD_INFO : PRD_DEBUG;
    if (strcmp(fac, "FAIL") == 0 && level != PRD_DEBUG)
        return LUA_OK;
    return prd_log_f(L, &p->log, &p->busy, level, "librdkafka %s: %s", fac, str);
}

/* An error event: prd_kafka_error_report (its FAIL line is dropped: serve_log). */
static int serve_error(lua_State *L, prd_producer *p, rd_kafka_event_t *ev)
{
    char text[PRD_TEXT_MAX];

    if (prd_oauth_echo(p, ev))
        return LUA_OK;
    snprintf(text, sizeof text, "%s", rd_kafka_event_error_string(ev));
    return prd_kafka_error_report(L, p, rd_kafka_event_error(ev), text,
                            rd_kafka_event_error_is_fatal(ev));
}

static int serve_other(lua_State *L, prd_producer *p, rd_kafka_event_t *ev)
{
    switch (rd_kafka_event_type(ev)) {
    case RD_KAFKA_EVENT_LOG:
        return serve_log(L, p, ev);
    case RD_KAFKA_EVENT_STATS:
        return prd_stats_serve(L, p, ev);
    case RD_KAFKA_EVENT_ERROR:
        return serve_error(L, p, ev);
    case RD_KAFKA_EVENT_OAUTHBEARER_TOKEN_REFRESH:
        return prd_oauth_refresh(L, p, ev);
    default:
        return LUA_OK;
    }
}

/*
 * Called by librdkafka, on one of its threads and with the queue locked,
 * when an event arrives in the empty main queue: marks the producer ready
 * and wakes the pipe of event_fd() (wake.c: atomics and write(2) only).
 */
void prd_report_wake(rd_kafka_t *rk, void *opaque)
{
    prd_producer *p = opaque;

    (void)rk;
    prd_wake_signal(&p->wake);
}

/* When events are waiting (after an early return, or as event_fd()
 * makes its pipe): ready, and the event loop woken, as prd_report_wake. */
void prd_report_wake_if_waiting(prd_producer *p)
{
    if (p->pending || rd_kafka_queue_length(p->queue) > 0)
        prd_wake_signal(&p->wake);
}

/* Whether the waiting call was interrupted (signal.c): recorded in
 * p->interrupted. */
static int interrupted(lua_State *L, prd_producer *p)
{
    return (p->interrupted = prd_watch_check(L, &p->watch)) != 0;
}

/* The next event, waiting up to timeout_ms in slices between which an
 * interrupt ends the wait; NULL at the timeout or when interrupted. */
static rd_kafka_event_t *wait_event(lua_State *L, prd_producer *p, int timeout_ms)
{
    int64_t deadline = prd_clock_now_ms() + timeout_ms;
    rd_kafka_event_t *ev;
    int slice;

    for (;;) {
        slice = timeout_ms < PRD_WATCH_SLICE_MS ? timeout_ms : PRD_WATCH_SLICE_MS;
        if ((ev = rd_kafka_queue_poll(p->queue, slice)) || slice == timeout_ms)
            return ev;
        if (interrupted(L, p) || (timeout_ms = (int)(deadline - prd_clock_now_ms())) <= 0)
            return NULL;
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
 * (Q_SERVE: logs, errors, statistics, tokens) or dropped (__gc). Returns
 * 1 with a batch in p->pending; 0 when the queue is empty, the wait
 * ended, an interrupt came (Q_WATCH) or an event's Lua failed (*status,
 * the error on top of the stack). batch_next takes its reports.
 */
static int queue_batch(lua_State *L, prd_producer *p, int *timeout_ms, int how, int *status)
{
    rd_kafka_event_t *ev;

    for (;;) {
        if ((how & Q_WATCH) && interrupted(L, p))
            return 0;
        if (p->pending)
            return 1;
        ev = how & Q_WATCH ? wait_event(L, p, *timeout_ms)
                           : rd_kafka_queue_poll(p->queue, *timeout_ms);
        if (!ev)
            return 0;
        *timeout_ms = 0;
        if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_DR) {
            hold_batch(p, ev);
            return 1;
        }
        if (how & Q_SERVE)
            *status = serve_other(L, p, ev);
        rd_kafka_event_destroy(ev);
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
static const rd_kafka_message_t *next_report(lua_State *L, prd_producer *p, int *status)
{
    const rd_kafka_message_t *m;
    int timeout_ms = 0;

    while (queue_batch(L, p, &timeout_ms, Q_SERVE, status))
        if ((m = batch_next(p)))
            return m;
    return NULL;
}

/* Pushes m's report as a value: the report table, with err and its own
 * callback (on_delivery) as fields. */
static void push_report_value(lua_State *L, prd_producer *p, const rd_kafka_message_t *m)
{
    int ref = prd_msgstate_ref(m->_private);

    push_report(L, p, m);
    push_error(L, p, m);
    lua_setfield(L, -2, "err");
    if (ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
        lua_setfield(L, -2, "on_delivery");
    }
}

/* Protected: fills a new list with up to max reports; returns it, and a
 * logger's error when one stopped it. */
static int collect_reports(lua_State *L)
{
    prd_take *t = lua_touserdata(L, 1);
    prd_producer *p = t->p;
    const rd_kafka_message_t *m;
    int n = 0, status = LUA_OK;

    lua_newtable(L);                                 /* t, list */
    while (n < t->max && (m = next_report(L, p, &status))) {
        count_report(p, m);
        if (m->err || !p->only_errors) {
            push_report_value(L, p, m);
            lua_rawseti(L, 2, ++n);
        }
        prd_msgstate_release(L, m->_private);
    }
    return status == LUA_OK ? 1 : 2;                 /* list[, error] */
}

/*
 * Serves up to max waiting delivery reports as values (no callback is
 * called); logs and errors go to the logger. Pushes the list, and a
 * logger's error if one raised; returns the number of values pushed.
 */
int prd_report_take(lua_State *L, prd_producer *p, int max)
{
    prd_take t = {p, max};
    int base, status;

    if (p->busy) {
        lua_newtable(L);
        return 1;
    }
    prd_wake_take(&p->wake);
    base = lua_gettop(L) + 1;
    prd_call_push_handler(L);
    prd_call_push_function(L, &collect_reports_key, collect_reports);
    lua_pushlightuserdata(L, &t);
    status = prd_call_pcall(L, &p->busy, 1, 2, base);
    lua_remove(L, base);
    prd_report_wake_if_waiting(p);         /* what max left behind */
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
int prd_report_serve(lua_State *L, prd_producer *p, int timeout_ms, int *served, int max)
{
    int status;

    /* Called by Lua that serving runs (a callback that produces): the
     * outer call goes on serving, so the depth stays one however many
     * reports a batch holds. */
    if (p->busy)
        return LUA_OK;
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
    if (status != LUA_OK || *served >= max || p->interrupted)
        prd_report_wake_if_waiting(p);         /* what is left stays ready */
    return status;
}

/*
 * Empties the queue without running Lua (for __gc), waiting up to
 * timeout_ms for the first event: drops logs, releases the callbacks of
 * reports, counts failed deliveries.
 */
static void empty_silently(lua_State *L, prd_producer *p, int timeout_ms)
{
    const rd_kafka_message_t *m;
    int status = LUA_OK;

    while (queue_batch(L, p, &timeout_ms, 0, &status))
        while ((m = batch_next(p))) {
            count_report(p, m);
            prd_msgstate_release(L, m->_private);
        }
}

/* Releases what the reports still queued hold, running no Lua, waiting
 * for none (the last step of close). */
void prd_report_drop(lua_State *L, prd_producer *p)
{
    empty_silently(L, p, 0);
}

/*
 * Has librdkafka send what it holds at once, not when linger.ms runs out,
 * as confluent-kafka-python's flush does: rd_kafka_flush wakes the
 * brokers' threads, which send at once while it runs. With reports as
 * events it serves none and waits for them all; a moment is enough for
 * the threads to wake, then the caller serves the reports.
 */
static void send_now(prd_producer *p)
{
    rd_kafka_flush(p->rk, SEND_NOW_MS);
}

/* The next slice of waiting for reports before the deadline, once
 * librdkafka has been told to send at once; 0 when nothing is queued any
 * more or the deadline has passed. */
static int next_slice(prd_producer *p, int64_t deadline)
{
    int64_t left = deadline - prd_clock_now_ms();

    if (!p->rk || p->queued == 0 || left <= 0)
        return 0;
    send_now(p);
    return left < SERVE_SLICE_MS ? (int)left : SERVE_SLICE_MS;
}

/*
 * Serves reports until every message produced has had its report, or the
 * deadline passes. Raises a callback's error unless kept is given: then
 * the first error is left at the top of the stack, later ones dropped,
 * *kept counts them, and serving goes on. Returns the messages still
 * queued.
 */
long prd_report_drain(lua_State *L, prd_producer *p, int timeout_ms, int *kept)
{
    int64_t deadline = prd_clock_now_ms() + timeout_ms;
    int served = 0, slice = 0;

    /* an interrupt (signal.c) ends the wait: p->interrupted says which */
    prd_watch_start(L, &p->watch);
    p->watching = 1;
    p->interrupted = 0;
    do {                /* serves what waits already, even at timeout 0 */
        if (prd_report_serve(L, p, slice, &served, INT_MAX) != LUA_OK) {
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
void prd_report_drain_silently(lua_State *L, prd_producer *p, int timeout_ms)
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
void prd_report_open(lua_State *L)
{
    prd_call_push_function(L, &serve_reports_key, serve_reports);
    prd_call_push_function(L, &collect_reports_key, collect_reports);
    lua_pop(L, 2);
    prd_oauth_open(L);
}
