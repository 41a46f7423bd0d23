/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * report.c: the NATS side of serving (core/queue.c serves). nats.c calls
 * the ack handler (prd_nats_on_ack) and the connection's callbacks on its
 * own threads; they never call into Lua: under p->lock they find the
 * message's report by the natsMsg's address (the map of messages in
 * flight: nats.c's message has no field of ours), fill it from the ack
 * (stream, sequence, duplicate) or the failure, queue it, and wake the
 * producer (core/wake.h). Core's serving takes the queue as one batch of
 * reports on the Lua thread. A report's table says what the ack says:
 * topic (= subject), key (from the Producers-Key header), value, headers,
 * stream, sequence (= offset), duplicate, and the error. Reports are
 * made by send and freed by the serving, both on the Lua thread: freed
 * reports wait in a pool for the next sends (no malloc a message), and
 * the ack's stream name is copied into the report (no malloc on nats.c's
 * thread).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/msgstate.h"
#include "core/spooling.h"
#include "nats/errors.h"
#include "nats/report.h"
#include "nats/spool.h"

#define FIRST_BUCKETS 64

int64_t prd_nats_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Makes the lock, the condition (on the monotonic clock) and the map;
 * 0, or -1 out of memory. */
int prd_nats_queue_init(prd_nats *p)
{
    pthread_condattr_t attr;

    if (!(p->buckets = calloc(FIRST_BUCKETS, sizeof *p->buckets)))
        return -1;
    p->nbuckets = FIRST_BUCKETS;
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &attr);
    pthread_condattr_destroy(&attr);
    p->locks_made = 1;
    return 0;
}

/* A report for send, from the pool or malloc'd, zeroed; NULL out of
 * memory. Lua thread only. */
prd_nats_report *prd_nats_report_new(prd_nats *p)
{
    return prd_pool_take(&p->pool, sizeof(prd_nats_report));
}

/* Frees what r holds and r itself, or keeps it in the pool. Lua thread
 * only (the pool has no lock). */
void prd_nats_report_free(prd_nats *p, prd_nats_report *r)
{
    if (!r)
        return;
    natsMsg_Destroy(r->msg);
    free(r->text);
    if (r->stream != r->stream_buf)
        free(r->stream);
    prd_pool_give(&p->pool, r);
}

/* Frees the lock, the map and what the queue still holds (memory only:
 * close has released the messages' states). */
void prd_nats_queue_free(prd_nats *p)
{
    prd_nats_event *ev;

    prd_pool_free(&p->pool);
    if (!p->locks_made)
        return;
    while ((ev = p->ev_head)) {
        p->ev_head = ev->next;
        free(ev);
    }
    free(p->buckets);
    p->buckets = NULL;
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    p->locks_made = 0;
}

static size_t bucket_of(natsMsg *msg, size_t n)
{
    return (size_t)(((uintptr_t)msg >> 4) * 0x9E3779B97F4A7C15ULL >> 20) & (n - 1);
}

/* Doubles the map (locked); keeps the old one when out of memory. */
static void grow(prd_nats *p)
{
    size_t n = p->nbuckets * 2, i;
    prd_nats_report **b = calloc(n, sizeof *b), *r;

    if (!b)
        return;
    for (i = 0; i < p->nbuckets; i++)
        while ((r = p->buckets[i])) {
            p->buckets[i] = r->next;
            r->next = b[bucket_of(r->msg, n)];
            b[bucket_of(r->msg, n)] = r;
        }
    free(p->buckets);
    p->buckets = b;
    p->nbuckets = n;
}

/* Puts r, a message about to be published, in the map of messages in
 * flight (by r->msg). */
int prd_nats_track(prd_nats *p, prd_nats_report *r)
{
    size_t i;

    pthread_mutex_lock(&p->lock);
    if (p->in_flight >= p->nbuckets)
        grow(p);
    i = bucket_of(r->msg, p->nbuckets);
    r->next = p->buckets[i];
    p->buckets[i] = r;
    p->in_flight++;
    pthread_mutex_unlock(&p->lock);
    return 0;
}

/* Takes msg's report out of the map (locked); NULL if not there. */
static prd_nats_report *untrack_locked(prd_nats *p, natsMsg *msg)
{
    prd_nats_report **at = &p->buckets[bucket_of(msg, p->nbuckets)], *r;

    for (; (r = *at); at = &r->next)
        if (r->msg == msg) {
            *at = r->next;
            r->next = NULL;
            p->in_flight--;
            return r;
        }
    return NULL;
}

