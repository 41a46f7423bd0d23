/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * producer.c: the NATS JetStream transport: its producer (prd_nats:
 * core's prd_producer, then nats.c's connection and JetStream context),
 * made by core.nats_new; send (a prd_message to js_PublishMsgAsync: the
 * key in the Producers-Key header, opts.id as Nats-Msg-Id, opts.headers
 * as headers), purge, metrics; and prd_nats_transport, the table of
 * functions core's produce, serving and teardown call (core/transport.h).
 * produce, poll, flush, close and the others are core's.
 */
#define _GNU_SOURCE               /* dladdr */
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arg.h"
#include "core/error.h"
#include "core/msgstate.h"
#include "core/produce.h"
#include "core/producer.h"
#include "core/queue.h"
#include "core/spooling.h"
#include "nats/connect.h"
#include "nats/errors.h"
#include "nats/producer.h"
#include "nats/report.h"
#include "nats/spool.h"

#define PRD_NATS_T "producers.NatsProducer"

prd_nats *prd_nats_check(lua_State *L)
{
    prd_producer *p = prd_producer_check(L);

    if (p->tr != &prd_nats_transport)
        luaL_argerror(L, 1, "expected a NATS producer");
    return (prd_nats *)p;
}

static void unref(lua_State *L, int *ref)
{
    luaL_unref(L, LUA_REGISTRYINDEX, *ref);
    *ref = LUA_NOREF;
}

/* Releases the states of reports still queued (none after a close). */
static void release_queued(lua_State *L, prd_nats *p)
{
    prd_nats_report *r;

    if (!p->locks_made)
        return;
    while ((r = p->head)) {
        p->head = r->next;
        prd_msgstate_release(L, r->state);
        prd_nats_report_free(p, r);
    }
    p->tail = NULL;
    prd_nats_report_free(p, p->batch.last);
    p->batch.last = NULL;
}

/* prd_transport's release: the refs, and the queue's memory. */
static void release(lua_State *L, prd_producer *base)
{
    prd_nats *p = (prd_nats *)base;

    unref(L, &p->on_delivery);
    unref(L, &p->base.log.logger);
    unref(L, &p->on_error);
    unref(L, &p->base.encoder);
    release_queued(L, p);
    prd_nats_queue_free(p);
    prd_spooling_close(L, base);        /* after the last report: unacked records stay */
}

/* In a forked child: forgets nats.c's connection, whose threads stayed
 * in the parent. */
static void abandon(lua_State *L, prd_producer *base)
{
    prd_nats *p = (prd_nats *)base;

    prd_wake_close(&p->base.wake);
    p->nc = NULL;
    p->js = NULL;
    p->base.pending = NULL;
    p->locks_made = 0;          /* the parent's threads may hold the lock */
    unref(L, &p->on_delivery);
    unref(L, &p->base.log.logger);
    unref(L, &p->on_error);
    unref(L, &p->base.encoder);
}

/***
 * Creates a NATS producer. The Lua layer (producers.nats.new) builds the
 * arguments from the user's options and the defaults.
 * @function core.nats_new
 * @tparam table conf servers (a list of URLs), user, password, token,
 *   creds, nkey, nkey_seed, tls, ca, cert, key, name, connect_timeout_ms,
 *   reconnect_wait_ms, max_reconnects, reconnect_buffer, ack_timeout_ms,
 *   max_pending, stall_wait_ms
 * @tparam table opts logger, log_level, on_delivery, on_error,
 *   gc_flush_timeout, json, serve_on_produce
 * @treturn[1] userdata producer
 * @treturn[2] nil, message, name, error object: no connection
 */
