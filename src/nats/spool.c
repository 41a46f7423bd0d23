/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * spool.c: the NATS transport's side of the durable spool
 * (core/spooling.c; docs/spool.md, docs/nats.md): what a report means
 * for a spooled message (prd_transport's outcome), and a spooled
 * record's key and headers onto its natsMsg. A record's bytes are not
 * NUL-terminated (they may lie in a segment read back) while nats.c's
 * headers are C strings: they are copied into one buffer first, and
 * checked as produce checks a table's. A record whose caller gave no
 * opts.id is sent with Nats-Msg-Id set to its producers-id, so JetStream
 * drops a copy sent again (after a timeout, by the next producer after
 * a kill) within the stream's duplicate window; opts.id itself travels
 * in the record as its Nats-Msg-Id header (core/transport.h's
 * id_header).
 *
 * Caveat: NO_STREAM is final (no retry makes a stream capture the
 * subject), except within NO_STREAM_GRACE_US of the connection lost or
 * regained: a restarted server may take clients before JetStream has
 * loaded its streams again, and a message sent then fails NO_STREAM at
 * once; it is retriable then (the error object says so too).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/spooling.h"
#include "nats/errors.h"
#include "nats/spool.h"

#define NO_STREAM_GRACE_US (3 * 1000000LL)
#define LOCAL_BYTES 2048          /* the copies of a record's strings, on the stack */

/* Failures no retry can change: the spool acks the record and serves
 * the report. Every other failure (_MSG_TIMED_OUT, _CONNECTION_CLOSED,
 * _PURGE_INFLIGHT at close, _NATS...) is retriable: sent again. */
static int is_final(const prd_nats_report *r)
{
    static const char *const final[] = {"MSG_SIZE_TOO_LARGE", "_INVALID_ARG", "_AUTHENTICATION",
                                        "STREAM_FULL", "JETSTREAM"};
    size_t i;

    if (r->code == PRD_NATS_NO_STREAM)
        return !r->retriable;     /* retriable just after a reconnect */
    for (i = 0; i < sizeof final / sizeof final[0]; i++)
        if (strcmp(r->name, final[i]) == 0)
            return 1;
    return 0;
}

/* prd_transport's outcome: what report (a prd_nats_report) means for its
 * spooled message (core/transport.h's PRD_OUTCOME_*). */
int prd_nats_outcome(const void *report)
{
    const prd_nats_report *r = report;

    if (!r->code)
        return PRD_OUTCOME_DELIVERED;
    if (is_final(r))
        return PRD_OUTCOME_FAILED;
    return r->maybe_stored ? PRD_OUTCOME_RETRY_WRITTEN : PRD_OUTCOME_RETRY;
}

/* The connection was lost or regained at now_us (connect.c's callbacks):
 * NO_STREAM is retriable for a while. */
void prd_nats_connection_moved(prd_nats *p, int64_t now_us)
{
    atomic_store(&p->moved_us, (long long)now_us);
}

/* Whether a NO_STREAM at now_us may be JetStream still loading its
 * streams: within NO_STREAM_GRACE_US of a disconnect or a reconnect. */
int prd_nats_stream_loading(prd_nats *p, int64_t now_us)
{
    int64_t at = (int64_t)atomic_load(&p->moved_us);

    return at && now_us - at < NO_STREAM_GRACE_US;
}

/*
 * Whether max_pending acks are in flight, for a spooled record's send:
 * then pushes _QUEUE_FULL's failure tuple at once and returns its count
 * (the record waits in the spool), rather than nats.c waiting stall_wait
 * for room at every feed (every produce, while the server is away);
 * else 0.
 */
int prd_nats_spool_full(lua_State *L, prd_nats *p)
{
    size_t in_flight;

    pthread_mutex_lock(&p->lock);
    in_flight = p->in_flight;
    pthread_mutex_unlock(&p->lock);
    if (p->max_pending <= 0 || (int64_t)in_flight < p->max_pending)
        return 0;
    return prd_nats_fail_named(L, "_QUEUE_FULL", "Local: Queue full (max_pending acks in flight)");
}

/* Whether len bytes can be a header's value: no NUL, CR or LF. */
static int value_safe(const char *s, size_t len)
{
    return !memchr(s, '\0', len) && !memchr(s, '\r', len) && !memchr(s, '\n', len);
}

/* Whether len bytes can be a header's name: not empty, and none of
 * ':', blanks, CR, LF, NUL. */
static int name_safe(const char *s, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++)
        if (strchr(": \t\r\n", s[i]))     /* strchr finds the NUL too */
            return 0;
    return len > 0;
}

/* len bytes at s as a C string at *at, which moves past it. */
static const char *copy(char **at, const char *s, size_t len)
{
    char *out = *at;

    if (len)
        memcpy(out, s, len);
    out[len] = '\0';
    *at = out + len + 1;
    return out;
}

static int refuse_header(lua_State *L, const char *what)
{
    char text[PRD_TEXT_MAX];

    snprintf(text, sizeof text, "spooled record: %s: a NATS header's name cannot hold ':' or "
             "blanks, nor its value CR, LF or NUL bytes", what);
    return prd_nats_fail_named(L, "_INVALID_ARG", text);
}

/* m's key and headers (header_list) onto msg, their strings copied at
 * at; Nats-Msg-Id from producers-id when the record has none. 0, or the
 * failure tuple pushed. */
static int add_all(lua_State *L, const prd_message *m, natsMsg *msg, char *at)
{
    const char *pid = NULL, *name, *value;
    natsStatus s = NATS_OK;
    int has_id = 0;
    size_t i;

    if (m->key && !value_safe(m->key, m->key_len))
        return refuse_header(L, "the key");
    if (m->key)
        s = natsMsgHeader_Set(msg, PRD_NATS_KEY_HEADER, copy(&at, m->key, m->key_len));
    for (i = 0; s == NATS_OK && i < m->header_count; i++) {
        const prd_header *h = &m->header_list[i];

        if (!name_safe(h->name, h->name_len) || (h->value && !value_safe(h->value, h->value_len)))
            return refuse_header(L, "a header");
        name = copy(&at, h->name, h->name_len);
        value = copy(&at, h->value ? h->value : "", h->value ? h->value_len : 0);
        has_id |= strcmp(name, PRD_NATS_MSG_ID_HEADER) == 0;
        if (strcmp(name, PRD_SPOOL_ID_HEADER) == 0)
            pid = value;
        s = natsMsgHeader_Add(msg, name, value);
    }
    if (s == NATS_OK && !has_id && pid)
        s = natsMsgHeader_Set(msg, PRD_NATS_MSG_ID_HEADER, pid);
    return s == NATS_OK ? 0 : prd_nats_fail(L, s, NULL);
}

/*
 * A spooled record's key and headers (m->header_list, the producers-id
 * last unless id_header = false: core/spooling.c) onto msg, for send:
 * 0, or the failure tuple pushed (_INVALID_ARG: bytes a header cannot
 * carry; final for the spool).
 */
int prd_nats_spool_headers(lua_State *L, const prd_message *m, natsMsg *msg)
{
    char local[LOCAL_BYTES], *buf = local;
    size_t need = m->key ? m->key_len + 1 : 0, i;
    int n;

    for (i = 0; i < m->header_count; i++)
        need += m->header_list[i].name_len + m->header_list[i].value_len + 2;
    if (need > sizeof local && !(buf = malloc(need)))
        return prd_nats_fail(L, NATS_NO_MEMORY, NULL);
    n = add_all(L, m, msg, buf);
    if (buf != local)
        free(buf);
    return n;
}