prd_nats_report *prd_nats_untrack(prd_nats *p, natsMsg *msg)
{
    prd_nats_report *r;

    pthread_mutex_lock(&p->lock);
    r = untrack_locked(p, msg);
    pthread_mutex_unlock(&p->lock);
    return r;
}

/* Whether the queue holds nothing (locked). */
static int empty_locked(const prd_nats *p)
{
    return !p->head && !p->ev_head;
}

/* Publishes whether the queue holds something (locked), for the looks
 * without the lock (prd_nats_next_event's at every produce, waiting). */
static void note_waiting_locked(prd_nats *p)
{
    atomic_store_explicit(&p->waiting, !empty_locked(p), memory_order_release);
}

/* Queues a report (locked); returns whether the queue was empty. */
static int enqueue_locked(prd_nats *p, prd_nats_report *r)
{
    int was_empty = empty_locked(p);

    r->next = NULL;
    if (p->tail)
        p->tail->next = r;
    else
        p->head = r;
    p->tail = r;
    if (was_empty) {
        note_waiting_locked(p);
        pthread_cond_broadcast(&p->cond);
    }
    return was_empty;
}

static char *copy_text(const char *s)
{
    return strdup(s ? s : "");
}

/* r's stream: in r's own buffer when it fits (no malloc on nats.c's
 * thread for a usual name). */
static void set_stream(prd_nats_report *r, const char *stream)
{
    size_t len = stream ? strlen(stream) : 0;

    if (len < sizeof r->stream_buf) {
        memcpy(r->stream_buf, stream ? stream : "", len + 1);
        r->stream = r->stream_buf;
    } else {
        r->stream = copy_text(stream);
    }
}

/* Fills r's failure: e, and the message text. */
static void set_failure(prd_nats_report *r, prd_nats_err e, const char *text)
{
    r->code = e.code;
    r->name = e.name;
    r->retriable = e.retriable;
    r->maybe_stored = e.maybe_stored;
    r->text = copy_text(text);
}

/* --- subjects the server refused (a Permissions Violation) --- */

/* The subject in a Permissions Violation's text (`... for Publish to
 * "SUBJECT"`) into out; 0 when the text names none. */
static int denied_subject(const char *text, char *out, size_t size)
{
    const char *at = strstr(text, "Publish to \""), *end;

    if (!at)
        at = strstr(text, "publish to \"");
    if (!at || !(end = strchr(at += 12, '"')) || (size_t)(end - at) >= size || end == at)
        return 0;
    memcpy(out, at, (size_t)(end - at));
    out[end - at] = '\0';
    return 1;
}

/*
 * The error handler's Permissions Violation (text: the server's) at
 * now_us, on nats.c's thread: the server refuses this connection's
 * publishes to the subject it names, without an answer to the message,
 * so those that time out fail for good (set_ack_error). Kept in
 * p->denied, the oldest replaced.
 */
void prd_nats_note_denial(prd_nats *p, const char *text, int64_t now_us)
{
    char subject[PRD_NATS_SUBJECT_MAX];
    prd_nats_denial *slot = &p->denied[0];
    size_t i;

    if (!text || !denied_subject(text, subject, sizeof subject))
        return;
    pthread_mutex_lock(&p->lock);
    for (i = 0; i < PRD_NATS_DENIALS; i++) {
        if (strcmp(p->denied[i].subject, subject) == 0) {
            slot = &p->denied[i];
            break;
        }
        if (p->denied[i].at_us < slot->at_us)
            slot = &p->denied[i];
    }
    memcpy(slot->subject, subject, strlen(subject) + 1);
    slot->at_us = now_us;
    pthread_mutex_unlock(&p->lock);
}

/* Whether the server refused a publish to subject at sent_us or later
 * (under p->lock). */
static int denied_locked(const prd_nats *p, const char *subject, int64_t sent_us)
{
    size_t i;

    for (i = 0; i < PRD_NATS_DENIALS; i++)
        if (p->denied[i].at_us >= sent_us && strcmp(p->denied[i].subject, subject) == 0)
            return 1;
    return 0;
}

/* The failure of a publish JetStream refused or nats.c gave up on (under
 * p->lock). A timeout on a subject the server refused since the send is
 * that refusal: _AUTHENTICATION, final. */
