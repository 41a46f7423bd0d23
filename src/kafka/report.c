/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * report.c: the Kafka side of serving (core/queue.c serves): librdkafka's
 * main queue as prd_transport's events.
 *
 * librdkafka puts delivery reports (in batches), log lines, errors,
 * statistics (stats.c) and OAUTHBEARER token requests (oauth.c) on the
 * main queue as events, and calls prd_report_wake, on one of its threads,
 * when the empty queue gets one. A batch is held in p->base.pending for
 * queue.c; the other events are served here (loggers and on_error run in
 * protected calls of their own). A report's table says what librdkafka
 * says of the message: topic, partition, offset, key, value, timestamp,
 * latency, headers, the error and its likely cause. A callback declared
 * with one parameter, function(err), gets no report table: none is built.
 */
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/msgstate.h"
#include "core/spooling.h"
#include "kafka/errors.h"
#include "kafka/oauth.h"
#include "kafka/report.h"
#include "kafka/stats.h"

#define SEND_NOW_MS 1             /* send_now's wait */

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
static int has_cause(const prd_kafka *p, const rd_kafka_message_t *m)
{
    return m->err < 0 && p->last_error;
}

/*
 * Pushes err: nil, or the message of m's error. A local failure (timed
 * out, purged) that follows a client error such as failed authentication
 * names that error too.
 */
static void push_error(lua_State *L, prd_kafka *p, const rd_kafka_message_t *m)
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
static void push_error_object(lua_State *L, prd_kafka *p, const rd_kafka_message_t *m)
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
static void push_report(lua_State *L, prd_kafka *p, const rd_kafka_message_t *m)
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
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, "err_name");
        lua_setfield(L, -2, "error");       /* err_name's older name, kept */
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
    prd_spooling_report_fields(L, &p->base, m->_private);
}

/* The default report: failures at error level, successes at debug. */
static int default_report(lua_State *L, prd_kafka *p, const rd_kafka_message_t *m)
{
    const char *topic = rd_kafka_topic_name(m->rkt);

    /* purged by close: its one summary line counts them */
    if (p->base.closing && (m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE ||
                       m->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT))
        return LUA_OK;

    if (has_cause(p, m))
        return prd_log_f(L, &p->base.log, &p->base.busy, PRD_ERROR, "delivery failed: %s [%d]: %s (%s; last error: %s (%s))",
                        topic, (int)m->partition, rd_kafka_err2str(m->err),
                        rd_kafka_err2name(m->err), p->last_error_text,
                        rd_kafka_err2name(p->last_error));
    if (m->err)
        return prd_log_f(L, &p->base.log, &p->base.busy, PRD_ERROR, "delivery failed: %s [%d]: %s (%s)",
                     topic, (int)m->partition, rd_kafka_err2str(m->err),
                     rd_kafka_err2name(m->err));
    return prd_log_f(L, &p->base.log, &p->base.busy, PRD_DEBUG, "delivered to %s [%d] at offset %lld",
                 topic, (int)m->partition, (long long)m->offset);
}

/* Counts m's report: served, delivered or failed, its bytes and latency. */
void prd_report_count(prd_producer *base, const void *report)
{
    prd_kafka *p = (prd_kafka *)base;
    const rd_kafka_message_t *m = report;

    p->base.queued--;
    prd_latency_record(&p->latency, rd_kafka_message_latency(m));
    if (m->err) {
        p->base.failures++;
        p->failed_bytes += m->len + m->key_len;
    } else {
        p->base.delivered++;
        p->delivered_bytes += m->len + m->key_len;
        p->last_error = RD_KAFKA_RESP_ERR_NO_ERROR;   /* the cluster answers again */
    }
}

/*
 * prd_transport's report: calls m's callback with err and, if it takes
 * one, the report table, unprotected: queue.c's protected call holds the
 * batch. Without a
 * callback, the default report, whose logger runs in a protected call of
 * its own: returns its status, an error on top of the stack.
 */
