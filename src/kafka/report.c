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
 * copy, ride in its opaque (prd_opaque, prd_opaque_keep) and are unreffed
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

#include "prd.h"

static const char *const level_names[] = {NULL, "debug", "info", "warn", "error"};

#ifndef LUA_GCISRUNNING            /* Lua 5.1: taken as running */
#define gc_is_running(L) 1
#else
#define gc_is_running(L) lua_gc(L, LUA_GCISRUNNING, 0)
#endif

/* Whether msg is the interpreter's Ctrl-C, "interrupted!" (lua.c's and
 * luajit's), bare or after a position ("script.lua:12: "): the
 * interpreter prints its own traceback for it. */
static int is_interrupt(const char *msg)
{
    size_t len = strlen(msg), i;

    if (len < 12 || strcmp(msg + len - 12, "interrupted!") != 0)
        return 0;
    if (len == 12)
        return 1;
    if (len < 16 || msg[len - 13] != ' ' || msg[len - 14] != ':')
        return 0;
    for (i = len - 15; i > 0 && msg[i] >= '0' && msg[i] <= '9'; i--)
        ;
    return i < len - 15 && msg[i] == ':';       /* ":<line>: interrupted!" */
}

/*
 * Message handler for protected calls: appends a traceback to strings
 * (but the interpreter's Ctrl-C: one traceback, the interpreter's).
 * The collector waits while it allocates: a finalizer run from here would
 * run inside the error handler, where an error it raises is taken for an
 * error in the handler.
 */
static int traceback(lua_State *L)
{
    int running = gc_is_running(L);
    const char *msg;

    if (running)
        lua_gc(L, LUA_GCSTOP, 0);
    if ((msg = lua_tostring(L, 1)) && !is_interrupt(msg))
        luaL_traceback(L, L, msg, 1);
    if (running)
        lua_gc(L, LUA_GCRESTART, 0);
    return 1;
}

/* Pushes f, made once per Lua state and kept in the registry under key:
 * LuaJIT allocates a new closure on every lua_pushcfunction. */
void prd_push_function(lua_State *L, const void *key, lua_CFunction f)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) == LUA_TFUNCTION)
        return;
    lua_pop(L, 1);
    lua_pushcfunction(L, f);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

/* The keys of the functions push_function keeps (their addresses). */
static const char handler_key, serve_reports_key, collect_reports_key, log_line_key,
                  on_error_key;

static void push_handler(lua_State *L)
{
    prd_push_function(L, &handler_key, traceback);
}

/*
 * Calls f with the light userdata ud, protected, with the traceback
 * handler, the producer busy. Nothing that allocates (so nothing that can
 * run a finalizer, which could close the producer or raise past us) runs
 * outside the protected call: f pushes what it needs. Returns the status,
 * the error on top of the stack on failure.
 */
int prd_call_busy(lua_State *L, prd_producer *p, const void *key, lua_CFunction f,
                  void *ud)
{
    int base = lua_gettop(L) + 1, status;

    push_handler(L);
    prd_push_function(L, key, f);
    lua_pushlightuserdata(L, ud);
    p->busy++;
    status = lua_pcall(L, 1, 0, base);
    p->busy--;
    lua_remove(L, base);
    return status;
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

/* printf-style logging through the producer's logger, if the level is
 * enabled; returns the logger's status (an error on top of the stack). */
int prd_logf(lua_State *L, prd_producer *p, int level, const char *fmt, ...)
{
    char line[PRD_TEXT_MAX];
    prd_line l;
    va_list ap;

    if (level < p->log_level)
        return LUA_OK;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    prd_redact(p->secrets, line);
    if (p->logger == LUA_NOREF) {
        prd_log_host(L, level_names[level], line);   /* host's hook or stderr */
        return LUA_OK;
    }
    l.logger = p->logger;
    l.level = level_names[level];
    l.line = line;
    return prd_call_busy(L, p, &log_line_key, log_line, &l);
}

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
    prd_push_error(L, err, lua_tostring(L, -1), flags);
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
        return prd_logf(L, p, PRD_ERROR, "delivery failed: %s [%d]: %s (%s; last error: %s (%s))",
                        topic, (int)m->partition, rd_kafka_err2str(m->err),
                        rd_kafka_err2name(m->err), p->last_error_text,
                        rd_kafka_err2name(p->last_error));
    if (m->err)
        return prd_logf(L, p, PRD_ERROR, "delivery failed: %s [%d]: %s (%s)",
                     topic, (int)m->partition, rd_kafka_err2str(m->err),
                     rd_kafka_err2name(m->err));
    return prd_logf(L, p, PRD_DEBUG, "delivered to %s [%d] at offset %lld",
                 topic, (int)m->partition, (long long)m->offset);
}

