/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * producer.c: the Kafka transport: its producer (prd_kafka: core's
 * prd_producer, then librdkafka's handle), made by core.new; produce and
 * purge, the methods that are Kafka's; and prd_kafka_transport, the table
 * of functions core's serving and teardown call (core/transport.h). poll,
 * flush, close and the others are core's (core/producer.c).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arg.h"
#include "core/call.h"
#include "core/json.h"
#include "core/log.h"
#include "core/msgstate.h"
#include "core/producer.h"
#include "core/queue.h"
#include "kafka/config.h"
#include "kafka/errors.h"
#include "kafka/handle.h"
#include "kafka/oauth.h"
#include "kafka/producer.h"
#include "kafka/report.h"
#include "kafka/stats.h"
#include "kafka/txn.h"

/* Strings from this size are lent to librdkafka, not copied: beyond it
 * a copy costs more than the ref that keeps the string (bench/README.md,
 * bench/large_values.lua; a build with -DPRD_NOCOPY_MIN=... compares). */
#ifndef PRD_NOCOPY_MIN
#define PRD_NOCOPY_MIN 1024
#endif

static void unref(lua_State *L, int *ref)
{
    luaL_unref(L, LUA_REGISTRYINDEX, *ref);
    *ref = LUA_NOREF;
}

/* What a producer holds apart from librdkafka's handle. */
static void release(lua_State *L, prd_producer *base)
{
    prd_kafka *p = (prd_kafka *)base;

    unref(L, &p->on_delivery);
    unref(L, &p->base.log.logger);
    unref(L, &p->on_error);
    unref(L, &p->on_token);
    unref(L, &p->encoder);
    unref(L, &p->on_stats);
    prd_stats_free(p);
    prd_secrets_free(p->secrets);
    p->secrets = NULL;
}

/* In a forked child: forgets librdkafka's handle, whose threads stayed
 * in the parent (destroying it would wait for them forever). */
static void abandon(lua_State *L, prd_producer *base)
{
    prd_kafka *p = (prd_kafka *)base;
    int i;

    for (i = 0; i < PRD_TOPIC_CACHE; i++) {
        free(p->topics[i].name);
        p->topics[i].name = NULL;
    }
    prd_wake_close(&p->base.wake);
    p->rk = NULL;
    p->queue = NULL;
    p->base.pending = NULL;
    release(L, base);
}

/* The optional callable field of the table at idx as a registry ref. */
static int opt_callback_ref(lua_State *L, int idx, const char *field,
                            const char *what)
{
    lua_getfield(L, idx, field);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return LUA_NOREF;
    }
    if (!prd_arg_callable(L, -1))
        luaL_error(L, "%s.%s: expected a function or callable, got %s",
                   what, field, luaL_typename(L, -1));
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* The integer property name of conf, or -1. */
static int conf_int(rd_kafka_conf_t *conf, const char *name)
{
    char value[32];
    size_t size = sizeof value;

    return rd_kafka_conf_get(conf, name, value, &size) == RD_KAFKA_CONF_OK ? atoi(value) : -1;
}

static int conf_is_true(rd_kafka_conf_t *conf, const char *name)
{
    char value[8];
    size_t size = sizeof value;

    return rd_kafka_conf_get(conf, name, value, &size) == RD_KAFKA_CONF_OK &&
           strcmp(value, "true") == 0;
}

/***
 * Creates a producer. The Lua layer (producers.kafka.new) builds the
 * arguments from the user's options and the defaults.
 * @function core.new
 * @tparam table conf librdkafka properties
 * @tparam table opts logger (function(level, message)), log_level
 *   (1 debug .. 4 error), on_delivery (callable), gc_flush_timeout (s),
 *   json ("lua-cjson" to encode with lua-cjson, else the builtin encoder),
 *   on_error (callable: client-level errors as error objects), on_stats
 *   (callable: the decoded statistics, stats.c), on_oauthbearer_token
 *   (callable: OAUTHBEARER tokens, oauth.c)
 * @treturn userdata producer
 */
int prd_kafka_new(lua_State *L)
{
    char errstr[PRD_TEXT_MAX];
    rd_kafka_conf_t *conf;
    prd_kafka *p;

    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);

    p = (prd_kafka *)prd_producer_new(L, &prd_kafka_transport);  /* conf, opts, p */
    p->on_delivery = p->on_error = p->on_token = p->encoder = p->on_stats = LUA_NOREF;

    p->base.log.logger = opt_callback_ref(L, 2, "logger", "opts");
    p->on_delivery = opt_callback_ref(L, 2, "on_delivery", "opts");
    p->on_error = opt_callback_ref(L, 2, "on_error", "opts");
    p->on_stats = opt_callback_ref(L, 2, "on_stats", "opts");
    p->on_token = opt_callback_ref(L, 2, "on_oauthbearer_token", "opts");
    if (p->on_delivery != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, p->on_delivery);
        p->on_delivery_report = prd_arg_takes_report(L, -1);
        lua_pop(L, 1);
    }
    lua_getfield(L, 2, "log_level");
    p->base.log.level = (int)luaL_optinteger(L, -1, PRD_INFO);
    lua_getfield(L, 2, "gc_flush_timeout");
    p->base.gc_flush_ms = prd_arg_timeout_ms(L, -1, 1000);
    lua_getfield(L, 2, "serve_on_produce");
    p->serve_on_produce = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, 2, "json");
    if (prd_arg_callable(L, -1)) {
        lua_pushvalue(L, -1);
        p->encoder = luaL_ref(L, LUA_REGISTRYINDEX);
    } else {
        p->json = prd_json_buffer(L, lua_upvalueindex(1), -1);
    }
    lua_pop(L, 3);

    conf = prd_conf_from_table(L, 1, &p->secrets);
    p->base.log.redact = prd_redact_log;
    p->base.log.redact_ud = &p->secrets;      /* oauth.c may replace p->secrets */
    p->max_msg_bytes = conf_int(conf, "message.max.bytes");
    /* librdkafka would free a delivered message without a report, and
     * with it the state its opaque holds: every report comes, and those
     * of delivered messages stop in C */
    p->only_errors = conf_is_true(conf, "delivery.report.only.error");
    rd_kafka_conf_set(conf, "delivery.report.only.error", "false", NULL, 0);
    rd_kafka_conf_set(conf, "log.queue", "true", NULL, 0);
    p->stats_interval_ms = prd_stats_interval_ms(conf);
    rd_kafka_conf_set_events(conf, RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_LOG |
                                   RD_KAFKA_EVENT_ERROR |
                                   (p->stats_interval_ms ? RD_KAFKA_EVENT_STATS : 0) |
                                   (p->on_token != LUA_NOREF
                                        ? RD_KAFKA_EVENT_OAUTHBEARER_TOKEN_REFRESH : 0));
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!p->rk) {
        rd_kafka_conf_destroy(conf);
        prd_redact(p->secrets, errstr);
        return luaL_error(L, "config: %s", errstr);
    }
    rd_kafka_set_log_queue(p->rk, NULL);     /* logs onto the main queue */
    p->queue = rd_kafka_queue_get_main(p->rk);
    rd_kafka_queue_cb_event_enable(p->queue, prd_report_wake, p);
    snprintf(p->base.name, sizeof p->base.name, "%s", rd_kafka_name(p->rk));
    p->base.closed = 0;
    if (prd_stats_start(L, p) != LUA_OK)
        return lua_error(L);
    return 1;
}

