/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * stats.c: librdkafka's statistics (statistics.interval.ms) and
 * p:metrics() (docs/statistics.md).
 *
 * With statistics enabled, librdkafka puts a JSON document on the main
 * queue every interval; serving it (report.c, serve_other) decodes it
 * (json_decode.c), keeps its brokers for metrics() and calls on_stats
 * with the table, in a protected call with the producer busy, as a
 * delivery callback. The message and byte counts and the latency
 * histogram are kept by report.c's prd_report_count for every report served,
 * with or without statistics.
 *
 * Caveats:
 * - latency is that of the reports served in the last completed window
 *   (statistics.interval.ms, else DEFAULT_WINDOW_MS): a window is closed
 *   when a batch of reports is taken or metrics() is called after its
 *   end, and a batch counts whole in the window it was taken in.
 * - __gc (no Lua runs) drops the statistics events it finds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/call.h"
#include "core/clock.h"
#include "core/json.h"
#include "core/log.h"
#include "core/spooling.h"
#include "kafka/handle.h"
#include "kafka/stats.h"

#define DEFAULT_WINDOW_MS 5000

/* A broker as the last statistics saw it. */
typedef struct prd_broker {
    char name[128];
    char state[16];
    lua_Integer id;             /* -1 until a bootstrap broker is known */
    double rtt_avg_us, rtt_p99_us;
} prd_broker;

typedef struct prd_brokers {
    int n;
    prd_broker list[];
} prd_brokers;

/* The key of serve_doc's function (push_function's registry key). */
static const char serve_doc_key;

/* statistics.interval.ms of conf; 0 when off. */
int prd_stats_interval_ms(rd_kafka_conf_t *conf)
{
    char value[32];
    size_t size = sizeof value;

    if (rd_kafka_conf_get(conf, "statistics.interval.ms", value, &size) != RD_KAFKA_CONF_OK)
        return 0;
    return atoi(value);
}

/*
 * Starts the latency window of a new producer; logs a warning when
 * on_stats is given without statistics, for it will never be called.
 * Returns the logger's status (its error on top of the stack).
 */
int prd_stats_start(lua_State *L, prd_kafka *p)
{
    p->latency.interval_ms = p->stats_interval_ms > 0 ? p->stats_interval_ms
                                                       : DEFAULT_WINDOW_MS;
    p->latency.start_ms = prd_clock_now_ms();
    if (p->on_stats == LUA_NOREF || p->stats_interval_ms > 0)
        return LUA_OK;
    return prd_log_f(L, &p->base.log, &p->base.busy, PRD_WARN, "on_stats is never called: statistics are off "
                                    "(set config[\"statistics.interval.ms\"])");
}

/* The upper bound of bucket i, in microseconds. */
static double bucket_top(int i)
{
    int e, sub;

    if (i < 16)
        return i;
    e = (i - 16) / 8 + 4;
    sub = (i - 16) % 8;
    return (double)((((int64_t)8 + sub + 1) << (e - 3)) - 1);
}

/* The 99th percentile of the window: the top of its bucket, at most the
 * largest value seen. */
static double p99_us(const prd_latency *l)
{
    uint64_t rank = (l->count * 99 + 99) / 100, seen = 0;
    int i;

    for (i = 0; i < PRD_LATENCY_BUCKETS; i++)
        if ((seen += l->buckets[i]) >= rank)
            break;
    return bucket_top(i) < (double)l->max_us ? bucket_top(i) : (double)l->max_us;
}

/*
 * Closes the current window if now_ms is past its end: its figures
 * become the last window's (an empty one when a whole window passed
 * since), and the next window starts on the interval's grid.
 */
void prd_latency_tick(prd_latency *l, int64_t now_ms)
{
    int64_t windows = (now_ms - l->start_ms) / l->interval_ms;

    if (windows < 1)
        return;
    l->last_count = windows == 1 ? l->count : 0;
    if (l->last_count) {
        l->last_avg_us = (double)l->sum_us / (double)l->count;
        l->last_p99_us = p99_us(l);
    }
    l->start_ms += windows * l->interval_ms;
    l->count = l->sum_us = 0;
    l->max_us = 0;
    memset(l->buckets, 0, sizeof l->buckets);
}