int prd_nats_new(lua_State *L)
{
    prd_nats *p;
    int n;

    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    p = (prd_nats *)prd_producer_new(L, &prd_nats_transport);   /* conf, opts, p */
    p->on_delivery = p->on_error = p->base.encoder = LUA_NOREF;
    prd_producer_options(L, &p->base, 2, lua_upvalueindex(1));
    p->on_delivery = prd_arg_callback_ref(L, 2, "on_delivery", "opts");
    p->on_error = prd_arg_callback_ref(L, 2, "on_error", "opts");
    if (p->on_delivery != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, p->on_delivery);
        p->on_delivery_report = prd_arg_takes_report(L, -1);
        lua_pop(L, 1);
    }
    prd_spooling_open(L, &p->base, 2);    /* opts.spool; closed by release */
    if (prd_nats_queue_init(p) != 0)
        return luaL_error(L, "producers.nats.new: out of memory");
    if ((n = prd_nats_connect(L, p, 1))) {
        prd_spooling_close(L, &p->base);  /* its lock, for a new try */
        return n;               /* p is collected: released, nothing open */
    }
    lua_getfield(L, 1, "name");
    snprintf(p->base.name, sizeof p->base.name, "%s",
             lua_isstring(L, -1) ? lua_tostring(L, -1) : "nats");
    lua_pop(L, 1);
    p->base.closed = 0;
    prd_spooling_start(L, &p->base);      /* the replay of what it holds */
    lua_pushvalue(L, 3);
    return 1;
}

/* Whether a header's bytes can travel: no CR, LF or NUL. */
static int header_safe(const char *s, size_t len)
{
    return strlen(s) == len && !strpbrk(s, "\r\n");
}

/* What adding the headers found wrong. */
typedef struct {
    natsMsg *msg;
    natsStatus s;
    const char *bad;            /* the header's name, when its value was refused */
} prd_headers;

static void add_header_cb(lua_State *L, int name_idx, int value_idx, void *ud)
{
    prd_headers *h = ud;
    size_t len;
    const char *value = lua_tolstring(L, value_idx, &len);
    const char *name = lua_tostring(L, name_idx);

    if (h->s != NATS_OK)
        return;
    if (!header_safe(value, len) || strpbrk(name, ": \t\r\n") || !*name) {
        h->s = NATS_INVALID_ARG;
        h->bad = name;
        return;
    }
    h->s = natsMsgHeader_Add(h->msg, name, value);
}

/* m's key and headers onto msg: 0, or the failure tuple pushed. */
static int add_headers(lua_State *L, const prd_message *m, natsMsg *msg)
{
    char text[PRD_TEXT_MAX];
    prd_headers h = {msg, NATS_OK, NULL};

    if (m->spooled)             /* a spooled record's, as C bytes */
        return prd_nats_spool_headers(L, m, msg);
    if (m->key && !header_safe(m->key, m->key_len))
        return prd_nats_fail_named(L, "_INVALID_ARG",
                                   "key: NATS carries it in a header, which cannot hold CR, LF or NUL bytes");
    if (m->key && (h.s = natsMsgHeader_Set(msg, PRD_NATS_KEY_HEADER, m->key)) != NATS_OK)
        return prd_nats_fail(L, h.s, NULL);
    if (m->headers)
        prd_produce_each_header(L, m->headers, add_header_cb, &h);
    if (h.s == NATS_OK)
        return 0;
    if (!h.bad)
        return prd_nats_fail(L, h.s, NULL);
    snprintf(text, sizeof text, "opts.headers: header '%.64s': a NATS header's name cannot hold ':' "
             "or blanks, nor its value CR, LF or NUL bytes", h.bad);
    return prd_nats_fail_named(L, "_INVALID_ARG", text);
}

/* The failure of a publish nats.c refused. */
static int fail_publish(lua_State *L, prd_nats *p, natsStatus s)
{
    (void)p;
    if (s == NATS_TIMEOUT)      /* max_pending acks in flight, for stall_wait */
        return prd_nats_fail_named(L, "_QUEUE_FULL", "Local: Queue full (max_pending acks in flight)");
    return prd_nats_fail(L, s, prd_nats_last_error());
}

/* prd_transport's send: m to js_PublishMsgAsync; its report made now,
 * tracked by the message's address until the ack. */