/* opts[field], read raw: produce runs no metamethod, so no Lua can run
 * between its checks and librdkafka's call. Pushes the field. */
static int raw_field(lua_State *L, int opts, const char *field)
{
    lua_pushstring(L, field);
    return lua_rawget(L, opts);
}

/* opts.field as an integer from min to max, or def when absent. */
static lua_Integer opt_integer(lua_State *L, int opts, const char *field,
                               lua_Integer def, lua_Integer min, lua_Integer max)
{
    lua_Integer n = def;
    int type = raw_field(L, opts, field), found;

    if (type != LUA_TNIL) {
        found = type == LUA_TNUMBER ? prd_arg_integer(L, -1, min, max, &n) : PRD_ARG_FRACTION;
        if (found & PRD_ARG_FRACTION)
            luaL_error(L, "opts.%s: expected an integer, got %s", field,
                       type == LUA_TNUMBER ? "a fraction" : luaL_typename(L, -1));
        if (found & PRD_ARG_OUTSIDE) {
            char range[96];     /* lua_pushfstring has no %I on 5.1 */
            snprintf(range, sizeof range, "(%lld to %lld), got %lld",
                     (long long)min, (long long)max, (long long)n);
            luaL_error(L, "opts.%s: out of range %s", field, range);
        }
    }
    lua_pop(L, 1);
    return n;
}

