/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * producer.c: the Kafka transport: its producer (prd_kafka: core's
 * prd_producer, then librdkafka's handle), made by core.new; send (a
 * prd_message to rd_kafka_produce, with a small cache of topic handles)
 * and purge, what is Kafka's of produce and the methods; and
 * prd_kafka_transport, the table of functions core's produce, serving and
 * teardown call (core/transport.h). produce, poll, flush, close and the
 * others are core's (core/produce.c, core/producer.c).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arg.h"
#include "core/json.h"
#include "core/log.h"
#include "core/produce.h"
#include "core/producer.h"
#include "core/queue.h"
#include "core/spooling.h"
#include "kafka/config.h"
#include "kafka/errors.h"
#include "kafka/handle.h"
#include "kafka/oauth.h"
#include "kafka/producer.h"
#include "kafka/report.h"
#include "kafka/stats.h"
#include "kafka/txn.h"

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
    unref(L, &p->base.encoder);
    unref(L, &p->on_stats);
    prd_stats_free(p);
    prd_secrets_free(p->secrets);
    p->secrets = NULL;
    prd_spooling_close(L, base);        /* after the last report: unacked records stay */
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
    p->on_delivery = p->on_error = p->on_token = p->base.encoder = p->on_stats = LUA_NOREF;

    prd_producer_options(L, &p->base, 2, lua_upvalueindex(1));
    p->on_delivery = prd_arg_callback_ref(L, 2, "on_delivery", "opts");
    p->on_error = prd_arg_callback_ref(L, 2, "on_error", "opts");
    p->on_stats = prd_arg_callback_ref(L, 2, "on_stats", "opts");
    p->on_token = prd_arg_callback_ref(L, 2, "on_oauthbearer_token", "opts");
    if (p->on_delivery != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, p->on_delivery);
        p->on_delivery_report = prd_arg_takes_report(L, -1);
        lua_pop(L, 1);
    }

    prd_spooling_open(L, &p->base, 2);    /* opts.spool; closed by release */
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
        prd_spooling_close(L, &p->base);
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
    prd_spooling_start(L, &p->base);      /* the replay of what it holds */
    lua_pushvalue(L, 3);
    return 1;
}

static void add_header_cb(lua_State *L, int name_idx, int value_idx, void *ud)
{
    size_t len;
    const char *value = lua_tolstring(L, value_idx, &len);

    rd_kafka_header_add(ud, lua_tostring(L, name_idx), -1, value, (ssize_t)len);
}

/* A spooled record's headers (C bytes) as librdkafka headers. */
static rd_kafka_headers_t *make_c_headers(const prd_message *m)
{
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(m->header_count);
    size_t i;

    for (i = 0; i < m->header_count; i++)
        rd_kafka_header_add(hdrs, m->header_list[i].name, (ssize_t)m->header_list[i].name_len,
                            m->header_list[i].value, m->header_list[i].value
                                ? (ssize_t)m->header_list[i].value_len : 0);
    return hdrs;
}

/* The headers table at t (checked by check_header) as librdkafka headers. */
static rd_kafka_headers_t *make_headers(lua_State *L, int t)
{
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(8);

    prd_produce_each_header(L, t, add_header_cb, hdrs);
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

/* Hands m to librdkafka. */
static rd_kafka_resp_err_t send_message(prd_kafka *p, const prd_message *m, int msgflags,
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
static int fail_too_large(lua_State *L, prd_kafka *p, const prd_message *m)
{
    char text[PRD_TEXT_MAX];
    size_t size = m->key_len + m->value_len;

    snprintf(text, sizeof text, "message of %zu bytes exceeds message.max.bytes (%d)%s; refused locally",
             size, p->max_msg_bytes,
             size <= (size_t)p->max_msg_bytes ? " with its record overhead" : "");
    return prd_kafka_fail_text(L, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, text);
}

/* prd_transport's send: m to librdkafka, its state as the opaque; a
 * value lent (m->lent) is not copied. */
static int kafka_send(lua_State *L, prd_producer *base, const prd_message *m)
{
    prd_kafka *p = (prd_kafka *)base;
    rd_kafka_headers_t *hdrs = m->headers ? make_headers(L, m->headers)
                             : m->header_count ? make_c_headers(m) : NULL;
    rd_kafka_resp_err_t err;

    err = send_message(p, m, m->lent ? 0 : RD_KAFKA_MSG_F_COPY, hdrs, m->state);
    if (err) {
        if (hdrs)
            rd_kafka_headers_destroy(hdrs);
        if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
            return fail_too_large(L, p, m);
        return err == RD_KAFKA_RESP_ERR__FATAL ? prd_kafka_fail_fatal(L, p->rk) : prd_kafka_fail(L, err);
    }
    p->produced_bytes += m->key_len + m->value_len;
    return 0;
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
    .send = kafka_send,
    .next_event = prd_report_next_event,
    .next_report = prd_report_next,
    .report_state = prd_report_state,
    .outcome = prd_kafka_outcome,
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
 * (core/producer.c; produce, core/produce.c, with the JSON state at
 * json_idx as its upvalue), then the Kafka transport's (purge, metrics,
 * the transactions).
 */
void prd_kafka_open(lua_State *L, int json_idx)
{
    prd_producer_open(L);
    prd_kafka_errors_open(L);
    prd_oauth_open(L);
    prd_stats_open(L);
    prd_produce_class(L, PRD_PRODUCER_T, json_idx, methods);
    luaL_setfuncs(L, prd_txn_methods, 0);
}