static int nats_send(lua_State *L, prd_producer *base, const prd_message *m)
{
    prd_nats *p = (prd_nats *)base;
    prd_nats_report *r;
    natsMsg *msg = NULL;
    jsPubOptions po;
    natsStatus s;
    int n;

    if (m->partition != PRD_PARTITION_ANY)
        return prd_nats_fail_named(L, "_INVALID_ARG", "opts.partition: NATS subjects have no partitions");
    if (m->spooled && (n = prd_nats_spool_full(L, p)))
        return n;               /* _QUEUE_FULL for the spool's feeder, without stall_wait */
    if (m->value_len > INT_MAX)
        return prd_nats_fail_named(L, "MSG_SIZE_TOO_LARGE", "message too large for NATS");
    if ((s = natsMsg_Create(&msg, m->topic, NULL, m->value, (int)m->value_len)) != NATS_OK)
        return prd_nats_fail(L, s, NULL);
    if ((n = add_headers(L, m, msg)) || !(r = prd_nats_report_new(p))) {
        natsMsg_Destroy(msg);
        return n ? n : prd_nats_fail(L, NATS_NO_MEMORY, NULL);
    }
    jsPubOptions_Init(&po);
    po.MsgId = m->id;
    po.MaxWait = p->ack_timeout_ms;
    r->msg = msg;
    r->state = m->state;
    r->sent_us = prd_nats_now_us();
    r->bytes = m->key_len + m->value_len;
    prd_nats_track(p, r);
    if ((s = js_PublishMsgAsync(p->js, &msg, &po)) != NATS_OK) {
        if (prd_nats_untrack(p, r->msg)) {
            r->msg = NULL;
            prd_nats_report_free(p, r);
        }
        natsMsg_Destroy(msg);   /* NULL when nats.c took it */
        return fail_publish(L, p, s);
    }
    atomic_store(&p->published, 1);
    p->produced_bytes += m->key_len + m->value_len;
    return 0;
}

/***
 * Purges the messages whose ack has not come: each gets one failure
 * report, "_PURGE_INFLIGHT" (the server may still have stored it),
 * served by the next poll, flush or close. NATS has no local queue: a
 * published message is in flight.
 * @function purge
 * @tparam[opt] table opts in_flight (boolean, default true); queued is
 *   accepted and means nothing here
 * @treturn true
 */
static int producer_purge(lua_State *L)
{
    prd_nats *p = prd_nats_check(L);
    int in_flight = 1;

    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_getfield(L, 2, "in_flight");
        if (!lua_isnil(L, -1))
            in_flight = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    if (in_flight)
        prd_nats_take_back(p, "_PURGE_INFLIGHT", "purged in flight (the server may have stored it)");
    lua_pushboolean(L, 1);
    return 1;
}

static void set_integer(lua_State *L, const char *field, lua_Integer n)
{
    lua_pushinteger(L, n);
    lua_setfield(L, -2, field);
}

/* The connection's state as a word. */
static const char *status_name(natsConnStatus st)
{
    switch (st) {
    case NATS_CONN_STATUS_CONNECTED:
        return "connected";
    case NATS_CONN_STATUS_RECONNECTING:
        return "reconnecting";
    case NATS_CONN_STATUS_CONNECTING:
        return "connecting";
    case NATS_CONN_STATUS_CLOSED:
        return "closed";
    default:
        return "disconnected";
    }
}

/* metrics' connection counters: nats.c's statistics. */
static void push_connection(lua_State *L, prd_nats *p)
{
    natsStatistics *st = NULL;
    uint64_t in_msgs = 0, in_bytes = 0, out_msgs = 0, out_bytes = 0, reconnects = 0;
    char url[256];

    if (natsStatistics_Create(&st) == NATS_OK && natsConnection_GetStats(p->nc, st) == NATS_OK)
        natsStatistics_GetCounts(st, &in_msgs, &in_bytes, &out_msgs, &out_bytes, &reconnects);
    natsStatistics_Destroy(st);
    set_integer(L, "reconnects", (lua_Integer)reconnects);
    set_integer(L, "disconnects", atomic_load(&p->disconnects));
    set_integer(L, "out_msgs", (lua_Integer)out_msgs);
    set_integer(L, "out_bytes", (lua_Integer)out_bytes);
    set_integer(L, "in_msgs", (lua_Integer)in_msgs);
    lua_pushstring(L, status_name(natsConnection_Status(p->nc)));
    lua_setfield(L, -2, "status");
    if (natsConnection_GetConnectedUrl(p->nc, url, sizeof url) == NATS_OK && *url) {
        lua_pushstring(L, url);
        lua_setfield(L, -2, "server");
    }
}