/* The string at idx as a C string: raises naming what when it holds a
 * NUL byte, which C would cut it at. */
static const char *check_c_string(lua_State *L, int idx, const char *what)
{
    const char *s = prd_arg_c_string(L, idx, NULL);

    if (!s)
        luaL_error(L, "%s must not contain a NUL byte", what);
    return s;
}

/* The type check of a header's name and value at name_idx, value_idx. */
static void check_header(lua_State *L, int name_idx, int value_idx)
{
    int bad = lua_type(L, name_idx) != LUA_TSTRING ? name_idx
            : lua_type(L, value_idx) != LUA_TSTRING ? value_idx : 0;

    if (bad)
        luaL_error(L, "opts.headers: names and values must be strings, got %s",
                   luaL_typename(L, bad));
    check_c_string(L, name_idx, "opts.headers: names");
}

/* Calls f(L, name_idx, value_idx, ud) for each header of the table at t:
 * name = value, or an array of {name, value} pairs (to keep their order
 * and repeat names). Raw reads: no Lua runs. */
static void each_header(lua_State *L, int t,
                        void (*f)(lua_State *, int, int, void *), void *ud)
{
    lua_pushnil(L);
    while (lua_next(L, t)) {                 /* ..., name, value */
        if (lua_type(L, -2) == LUA_TNUMBER && lua_istable(L, -1)) {
            lua_rawgeti(L, -1, 1);
            lua_rawgeti(L, -2, 2);           /* ..., pair, name, value */
            f(L, -2, -1, ud);
            lua_pop(L, 2);
        } else {
            f(L, -2, -1, ud);
        }
        lua_pop(L, 1);
    }
}

static void check_header_cb(lua_State *L, int name_idx, int value_idx, void *ud)
{
    (void)ud;
    check_header(L, name_idx, value_idx);
}

static void add_header_cb(lua_State *L, int name_idx, int value_idx, void *ud)
{
    size_t len;
    const char *value = lua_tolstring(L, value_idx, &len);

    rd_kafka_header_add(ud, lua_tostring(L, name_idx), -1, value, (ssize_t)len);
}

/* The headers table at t (checked by check_header) as librdkafka headers. */
static rd_kafka_headers_t *make_headers(lua_State *L, int t)
{
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(8);

    each_header(L, t, add_header_cb, hdrs);
    return hdrs;
}

/* Empties a slot of the topic cache. */
static void drop_topic(prd_topic *t)
{
    free(t->name);
    rd_kafka_topic_destroy(t->rkt);
    t->name = NULL;
}

/*
 * The topic handle for name, from a small cache: librdkafka's own lookup
 * by name takes a lock and a list walk on every produce. NULL if
 * librdkafka refuses the name.
 */