static void set_ack_error(prd_nats *p, prd_nats_report *r, const jsPubAckErr *pae)
{
    prd_nats_err e = prd_nats_err_of(pae->Err, (int)pae->ErrCode);
    const char *subject = natsMsg_GetSubject(r->msg);
    int denied = pae->Err == NATS_TIMEOUT && subject && denied_locked(p, subject, r->sent_us);
    char text[PRD_TEXT_MAX];

    if (e.code == PRD_NATS_NO_STREAM)   /* just after a reconnect: spool.c */
        e.retriable = prd_nats_stream_loading(p, r->done_us);
    if (denied)
        e = prd_nats_err_named("_AUTHENTICATION");

    if (e.code == PRD_NATS_NO_STREAM)
        snprintf(text, sizeof text, "no stream captures subject '%s'", subject);
    else if (denied)
        snprintf(text, sizeof text, "publish to '%s' not permitted (the server's Permissions Violation)",
                 subject);
    else if (pae->Err == NATS_TIMEOUT)
        snprintf(text, sizeof text, "no ack within %lld ms (ack_timeout; the server may have stored it)",
                 (long long)p->ack_timeout_ms);
    else if (pae->ErrText && *pae->ErrText)
        snprintf(text, sizeof text, "%s", pae->ErrText);
    else
        snprintf(text, sizeof text, "%s", natsStatus_GetText(pae->Err));
    set_failure(r, e, text);
}

/*
 * nats.c's ack handler, on its thread: exactly one of pa and pae is set;
 * msg is ours from here. Finds the message's report, fills it, queues it
 * and wakes the producer.
 */
void prd_nats_on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    prd_nats *p = closure;
    prd_nats_report *r;
    int wake;

    (void)js;
    pthread_mutex_lock(&p->lock);
    if (!(r = untrack_locked(p, msg))) {        /* taken back by purge or close */
        pthread_mutex_unlock(&p->lock);
        natsMsg_Destroy(msg);
        return;
    }
    r->done_us = prd_nats_now_us();
    if (pa) {
        set_stream(r, pa->Stream);
        r->sequence = pa->Sequence;
        r->duplicate = pa->Duplicate;
    } else {
        set_ack_error(p, r, pae);
    }
    wake = enqueue_locked(p, r);
    pthread_mutex_unlock(&p->lock);
    if (wake)
        prd_wake_signal(&p->base.wake);
}

/*
 * Fails the messages of list (taken back from nats.c: purge, close, a
 * closed connection) with the error name: each gets its report. The list
 * is destroyed.
 */
static void fail_msgs(prd_nats *p, natsMsgList *list, const char *name, const char *text)
{
    prd_nats_err e = prd_nats_err_named(name);
    prd_nats_report *r;
    int i, wake = 0;

    pthread_mutex_lock(&p->lock);
    for (i = 0; i < list->Count; i++) {
        if (!(r = untrack_locked(p, list->Msgs[i])))
            continue;                           /* not ours: destroyed below */
        list->Msgs[i] = NULL;
        r->done_us = prd_nats_now_us();
        set_failure(r, e, text);
        wake |= enqueue_locked(p, r);
    }
    pthread_mutex_unlock(&p->lock);
    natsMsgList_Destroy(list);
    if (wake)
        prd_wake_signal(&p->base.wake);
}

/*
 * Takes back from nats.c every message whose ack is in flight (purge,
 * close, a connection closed for good): each fails with the error name.
 * Asked only once a message was published: nats.c 3.4 crashes on a
 * context that never published asynchronously.
 */
void prd_nats_take_back(prd_nats *p, const char *name, const char *text)
{
    natsMsgList list = {0};

    if (atomic_load(&p->published) && p->js && js_PublishAsyncGetPendingList(&list, p->js) == NATS_OK)
        fail_msgs(p, &list, name, text);
}

/* Queues an event for the logger (s NATS_OK) or on_error (an error). */
void prd_nats_push_event(prd_nats *p, int level, natsStatus s, const char *fmt, ...)
{
    prd_nats_event *ev = calloc(1, sizeof *ev);
    va_list ap;
    int wake;

    if (!ev)
        return;
    ev->level = level;
    if (s != NATS_OK) {
        prd_nats_err e = prd_nats_err_of(s, 0);

        ev->code = e.code;
        ev->name = e.name;
    }
    va_start(ap, fmt);
    vsnprintf(ev->text, sizeof ev->text, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&p->lock);
    wake = empty_locked(p);
    if (p->ev_tail)
        p->ev_tail->next = ev;
    else
        p->ev_head = ev;
    p->ev_tail = ev;
    if (wake) {
        note_waiting_locked(p);
        pthread_cond_broadcast(&p->cond);
    }
    pthread_mutex_unlock(&p->lock);
    if (wake)
        prd_wake_signal(&p->base.wake);
}