/***
 * What the producer and its connection say now: messages queued,
 * delivered, failed, duplicates (acks the server marked duplicate),
 * pending_acks (published, ack not yet come), bytes produced, delivered
 * and failed (keys and values), and nats.c's connection counters:
 * reconnects, disconnects, out_msgs, out_bytes, in_msgs, status
 * ("connected", "reconnecting", ...) and server (the URL connected to).
 * @function metrics
 * @treturn table
 */
static int producer_metrics(lua_State *L)
{
    prd_nats *p = prd_nats_check(L);
    size_t in_flight;

    pthread_mutex_lock(&p->lock);
    in_flight = p->in_flight;
    pthread_mutex_unlock(&p->lock);
    lua_createtable(L, 0, 16);
    set_integer(L, "queued", p->base.queued);
    set_integer(L, "delivered", p->base.delivered);
    set_integer(L, "failed", p->base.failures);
    set_integer(L, "duplicates", p->duplicates);
    set_integer(L, "pending_acks", (lua_Integer)in_flight);
    set_integer(L, "produced_bytes", (lua_Integer)p->produced_bytes);
    set_integer(L, "delivered_bytes", (lua_Integer)p->delivered_bytes);
    set_integer(L, "failed_bytes", (lua_Integer)p->failed_bytes);
    push_connection(L, p);
    prd_spooling_push_metrics(L, &p->base);
    return 1;
}

static const luaL_Reg methods[] = {
    {"purge", producer_purge},
    {"metrics", producer_metrics},
    {NULL, NULL}};

/* prd_transport's purge (close, after its wait). */
static void purge_all(prd_producer *base)
{
    prd_nats_take_back((prd_nats *)base, "_PURGE_INFLIGHT", "purged in flight by close (the server may have stored it)");
}

/* prd_transport's send_now: nats.c's flusher sends at once already. */
static void send_now(prd_producer *base)
{
    (void)base;
}

/* After the last report: takes back what is still in flight, closes the
 * connection, releases what the reports left hold, frees the rest. */
static void close_handle(lua_State *L, prd_producer *base, int timeout_ms)
{
    prd_nats *p = (prd_nats *)base;

    (void)timeout_ms;
    prd_nats_disconnect(p);
    prd_queue_drop(L, base);     /* releases refs of any report left */
    prd_wake_close(&p->base.wake);
    release(L, base);
}

const prd_transport prd_nats_transport = {
    .type = PRD_NATS_T,
    .kind = "producers.nats",
    .size = sizeof(prd_nats),
    .id_header = PRD_NATS_MSG_ID_HEADER,  /* opts.id, kept by the spool */
    .send = nats_send,
    .next_event = prd_nats_next_event,
    .next_report = prd_nats_next_report,
    .report_state = prd_nats_report_state,
    .outcome = prd_nats_outcome,         /* for the spool: nats/spool.c */
    .count = prd_nats_count,
    .report = prd_nats_report_call,
    .push_report = prd_nats_report_push,
    .waiting = prd_nats_waiting,
    .send_now = send_now,
    .purge = purge_all,
    .close = close_handle,
    .abandon = abandon,
    .release = release,
};

/***
 * core.nats_version() --> nats.c's version ("3.4.1").
 */
int prd_nats_version(lua_State *L)
{
    lua_pushstring(L, nats_GetVersion());
    return 1;
}

/*
 * Keeps libnats loaded until the process exits. nats.c starts library
 * threads (timers, asynchronous callbacks) on first use that live until
 * nats_Close, which a library cannot call (another user in the process
 * may share nats.c); when lua_close unloads the module, and with it
 * libnats, a thread that wakes runs unmapped code (SIGSEGV at exit,
 * seen under LuaJIT). Marked RTLD_NODELETE, libnats stays mapped; its
 * threads end with the process.
 */
static void pin_libnats(void)
{
    Dl_info info;

    if (dladdr((void *)nats_GetVersion, &info) && info.dli_fname)
        (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

/*
 * Makes the NatsProducer metatable; pushes the method table: core's
 * methods, produce (with the JSON state at json_idx), purge and metrics.
 */
void prd_nats_open(lua_State *L, int json_idx)
{
    pin_libnats();
    prd_producer_open(L);
    prd_nats_errors_open(L);
    prd_produce_class(L, PRD_NATS_T, json_idx, methods);
}