static rd_kafka_topic_t *topic_handle(prd_kafka *p, const char *name)
{
    prd_topic *t;
    char *copy;
    int i;

    for (i = 0; i < PRD_TOPIC_CACHE && p->topics[i].name; i++)
        if (strcmp(p->topics[i].name, name) == 0)
            return p->topics[i].rkt;
    if (i == PRD_TOPIC_CACHE) {                /* full: evict one */
        i = (int)(p->next_evict++ % PRD_TOPIC_CACHE);
        drop_topic(&p->topics[i]);
    }
    t = &p->topics[i];
    if (!(copy = strdup(name)))
        return NULL;
    if (!(t->rkt = rd_kafka_topic_new(p->rk, name, NULL))) {
        free(copy);
        return NULL;
    }
    t->name = copy;
    return t->rkt;
}

static void free_topics(prd_kafka *p)
{
    int i;

    for (i = 0; i < PRD_TOPIC_CACHE; i++)
        if (p->topics[i].name)
            drop_topic(&p->topics[i]);
}

/* Serves reports without waiting; raises what a callback raised. */
static void serve_now(lua_State *L, prd_kafka *p)
{
    int served = 0;

    if (prd_queue_serve(L, &p->base, 0, &served, INT_MAX) != LUA_OK)
        lua_error(L);
}

/*
 * The opaque of a message whose value is the Lua string at idx, lent to
 * librdkafka instead of copied (flags 0): a ref in the opaque keeps the
 * string alive until the report has been served. Out of memory for the
 * opaque, the string is copied after all.
 */
static void *lend(lua_State *L, int idx, int ref, int takes_report, int *msgflags)
{
    void *opaque;
    int kept;

    lua_pushvalue(L, idx);
    kept = luaL_ref(L, LUA_REGISTRYINDEX);
    if (!(opaque = prd_msgstate_keep(ref, takes_report, kept))) {
        luaL_unref(L, LUA_REGISTRYINDEX, kept);
        return prd_msgstate_pack(ref, takes_report);
    }
    *msgflags = 0;
    return opaque;
}

/* Stack slots of produce, after its arguments (1 to 5). */
enum { CALLBACK = 6, HEADERS, ENCODED };

/* What produce hands to librdkafka. */
typedef struct message {
    const char *topic, *key, *value;
    size_t key_len, value_len;
    lua_Integer partition, timestamp;
    int takes_report;           /* the callback in CALLBACK takes a report */
    int value_string;           /* stack index of a Lua string holding the
                                   value's bytes, or 0 (the encoder's buffer) */
} message;

/* Checks produce's arguments into m and the stack slots CALLBACK and
 * HEADERS. Raises on misuse; nothing is held yet. */
static void check_args(lua_State *L, message *m)
{
    int opts = 0;

    if (lua_type(L, 2) != LUA_TSTRING)
        luaL_error(L, "topic: expected string, got %s", luaL_typename(L, 2));
    m->topic = check_c_string(L, 2, "topic:");
    if (lua_type(L, 3) == LUA_TSTRING)
        m->key = lua_tolstring(L, 3, &m->key_len);
    else if (!lua_isnoneornil(L, 3))
        luaL_error(L, "key: expected string or nil, got %s", luaL_typename(L, 3));
    if (lua_type(L, 5) == LUA_TTABLE)
        opts = 5;
    else if (!lua_isnoneornil(L, 5))
        luaL_error(L, "opts: expected table or nil, got %s", luaL_typename(L, 5));
    if (!opts) {                /* the common case: defaults, two nil slots */
        lua_settop(L, HEADERS);
        m->partition = RD_KAFKA_PARTITION_UA;
        return;
    }
    lua_settop(L, 5);

    m->partition = opt_integer(L, opts, "partition", RD_KAFKA_PARTITION_UA,
                               RD_KAFKA_PARTITION_UA, INT32_MAX);
    m->timestamp = opt_integer(L, opts, "timestamp", 0, 0, INT64_MAX);
    if (raw_field(L, opts, "on_delivery") != LUA_TNIL &&     /* CALLBACK */
        !prd_arg_callable(L, CALLBACK))
        luaL_error(L, "opts.on_delivery: expected a function or callable, got %s",
                   luaL_typename(L, CALLBACK));
    switch (raw_field(L, opts, "headers")) {                 /* HEADERS */
    case LUA_TNIL:
        break;
    case LUA_TTABLE:
        each_header(L, HEADERS, check_header_cb, NULL);
        break;
    default:
        luaL_error(L, "opts.headers: expected a table, got %s", luaL_typename(L, HEADERS));
    }
    if (!lua_isnil(L, CALLBACK))
        m->takes_report = prd_arg_takes_report(L, CALLBACK);
}