/* Waits (locked) up to timeout_ms for the queue to get something. */
static void wait_locked(prd_nats *p, int timeout_ms)
{
    struct timespec ts;

    if (timeout_ms <= 0 || !empty_locked(p))
        return;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    while (empty_locked(p) && pthread_cond_timedwait(&p->cond, &p->lock, &ts) != ETIMEDOUT)
        ;
}

/* prd_transport's next_event: an event (served when serve is set), else
 * every report queued as one batch (p->base.pending), waiting up to
 * timeout_ms for either. */
int prd_nats_next_event(lua_State *L, prd_producer *base, int timeout_ms, int serve, int *status)
{
    prd_nats *p = (prd_nats *)base;
    prd_nats_event *ev;

    if (timeout_ms <= 0 && !atomic_load_explicit(&p->waiting, memory_order_acquire))
        return PRD_EVENT_NONE;  /* no lock: what comes next wakes the producer */
    pthread_mutex_lock(&p->lock);
    wait_locked(p, timeout_ms);
    if ((ev = p->ev_head)) {
        if (!(p->ev_head = ev->next))
            p->ev_tail = NULL;
        note_waiting_locked(p);
        pthread_mutex_unlock(&p->lock);
        if (serve)
            *status = prd_nats_event_serve(L, p, ev);
        free(ev);
        return PRD_EVENT_OTHER;
    }
    if (!p->head) {
        pthread_mutex_unlock(&p->lock);
        return PRD_EVENT_NONE;
    }
    p->batch.head = p->head;
    p->head = p->tail = NULL;
    note_waiting_locked(p);
    pthread_mutex_unlock(&p->lock);
    p->base.pending = &p->batch;
    return PRD_EVENT_BATCH;
}

/* prd_transport's next_report: the next report of the batch; the one
 * before it is freed (its state was released by the serving). */
const void *prd_nats_next_report(prd_producer *base)
{
    prd_nats_batch *b = base->pending;
    prd_nats_report *r;

    prd_nats_report_free((prd_nats *)base, b->last);
    b->last = NULL;
    if (!(r = b->head)) {
        base->pending = NULL;
        return NULL;
    }
    b->head = r->next;
    b->last = r;
    return r;
}

void *prd_nats_report_state(const void *report)
{
    return ((const prd_nats_report *)report)->state;
}

/* prd_transport's count. */
void prd_nats_count(prd_producer *base, const void *report)
{
    prd_nats *p = (prd_nats *)base;
    const prd_nats_report *r = report;

    p->base.queued--;
    if (r->code) {
        p->base.failures++;
        p->failed_bytes += r->bytes;
    } else {
        p->base.delivered++;
        p->delivered_bytes += r->bytes;
        p->duplicates += r->duplicate != 0;
    }
}

/* Pushes err: nil, or the failure's message. */
static void push_error(lua_State *L, const prd_nats_report *r)
{
    if (r->code)
        lua_pushstring(L, r->text);
    else
        lua_pushnil(L);
}

/* report.headers (name -> first value) and report.header_list ({name,
 * value} pairs), the key's header and Nats-Msg-Id left out; report.id. */
static void push_headers(lua_State *L, natsMsg *msg)
{
    const char **keys = NULL, **values = NULL, *id = NULL;
    int nkeys = 0, nvalues, i, j, n = 0;

    if (natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) == NATS_OK && id) {
        lua_pushstring(L, id);
        lua_setfield(L, -2, "id");
    }
    if (natsMsgHeader_Keys(msg, &keys, &nkeys) != NATS_OK || !keys)
        return;
    lua_newtable(L);                                  /* report, map */
    lua_newtable(L);                                  /* report, map, list */
    for (i = 0; i < nkeys; i++) {
        if (strcmp(keys[i], PRD_NATS_KEY_HEADER) == 0 || strcmp(keys[i], "Nats-Msg-Id") == 0 ||
            natsMsgHeader_Values(msg, keys[i], &values, &nvalues) != NATS_OK)
            continue;
        for (j = 0; j < nvalues; j++) {
            lua_createtable(L, 2, 0);
            lua_pushstring(L, keys[i]);
            lua_rawseti(L, -2, 1);
            lua_pushstring(L, values[j]);
            lua_rawseti(L, -2, 2);
            lua_rawseti(L, -2, ++n);
        }
        lua_pushstring(L, values[0]);
        lua_setfield(L, -3, keys[i]);
        free((void *)values);
    }
    free((void *)keys);
    if (n == 0) {
        lua_pop(L, 2);
        return;
    }
    lua_setfield(L, -3, "header_list");
    lua_setfield(L, -2, "headers");
}