/* The number at t[field] (raw), or def. */
static double number_field(lua_State *L, int t, const char *field, double def)
{
    double n;

    lua_pushstring(L, field);
    lua_rawget(L, t);
    n = lua_type(L, -1) == LUA_TNUMBER ? (double)lua_tonumber(L, -1) : def;
    lua_pop(L, 1);
    return n;
}

/* Copies the string at t[field] (raw) into out, "" when not a string. */
static void string_field(lua_State *L, int t, const char *field, char *out, size_t size)
{
    lua_pushstring(L, field);
    lua_rawget(L, t);
    snprintf(out, size, "%s", lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "");
    lua_pop(L, 1);
}

/* Whether the broker table at b is one of librdkafka's own (internal,
 * logical), with no connection to a cluster. */
static int is_own_broker(lua_State *L, int b)
{
    char source[16];

    string_field(L, b, "source", source, sizeof source);
    return strcmp(source, "internal") == 0 || strcmp(source, "logical") == 0;
}

/* The broker table at b into out. */
static void read_broker(lua_State *L, int b, prd_broker *out)
{
    string_field(L, b, "name", out->name, sizeof out->name);
    string_field(L, b, "state", out->state, sizeof out->state);
    out->id = (lua_Integer)number_field(L, b, "nodeid", -1);
    lua_pushliteral(L, "rtt");
    if (lua_rawget(L, b) == LUA_TTABLE) {
        out->rtt_avg_us = number_field(L, lua_gettop(L), "avg", 0);
        out->rtt_p99_us = number_field(L, lua_gettop(L), "p99", 0);
    } else {
        out->rtt_avg_us = out->rtt_p99_us = 0;
    }
    lua_pop(L, 1);
}

static int by_id(const void *a, const void *b)
{
    const prd_broker *x = a, *y = b;

    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* The brokers of the statistics table at doc, replacing p's, in order of
 * id. On a lack of memory p keeps none. */
static void keep_brokers(lua_State *L, prd_kafka *p, int doc)
{
    int brokers, n = 0;
    prd_brokers *kept;

    prd_stats_free(p);
    lua_pushliteral(L, "brokers");
    if (lua_rawget(L, doc) != LUA_TTABLE) {
        lua_pop(L, 1);
        return;
    }
    brokers = lua_gettop(L);
    for (lua_pushnil(L); lua_next(L, brokers); lua_pop(L, 1))
        n++;
    if ((kept = malloc(sizeof *kept + (size_t)n * sizeof kept->list[0]))) {
        kept->n = 0;
        for (lua_pushnil(L); lua_next(L, brokers); lua_pop(L, 1))
            if (lua_istable(L, -1) && !is_own_broker(L, lua_gettop(L)))
                read_broker(L, lua_gettop(L), &kept->list[kept->n++]);
        qsort(kept->list, (size_t)kept->n, sizeof kept->list[0], by_id);
        p->brokers = kept;
    }
    lua_pop(L, 1);
}

/* One statistics document for serve_doc. */
typedef struct {
    prd_kafka *p;
    const char *json;
    size_t len;
    char error[160];            /* why it could not be decoded, or "" */
} prd_doc;

/* Protected: decodes the document, keeps its brokers, calls
 * on_stats(stats, json). */
static int serve_doc(lua_State *L)
{
    prd_doc *d = lua_touserdata(L, 1);
    prd_kafka *p = d->p;

    if (!prd_json_decode(L, d->json, d->len)) {
        snprintf(d->error, sizeof d->error, "%s", lua_tostring(L, -1));
        return 0;
    }
    if (!lua_istable(L, -1)) {
        snprintf(d->error, sizeof d->error, "not a JSON object");
        return 0;
    }
    keep_brokers(L, p, lua_gettop(L));
    if (p->on_stats != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, p->on_stats);
        lua_insert(L, -2);
        lua_pushlstring(L, d->json, d->len);
        lua_call(L, 2, 0);
    }
    return 0;
}

/*
 * Serves a statistics event: returns on_stats's status, its error (with
 * a traceback) on top of the stack. A document that does not decode is
 * logged as an error, and on_stats not called.
 */