/* The table at 4 encoded by Lua code (lua-cjson, or json = function),
 * with the producer busy, so that code cannot close it; the bytes are
 * left in slot ENCODED. Raises what the encoder raised. */
static void encode_with_lua(lua_State *L, prd_kafka *p)
{
    if (p->encoder == LUA_NOREF) {
        prd_json_call_encoder(L, &p->base.busy, lua_upvalueindex(1), 0, 4);
        return;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->encoder);      /* ENCODED, for now */
    prd_json_call_encoder(L, &p->base.busy, lua_upvalueindex(1), ENCODED, 4);
    lua_remove(L, ENCODED);
}

/* The value at 4 into m: a string as it is, nil as a tombstone, a table
 * encoded. The last step of produce that may run Lua. */
static void encode(lua_State *L, prd_kafka *p, message *m)
{
    switch (lua_type(L, 4)) {
    case LUA_TSTRING:
        m->value = lua_tolstring(L, 4, &m->value_len);
        m->value_string = 4;
        return;
    case LUA_TTABLE:
        if (p->json) {          /* the C encoder: runs no Lua */
            m->value = prd_json_encode_value(L, 4, lua_upvalueindex(1), p->json,
                                        &m->value_len);
            return;
        }
        encode_with_lua(L, p);                           /* ENCODED */
        m->value = lua_tolstring(L, ENCODED, &m->value_len);
        m->value_string = ENCODED;
        return;
    case LUA_TNIL:
    case LUA_TNONE:
        return;
    default:
        luaL_error(L, "value: expected table, string or nil, got %s",
                   luaL_typename(L, 4));
    }
}

/* The opaque that carries m's callback (at CALLBACK) and, for a large
 * string value, the string, to the report. Allocates no Lua object, so
 * no finalizer runs before the message is sent. */