static void set_string(lua_State *L, const char *field, const char *s)
{
    lua_pushstring(L, s);
    lua_setfield(L, -2, field);
}

/* Pushes the report table of r. */
static void push_report(lua_State *L, const prd_nats_report *r)
{
    const char *key = NULL;
    int len = natsMsg_GetDataLength(r->msg);

    lua_createtable(L, 0, 12);
    set_string(L, "topic", natsMsg_GetSubject(r->msg));
    set_string(L, "subject", natsMsg_GetSubject(r->msg));
    if (natsMsgHeader_Get(r->msg, PRD_NATS_KEY_HEADER, &key) == NATS_OK && key)
        set_string(L, "key", key);
    if (len > 0) {
        lua_pushlstring(L, natsMsg_GetData(r->msg), (size_t)len);
        lua_setfield(L, -2, "value");
    }
    lua_pushnumber(L, (lua_Number)(r->done_us - r->sent_us) / 1e6);
    lua_setfield(L, -2, "latency");
    if (r->code) {
        set_string(L, "err_name", r->name);
        set_string(L, "error", r->name);            /* err_name's other name, as Kafka's */
        prd_nats_error_push(L, (prd_nats_err){r->code, r->name, r->retriable, r->maybe_stored},
                            r->text);
        lua_setfield(L, -2, "error_object");
        lua_pushboolean(L, r->maybe_stored);
        lua_setfield(L, -2, "possibly_persisted");
    } else {
        set_string(L, "stream", r->stream);
        lua_pushinteger(L, (lua_Integer)r->sequence);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, "sequence");
        lua_setfield(L, -2, "offset");
        lua_pushboolean(L, r->duplicate);
        lua_setfield(L, -2, "duplicate");
    }
    push_headers(L, r->msg);
}

/* The default report: failures at error level, successes at debug. */
static int default_report(lua_State *L, prd_nats *p, const prd_nats_report *r)
{
    const char *subject = natsMsg_GetSubject(r->msg);

    /* purged by close: its one summary line counts them */
    if (p->base.closing && r->code == prd_nats_err_named("_PURGE_INFLIGHT").code)
        return LUA_OK;
    if (r->code)
        return prd_log_f(L, &p->base.log, &p->base.busy, PRD_ERROR,
                         "delivery failed: %s: %s (%s)", subject, r->text, r->name);
    return prd_log_f(L, &p->base.log, &p->base.busy, PRD_DEBUG,
                     "delivered to %s: stream %s sequence %llu%s", subject, r->stream,
                     (unsigned long long)r->sequence, r->duplicate ? " (duplicate)" : "");
}

/* prd_transport's report: the message's callback, or on_delivery, with
 * err and (when it takes one) the report table; else the default report. */
int prd_nats_report_call(lua_State *L, prd_producer *base, const void *report)
{
    prd_nats *p = (prd_nats *)base;
    const prd_nats_report *r = report;
    int takes_report;

    if (!prd_msgstate_push_callback(L, r->state, p->on_delivery, p->on_delivery_report,
                                    &takes_report))
        return default_report(L, p, r);
    push_error(L, r);
    if (takes_report) {
        push_report(L, r);
        prd_spooling_report_fields(L, base, r->state);   /* replayed */
        lua_call(L, 2, 0);
    } else {
        lua_call(L, 1, 0);
    }
    return LUA_OK;
}

/* prd_transport's push_report: the report table with err and the
 * message's own callback (on_delivery) as fields. */
int prd_nats_report_push(lua_State *L, prd_producer *base, const void *report)
{
    const prd_nats_report *r = report;

    push_report(L, r);
    prd_spooling_report_fields(L, base, r->state);       /* replayed */
    push_error(L, r);
    lua_setfield(L, -2, "err");
    prd_msgstate_set_on_delivery(L, r->state);
    return 1;
}

/* prd_transport's waiting. */
int prd_nats_waiting(prd_producer *base)
{
    prd_nats *p = (prd_nats *)base;

    return atomic_load_explicit(&p->waiting, memory_order_acquire);
}