/* An opaque holding the value's string ref too (and the callback's, if
 * any): NULL when out of memory. */
void *prd_opaque_keep(int ref, int takes_report, int value)
{
    prd_msgstate *s = malloc(sizeof *s);

    if (s) {
        s->callback = ref;
        s->takes_report = takes_report;
        s->value = value;
    }
    return s;
}

/* Releases the refs an opaque holds, and its memory. */
void prd_opaque_release(lua_State *L, void *opaque)
{
    prd_msgstate *s = opaque;

    if (!opaque)
        return;
    if (prd_opaque_packed(opaque)) {
        luaL_unref(L, LUA_REGISTRYINDEX, prd_opaque_ref(opaque));
        return;
    }
    luaL_unref(L, LUA_REGISTRYINDEX, s->callback);
    luaL_unref(L, LUA_REGISTRYINDEX, s->value);
    free(s);
}

/* Counts m's report: served, delivered or failed, its bytes and latency. */
static void count_report(prd_producer *p, const rd_kafka_message_t *m)
{
    p->outstanding--;
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
    int ref = prd_opaque_ref(m->_private), takes_report;

    if (!m->err && p->only_errors)
        return LUA_OK;
    if (ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
        takes_report = prd_opaque_takes_report(m->_private);
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
        if (!(m = rd_kafka_event_message_next(p->pending))) {
            rd_kafka_event_destroy(p->pending);
            p->pending = NULL;
            break;
        }
        (*b->served)++;
        count_report(p, m);
        b->opaque = m->_private;        /* m may be freed by a callback's poll */
        if ((b->status = report(L, p, m)) != LUA_OK)
            return 1;
        prd_opaque_release(L, b->opaque);
        b->opaque = NULL;
    }
    return 0;
}

/* Makes ev, a batch of reports, the one being served: a new batch is
 * where the latency window may turn (stats.c), one clock read a batch. */
static void hold_batch(prd_producer *p, rd_kafka_event_t *ev)
{
    p->pending = ev;
    prd_latency_tick(&p->latency, prd_now_ms());
}

/* Serves p->pending in one protected call, with the traceback handler at
 * *handler (pushed at the top when 0). Returns LUA_OK, or an error status
 * with the error on top of the stack. */
static int serve_batch(lua_State *L, prd_producer *p, int *served, int max, int *handler)
{
    prd_batch b = {p, served, max, NULL, LUA_OK};
    int status;

    if (!*handler) {
        push_handler(L);
        *handler = lua_gettop(L);
    }
    prd_push_function(L, &serve_reports_key, serve_reports);
    lua_pushlightuserdata(L, &b);
    p->busy++;
    status = lua_pcall(L, 1, 1, *handler);
    p->busy--;
    prd_opaque_release(L, b.opaque);    /* the report whose call failed */
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
    return prd_logf(L, p, level, "librdkafka %s: %s", fac, str);
}

/* A client-level error for on_error: what call_on_error needs. */
typedef struct {
    int on_error;               /* registry ref */
    rd_kafka_resp_err_t err;
    const char *text;           /* redacted */
    int fatal;
} prd_client_error;

/* Protected: calls on_error with the error object. */
static int call_on_error(lua_State *L)
{
    const prd_client_error *e = lua_touserdata(L, 1);

    lua_rawgeti(L, LUA_REGISTRYINDEX, e->on_error);
    prd_push_error(L, e->err, e->text, e->fatal ? PRD_E_FATAL : 0);
    lua_call(L, 1, 0);
    return 0;
}

/*
 * A client-level error (a broker down, failed authentication, a fatal
 * error), handed to on_error or, without one, logged. It is kept as the
 * likely cause of the local failures that follow (has_cause). text:
 * PRD_TEXT_MAX bytes, redacted here.
 */