static void *message_state(lua_State *L, message *m, int *msgflags)
{
    int ref = LUA_NOREF;

    if (!lua_isnil(L, CALLBACK)) {
        lua_pushvalue(L, CALLBACK);
        ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    if (m->value_len >= PRD_NOCOPY_MIN && m->value_string)
        return lend(L, m->value_string, ref, m->takes_report, msgflags);
    return prd_msgstate_pack(ref, m->takes_report);
}

/* Hands m to librdkafka. */
static rd_kafka_resp_err_t send_message(prd_kafka *p, const message *m, int msgflags,
                                rd_kafka_headers_t *hdrs, void *opaque)
{
    rd_kafka_topic_t *rkt = topic_handle(p, m->topic);

    if (!rkt)
        return rd_kafka_last_error();
    if (!hdrs && !m->timestamp)         /* no argument list to parse: cheaper */
        return rd_kafka_produce(rkt, (int32_t)m->partition, msgflags,
                                (void *)m->value, m->value_len, m->key,
                                m->key_len, opaque) == 0
                   ? RD_KAFKA_RESP_ERR_NO_ERROR : rd_kafka_last_error();
    return rd_kafka_producev(p->rk, RD_KAFKA_V_RKT(rkt),
                             RD_KAFKA_V_PARTITION((int32_t)m->partition),
                             RD_KAFKA_V_MSGFLAGS(msgflags),
                             RD_KAFKA_V_VALUE((void *)m->value, m->value_len),
                             RD_KAFKA_V_KEY(m->key, m->key_len),
                             RD_KAFKA_V_TIMESTAMP(m->timestamp),
                             RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(opaque),
                             RD_KAFKA_V_END);
}

/*
 * produce's refusal of a message over message.max.bytes: librdkafka says
 * "Broker: Message size too large", though no broker saw it. The name
 * stays MSG_SIZE_TOO_LARGE; the message says it is local and names the
 * limit (the record's overhead counts too, so a message a little under
 * the limit can be refused).
 */
static int fail_too_large(lua_State *L, prd_kafka *p, const message *m)
{
    char text[PRD_TEXT_MAX];
    size_t size = m->key_len + m->value_len;

    snprintf(text, sizeof text, "message of %zu bytes exceeds message.max.bytes (%d)%s; refused locally",
             size, p->max_msg_bytes,
             size <= (size_t)p->max_msg_bytes ? " with its record overhead" : "");
    return prd_kafka_fail_text(L, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, text);
}

/***
 * Queues a message, then serves the reports that are ready (not when
 * called from a callback of the same producer: the outer call serves).
 * @function produce
 * @string topic
 * @tparam[opt] string key
 * @tparam[opt] table|string value table: encoded (JSON by default);
 *   string: as is; nil: a null value (tombstone)
 * @tparam[opt] table opts partition, timestamp (ms), headers, on_delivery
 *   (read raw: metamethods are not called)
 * @treturn[1] true
 * @treturn[2] nil, nothing queued, no report will come
 * @treturn[2] string message, e.g. "Local: Queue full"
 * @treturn[2] string error name, e.g. "_QUEUE_FULL"
 * @treturn[2] table error object (producers.Error)
 * @raise on bad arguments, and with the error of a delivery callback
 *   served after queueing (the message is queued all the same)
 */
static int producer_produce(lua_State *L)
{
    prd_kafka *p = prd_kafka_check(L);
    int msgflags = RD_KAFKA_MSG_F_COPY;
    message m = {0};
    rd_kafka_headers_t *hdrs = NULL;
    rd_kafka_resp_err_t err;
    void *opaque;

    check_args(L, &m);
    encode(L, p, &m);
    /* A finalizer may have run above, at an allocation, and closed the
     * producer; from here to librdkafka's call no Lua runs, and the
     * encoder's buffer holds the bytes. */
    if (!p->rk)
        return luaL_error(L, "producer is closed");
    if (p->base.closing == PRD_PURGED)
        return prd_kafka_fail_text(L, RD_KAFKA_RESP_ERR__DESTROY, "producer is closing");
    if (lua_istable(L, HEADERS))
        hdrs = make_headers(L, HEADERS);
    opaque = message_state(L, &m, &msgflags);
    if ((err = send_message(p, &m, msgflags, hdrs, opaque))) {
        if (hdrs)
            rd_kafka_headers_destroy(hdrs);
        prd_msgstate_release(L, opaque);
        /* serves nothing: the refusal stands */
        if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
            return fail_too_large(L, p, &m);
        return err == RD_KAFKA_RESP_ERR__FATAL ? prd_kafka_fail_fatal(L, p->rk) : prd_kafka_fail(L, err);
    }
    p->base.queued++;
    p->produced_bytes += m.key_len + m.value_len;
    if (p->serve_on_produce)
        serve_now(L, p);
    lua_pushboolean(L, 1);
    return 1;
}

/* purge's options (the table at idx, read raw) as librdkafka's flags:
 * without a table, queued and in-flight messages both. */
static int purge_flags(lua_State *L, int idx)
{
    int flags = 0;

    if (lua_isnoneornil(L, idx))
        return RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx)) {                  /* ..., key, value */
        const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
        int flag = strcmp(key, "queued") == 0      ? RD_KAFKA_PURGE_F_QUEUE
                 : strcmp(key, "in_flight") == 0   ? RD_KAFKA_PURGE_F_INFLIGHT : 0;

        if (!flag)
            luaL_error(L, "purge: unknown option '%s' (queued, in_flight)",
                       lua_type(L, -2) == LUA_TSTRING ? key : luaL_typename(L, -2));
        if (lua_type(L, -1) != LUA_TBOOLEAN)
            luaL_error(L, "purge: option '%s' must be a boolean, got %s", key,
                       luaL_typename(L, -1));
        if (lua_toboolean(L, -1))
            flags |= flag;
        lua_pop(L, 1);
    }
    return flags;
}