int prd_stats_serve(lua_State *L, prd_kafka *p, rd_kafka_event_t *ev)
{
    prd_doc d = {p, rd_kafka_event_stats(ev), 0, ""};
    int status;

    d.len = strlen(d.json);
    if ((status = prd_call_protected(L, &p->base.busy, &serve_doc_key, serve_doc, &d)) != LUA_OK)
        return status;
    if (d.error[0])
        return prd_log_f(L, &p->base.log, &p->base.busy, PRD_ERROR, "statistics: %s", d.error);
    return LUA_OK;
}

/* Frees the brokers kept (close, __gc, and before new ones are kept). */
void prd_stats_free(prd_kafka *p)
{
    free(p->brokers);
    p->brokers = NULL;
}

/* Makes serve_doc's function before any producer exists (as
 * prd_queue_open does for its own). */
void prd_stats_open(lua_State *L)
{
    prd_call_push_function(L, &serve_doc_key, serve_doc);
    lua_pop(L, 1);
}

static void set_number(lua_State *L, const char *field, double n)
{
    lua_pushnumber(L, (lua_Number)n);
    lua_setfield(L, -2, field);
}

static void set_integer(lua_State *L, const char *field, lua_Integer n)
{
    lua_pushinteger(L, n);
    lua_setfield(L, -2, field);
}

/* t[field] = {messages = messages, bytes = bytes} */
static void set_count(lua_State *L, const char *field, long messages, uint64_t bytes)
{
    lua_createtable(L, 0, 2);
    set_integer(L, "messages", messages);
    set_integer(L, "bytes", (lua_Integer)bytes);
    lua_setfield(L, -2, field);
}

/* t.latency, of the last completed window; avg and p99 absent when it
 * served no report. */
static void set_latency(lua_State *L, const prd_latency *l)
{
    lua_createtable(L, 0, 4);
    set_integer(L, "count", (lua_Integer)l->last_count);
    set_number(L, "interval", l->interval_ms / 1e3);
    if (l->last_count) {
        set_number(L, "avg", l->last_avg_us / 1e6);
        set_number(L, "p99", l->last_p99_us / 1e6);
    }
    lua_setfield(L, -2, "latency");
}

/* t.brokers, from the last statistics: {} without. */
static void set_brokers(lua_State *L, const prd_brokers *kept)
{
    int i, n = kept ? kept->n : 0;

    lua_createtable(L, n, 0);
    for (i = 0; i < n; i++) {
        const prd_broker *b = &kept->list[i];

        lua_createtable(L, 0, 4);
        lua_pushstring(L, b->name);
        lua_setfield(L, -2, "name");
        set_integer(L, "id", b->id);
        lua_pushstring(L, b->state);
        lua_setfield(L, -2, "state");
        lua_createtable(L, 0, 2);
        set_number(L, "avg", b->rtt_avg_us / 1e6);
        set_number(L, "p99", b->rtt_p99_us / 1e6);
        lua_setfield(L, -2, "rtt");
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "brokers");
}

/***
 * Figures derived from the reports served and the last statistics,
 * without the whole document (docs/statistics.md).
 * @function metrics
 * @treturn table {queued = {messages, bytes}, delivered = {...},
 *   failed = {...}, latency = {avg, p99, count, interval} (seconds),
 *   brokers = {{name, id, state, rtt = {avg, p99}}, ...}}
 */
int prd_stats_metrics(lua_State *L)
{
    prd_kafka *p = prd_kafka_check(L);
    uint64_t done = p->delivered_bytes + p->failed_bytes;

    prd_latency_tick(&p->latency, prd_clock_now_ms());
    lua_createtable(L, 0, 5);
    set_count(L, "queued", p->base.queued,
              p->produced_bytes > done ? p->produced_bytes - done : 0);
    set_count(L, "delivered", p->base.delivered, p->delivered_bytes);
    set_count(L, "failed", p->base.failures, p->failed_bytes);
    set_latency(L, &p->latency);
    set_brokers(L, p->brokers);
    prd_spooling_push_metrics(L, &p->base);
    return 1;
}