int prd_report_error(lua_State *L, prd_producer *p, rd_kafka_resp_err_t err,
                     char *text, int fatal)
{
    prd_client_error e = {p->on_error, err, NULL, fatal};

    prd_redact(p->secrets, text);
    /* "all brokers are down" follows the error that took them down:
     * it names the cause only when there is no other */
    if (err != RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || !p->last_error) {
        p->last_error = err;
        snprintf(p->last_error_text, sizeof p->last_error_text, "%.*s",
                 (int)sizeof p->last_error_text - 1, text);
    }
    if (p->on_error != LUA_NOREF) {
        e.text = text;
        return prd_call_busy(L, p, &on_error_key, call_on_error, &e);
    }
    return prd_logf(L, p, PRD_ERROR, "%s: %s (%s)", e.fatal ? "fatal error" : "error",
                    text, rd_kafka_err2name(err));
}

/* An error event: prd_report_error (its FAIL line is dropped: serve_log). */
static int serve_error(lua_State *L, prd_producer *p, rd_kafka_event_t *ev)
{
    char text[PRD_TEXT_MAX];

    if (prd_oauth_echo(p, ev))
        return LUA_OK;
    snprintf(text, sizeof text, "%s", rd_kafka_event_error_string(ev));
    return prd_report_error(L, p, rd_kafka_event_error(ev), text,
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

/* Empties the wake-up pipe of event_fd(), if any. */
void prd_clear_wake(prd_producer *p)
{
    char buf[64];
    ssize_t n;

    if (p->wake[0] < 0)
        return;
    do
        n = read(p->wake[0], buf, sizeof buf);
    while (n > 0 || (n < 0 && errno == EINTR));
}

/*
 * Called by librdkafka, on one of its threads and with the queue locked,
 * when an event arrives in the empty main queue: marks the producer ready
 * and wakes the pipe of event_fd(). Atomics and write(2) only.
 */
void prd_queue_event(rd_kafka_t *rk, void *opaque)
{
    prd_producer *p = opaque;
    int fd = atomic_load(&p->wake_fd);

    (void)rk;
    atomic_store(&p->ready, 1);
    if (fd >= 0)
        (void)!write(fd, "1", 1);
}

/* When events are waiting (after an early return, or as event_fd()
 * makes its pipe): ready, and the event loop woken, as prd_queue_event. */
void prd_wake_if_waiting(prd_producer *p)
{
    if (p->pending || rd_kafka_queue_length(p->queue) > 0)
        prd_queue_event(p->rk, p);
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
    int64_t deadline = prd_now_ms() + timeout_ms;
    rd_kafka_event_t *ev;
    int slice;

    for (;;) {
        slice = timeout_ms < PRD_WATCH_SLICE_MS ? timeout_ms : PRD_WATCH_SLICE_MS;
        if ((ev = rd_kafka_queue_poll(p->queue, slice)) || slice == timeout_ms)
            return ev;
        if (interrupted(L, p) || (timeout_ms = (int)(deadline - prd_now_ms())) <= 0)
            return NULL;
    }
}

/* Serves events until max reports are served or the queue is empty.
 * Before each, an interrupt stops it: no Lua runs once the interpreter's
 * hook is set, so that it fires in the caller, at once. */
static int serve_events(lua_State *L, prd_producer *p, int timeout_ms, int *served,
                        int max, int *handler)
{
    rd_kafka_event_t *ev;
    int status;

    while (*served < max) {
        if (interrupted(L, p))
            return LUA_OK;
        if (!p->pending) {
            ev = wait_event(L, p, timeout_ms);
            if (!ev)
                return LUA_OK;
            timeout_ms = 0;
            if (rd_kafka_event_type(ev) != RD_KAFKA_EVENT_DR) {
                status = serve_other(L, p, ev);
                rd_kafka_event_destroy(ev);
                if (status != LUA_OK)
                    return status;
                prd_watch_hook(L, &p->watch);   /* Lua ran: hooks it set are its own */
                continue;
            }
            hold_batch(p, ev);
        }
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
    rd_kafka_event_t *ev;

    for (;;) {
        if (!p->pending) {
            if (!(ev = rd_kafka_queue_poll(p->queue, 0)))
                return NULL;
            if (rd_kafka_event_type(ev) != RD_KAFKA_EVENT_DR) {
                *status = serve_other(L, p, ev);
                rd_kafka_event_destroy(ev);
                if (*status != LUA_OK)
                    return NULL;
                continue;
            }
            hold_batch(p, ev);
        }
        if ((m = rd_kafka_event_message_next(p->pending)))
            return m;
        rd_kafka_event_destroy(p->pending);
        p->pending = NULL;
    }
}

/* Pushes m's report as a value: the report table, with err and its own
 * callback (on_delivery) as fields. */
static void push_report_value(lua_State *L, prd_producer *p, const rd_kafka_message_t *m)
{
    int ref = prd_opaque_ref(m->_private);

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
        prd_opaque_release(L, m->_private);
    }
    return status == LUA_OK ? 1 : 2;                 /* list[, error] */
}

/*
 * Serves up to max waiting delivery reports as values (no callback is
 * called); logs and errors go to the logger. Pushes the list, and a
 * logger's error if one raised; returns the number of values pushed.
 */
int prd_take_reports(lua_State *L, prd_producer *p, int max)
{
    prd_take t = {p, max};
    int status;

    if (p->busy) {
        lua_newtable(L);
        return 1;
    }
    atomic_store(&p->ready, 0);
    prd_clear_wake(p);
    prd_push_function(L, &collect_reports_key, collect_reports);
    lua_pushlightuserdata(L, &t);
    p->busy++;
    status = lua_pcall(L, 1, 2, 0);
    p->busy--;
    prd_wake_if_waiting(p);         /* what max left behind */
    if (status != LUA_OK)
        lua_error(L);
    return lua_isnil(L, -1) ? (lua_pop(L, 1), 1) : 2;
}

/* Messages produced whose report has not been served. */
long prd_waiting(prd_producer *p)
{
    return p->outstanding;
}

/*
 * Serves events for up to timeout_ms (waiting only for the first one)
 * until the queue is empty or *served reaches max, adding the number of
 * delivery reports served to *served. Returns LUA_OK, or a Lua error
 * status with the error object on top of the stack.
 */
int prd_serve_max(lua_State *L, prd_producer *p, int timeout_ms, int *served, int max)
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
    if (timeout_ms == 0 && !p->pending && !atomic_load(&p->ready))
        return LUA_OK;
    /* a call of its own: interrupts count from now (flush and close
     * hold theirs, taken when they started) */
    if (!p->watching)
        prd_watch_start(L, &p->watch);
    /* first: what arrives after this sets them again */
    atomic_store(&p->ready, 0);
    prd_clear_wake(p);
    status = serve(L, p, timeout_ms, served, max);
    if (status != LUA_OK || *served >= max || p->interrupted)
        prd_wake_if_waiting(p);         /* what is left stays ready */
    return status;
}

int prd_serve(lua_State *L, prd_producer *p, int timeout_ms, int *served)
{
    return prd_serve_max(L, p, timeout_ms, served, INT_MAX);
}

/*
 * Empties the queue without running Lua (for __gc), waiting up to
 * timeout_ms for the first event: drops logs, releases the callbacks of
 * reports, counts failed deliveries.
 */
void prd_drain_silently(prd_producer *p, lua_State *L, int timeout_ms)
{
    const rd_kafka_message_t *m;
    rd_kafka_event_t *ev;

    for (;;) {
        if (!p->pending) {
            if (!(ev = rd_kafka_queue_poll(p->queue, timeout_ms)))
                return;
            timeout_ms = 0;
            if (rd_kafka_event_type(ev) != RD_KAFKA_EVENT_DR) {
                rd_kafka_event_destroy(ev);
                continue;
            }
            hold_batch(p, ev);
        }
        while ((m = rd_kafka_event_message_next(p->pending))) {
            count_report(p, m);
            prd_opaque_release(L, m->_private);
        }
        rd_kafka_event_destroy(p->pending);
        p->pending = NULL;
    }
}

/*
 * Makes the functions the serving pushes, once per Lua state, before any
 * producer exists: made later, on first use, the allocation could run a
 * finalizer that closes the producer being served.
 */
void prd_report_open(lua_State *L)
{
    push_handler(L);
    prd_push_function(L, &serve_reports_key, serve_reports);
    prd_push_function(L, &collect_reports_key, collect_reports);
    prd_push_function(L, &log_line_key, log_line);
    prd_push_function(L, &on_error_key, call_on_error);
    lua_pop(L, 5);
    prd_oauth_open(L);
}