/***
 * Purges messages librdkafka holds: queued (not yet sent) and in flight
 * (sent, no answer yet; the broker may still write them). Each purged
 * message gets one failure report, "_PURGE_QUEUE" or "_PURGE_INFLIGHT",
 * served by the next poll, flush or close.
 * @function purge
 * @tparam[opt] table opts queued, in_flight (booleans; without opts, both)
 * @treturn[1] true
 * @treturn[2] nil, message, name, error object
 */
static int producer_purge(lua_State *L)
{
    prd_kafka *p = prd_kafka_check(L);
    int flags = purge_flags(L, 2);
    rd_kafka_resp_err_t err;

    if (flags && (err = rd_kafka_purge(p->rk, flags)))
        return prd_kafka_fail(L, err);
    lua_pushboolean(L, 1);
    return 1;
}

static const luaL_Reg methods[] = {
    {"produce", producer_produce},
    {"purge", producer_purge},
    {"metrics", prd_stats_metrics},
    {NULL, NULL}};

/* Purges every message queued and in flight (close, after its wait). */
static void purge_all(prd_producer *base)
{
    rd_kafka_purge(((prd_kafka *)base)->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
}

/* After the last report: aborts an open transaction, releases what the
 * reports left hold, frees librdkafka's handle and the refs. */
static void close_handle(lua_State *L, prd_producer *base, int timeout_ms)
{
    prd_kafka *p = (prd_kafka *)base;

    prd_txn_close(p, timeout_ms);        /* aborts an open transaction */
    prd_queue_drop(L, base);             /* releases refs of any report left */
    free_topics(p);
    rd_kafka_queue_cb_event_enable(p->queue, NULL, NULL);   /* none runs after */
    prd_wake_close(&p->base.wake);
    rd_kafka_queue_destroy(p->queue);
    rd_kafka_destroy(p->rk);
    p->rk = NULL;
    p->queue = NULL;
    release(L, base);
}

const prd_transport prd_kafka_transport = {
    .type = PRD_PRODUCER_T,
    .kind = "producers.kafka",
    .size = sizeof(prd_kafka),
    .next_event = prd_report_next_event,
    .next_report = prd_report_next,
    .report_state = prd_report_state,
    .count = prd_report_count,
    .report = prd_report_call,
    .push_report = prd_report_push,
    .waiting = prd_report_waiting,
    .send_now = prd_report_send_now,
    .purge = purge_all,
    .close = close_handle,
    .abandon = abandon,
    .release = release,
};

/*
 * Makes the Producer metatable; pushes the method table: core's methods
 * (core/producer.c) and the Kafka transport's, which have the JSON state
 * (json.c) at json_idx as their upvalue.
 */
void prd_kafka_open(lua_State *L, int json_idx)
{
    prd_producer_open(L);
    prd_kafka_errors_open(L);
    prd_oauth_open(L);
    prd_stats_open(L);
    json_idx = lua_absindex(L, json_idx);
    luaL_newmetatable(L, PRD_PRODUCER_T);
    prd_producer_metamethods(L);
    lua_newtable(L);                         /* mt, methods */
    prd_producer_methods(L);
    lua_pushvalue(L, json_idx);
    luaL_setfuncs(L, methods, 1);
    luaL_setfuncs(L, prd_txn_methods, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "__index");
    lua_pushliteral(L, PRD_PRODUCER_T);
    lua_setfield(L, -3, "__name");
    lua_remove(L, -2);                       /* methods */
}