int prd_report_call(lua_State *L, prd_producer *base, const void *report)
{
    prd_kafka *p = (prd_kafka *)base;
    const rd_kafka_message_t *m = report;
    int takes_report;

    if (!m->err && p->only_errors)
        return LUA_OK;
    if (!prd_msgstate_push_callback(L, m->_private, p->on_delivery, p->on_delivery_report,
                                    &takes_report))
        return default_report(L, p, m);
    push_error(L, p, m);
    if (takes_report) {
        push_report(L, p, m);
        lua_call(L, 2, 0);
    } else {
        lua_call(L, 1, 0);
    }
    return LUA_OK;
}

/* prd_transport's next_report: the next report of the batch
 * p->base.pending; NULL once the batch is done (and destroyed). */
const void *prd_report_next(prd_producer *base)
{
    const rd_kafka_message_t *m = rd_kafka_event_message_next(base->pending);

    if (!m) {
        rd_kafka_event_destroy(base->pending);
        base->pending = NULL;
    }
    return m;
}

/* prd_transport's report_state: a report's message state (its opaque). */
void *prd_report_state(const void *report)
{
    return ((const rd_kafka_message_t *)report)->_private;
}

/* Makes ev, a batch of reports, the one being served: a new batch is
 * where the latency window may turn (stats.c), one clock read a batch. */
static void hold_batch(prd_kafka *p, rd_kafka_event_t *ev)
{
    p->base.pending = ev;
    prd_latency_tick(&p->latency, prd_clock_now_ms());
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
static int serve_log(lua_State *L, prd_kafka *p, rd_kafka_event_t *ev)
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
    return prd_log_f(L, &p->base.log, &p->base.busy, level, "librdkafka %s: %s", fac, str);
}

/* An error event: prd_kafka_error_report (its FAIL line is dropped: serve_log). */
static int serve_error(lua_State *L, prd_kafka *p, rd_kafka_event_t *ev)
{
    char text[PRD_TEXT_MAX];

    if (prd_oauth_echo(p, ev))
        return LUA_OK;
    snprintf(text, sizeof text, "%s", rd_kafka_event_error_string(ev));
    return prd_kafka_error_report(L, p, rd_kafka_event_error(ev), text,
                            rd_kafka_event_error_is_fatal(ev));
}

static int serve_other(lua_State *L, prd_kafka *p, rd_kafka_event_t *ev)
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
/* prd_transport's next_event: the next event of the main queue, waiting
 * up to timeout_ms; a batch of reports is held, any other event served
 * (serve) or dropped. */
int prd_report_next_event(lua_State *L, prd_producer *base, int timeout_ms, int serve, int *status)
{
    prd_kafka *p = (prd_kafka *)base;
    rd_kafka_event_t *ev = rd_kafka_queue_poll(p->queue, timeout_ms);

    if (!ev)
        return PRD_EVENT_NONE;
    if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_DR) {
        hold_batch(p, ev);
        return PRD_EVENT_BATCH;
    }
    if (serve)
        *status = serve_other(L, p, ev);
    rd_kafka_event_destroy(ev);
    return PRD_EVENT_OTHER;
}

void prd_report_wake(rd_kafka_t *rk, void *opaque)
{
    prd_kafka *p = opaque;

    (void)rk;
    prd_wake_signal(&p->base.wake);
}

/* prd_transport's push_report: m's report as a value, the report table
 * with err and its own callback (on_delivery) as fields; none for a
 * success with delivery.report.only.error. */
int prd_report_push(lua_State *L, prd_producer *base, const void *report)
{
    prd_kafka *p = (prd_kafka *)base;
    const rd_kafka_message_t *m = report;

    if (!m->err && p->only_errors)
        return 0;
    push_report(L, p, m);
    push_error(L, p, m);
    lua_setfield(L, -2, "err");
    prd_msgstate_set_on_delivery(L, m->_private);
    return 1;
}

/*
 * Has librdkafka send what it holds at once, not when linger.ms runs out,
 * as confluent-kafka-python's flush does: rd_kafka_flush wakes the
 * brokers' threads, which send at once while it runs. With reports as
 * events it serves none and waits for them all; a moment is enough for
 * the threads to wake, then the caller serves the reports.
 */
void prd_report_send_now(prd_producer *base)
{
    rd_kafka_flush(((prd_kafka *)base)->rk, SEND_NOW_MS);
}

/* prd_transport's waiting: events in the main queue. */
int prd_report_waiting(prd_producer *base)
{
    return rd_kafka_queue_length(((prd_kafka *)base)->queue) > 0;
}
