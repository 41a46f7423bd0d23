/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * spooling.c: the durable spool (src/spool/, docs/design/spool.md) on the
 * transport seam (issue #22; the promise and its limits: docs/spool.md).
 *
 * produce builds the record in C and appends it (a store into the
 * segment's shared mapping: I1, I2),
 * then runs the feeder, which hands the transport the records not acked
 * and not in flight, oldest seq first (I10, I14), while the transport
 * takes them: a full queue leaves the record read (held) for the next
 * feed, so memory holds one record, never the spool. The feeder runs
 * inside serving (queue.c), produce and open, on the Lua thread, and runs
 * no Lua.
 *
 * Each message the transport holds carries a prd_spooled as its state: a
 * prd_msgstate (its callback, so report.c and queue.c serve it as any
 * other) followed by its seq. A final report acks the record (I5; the
 * ack held in memory until the serve ends, which writes the batch's acks
 * with one write: prd_spooling_flush, I8) and is served; a retriable one (timed out, purged at close) is not served
 * (I6): the entry stays, with its callback, until the feeder sends the
 * record again. Entries live in a table by seq: in flight, or waiting
 * for a re-send with a callback; a record with neither has none.
 *
 * Caveats: a record the transport refuses for good at send (too large,
 * unknown partition) is acked as failed: produce returns the refusal for
 * its own record, any other is logged (the host's log) and counted in
 * failed, its callback not called. A retriable report rewinds the cursor:
 * the next feed reads the unacked records again from the oldest, skipping
 * those in flight.
 */
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/host.h"
#include "core/log.h"
#include "core/msgstate.h"
#include "core/pool.h"
#include "core/seqtable.h"
#include "core/spooling.h"
#include "spool/spool.h"

#define ID_HEADER PRD_SPOOL_ID_HEADER
#define ID_MAX 64                 /* 32 hex digits, '-', 20 digits */
#define ID_PREFIX 33              /* 32 hex digits, '-' */
#define ERR_SPOOL_BASE (-1000)    /* error codes: -1000 - prd_spool_code */

#define POOL_KEEP 4096            /* released entries kept for reuse, at most */

typedef struct prd_source prd_source;
typedef struct prd_spooled prd_spooled;

/* A spooled message's state: msgstate.c releases it, its release hook
 * (entry_release) gives it back to its pool. */
struct prd_spooled {
    prd_msgstate base;           /* first: the callback, for its report */
    prd_source *src;             /* the spool holding its record */
    prd_pool *pool;              /* where it goes back */
    uint64_t seq;
    int inflight;                /* handed to the transport, no report yet */
    int replayed;                /* written by an earlier producer */
    int counted;                 /* counted in replayed */
    int retried;                 /* a retriable report came: resent next */
    int written;                 /* ... and the broker may have written it */
};

/* A spool the feeder reads: the producer's own, or one it adopted. */
struct prd_source {
    prd_spool *s;
    prd_spool_cursor cur;
    prd_spool_record rec;        /* read and not taken yet (held) */
    int held;
    int rewind;                  /* a retriable report: read again from the oldest */
    uint64_t own_first;          /* first seq this producer appended */
    prd_pool *pool;              /* the producer's, for its entries */
    prd_seqtable entries;        /* seq -> entry (seqtable.h) */
    unsigned char id[16];        /* the spool's id */
    char id_text[ID_PREFIX];     /* ... in hex, '-': producers-id's prefix */
    char *dir;                   /* an adopted spool's, removed once empty */
    prd_source *next;            /* the next adopted spool */
};

typedef struct prd_spooling {
    prd_source own;
    prd_pool pool;               /* every source's released entries (no
                                    malloc/free a message), freed with the
                                    producer: an adopted spool may close
                                    while its last reports are served */
    prd_source *adopted;         /* oldest first: fed before own */
    prd_spool_header *hdrs;      /* produce's headers, as C bytes */
    size_t hcap, hcount;
    int hfailed;
    prd_header *send_hdrs;       /* a record's headers and the id, for send */
    size_t scap, send_count;
    char *topic;                 /* the record's topic, NUL-terminated */
    size_t tcap;
    char id[ID_MAX];
    int id_header;               /* producers-id on every send (option id_header) */
    uint64_t replayed, resent, resent_written, send_failed, adopted_dirs;
} prd_spooling;

/* --- entries --- */

/* msgstate.c's release hook: back to the pool */
static void entry_release(void *state)
{
    prd_spooled *e = state;

    prd_pool_give(e->pool, e);
}

static prd_spooled *entry_new(prd_source *src, uint64_t seq, int ref, int takes_report)
{
    prd_spooled *e = prd_pool_take(src->pool, sizeof *e);

    if (!e)
        return NULL;
    e->base.callback = ref;
    e->base.takes_report = takes_report;
    e->base.value = LUA_NOREF;
    e->base.release = entry_release;
    e->src = src;
    e->pool = src->pool;
    e->seq = seq;
    e->replayed = seq < src->own_first;
    if (prd_seqtable_put(&src->entries, seq, e) != 0) {
        entry_release(e);
        return NULL;
    }
    return e;
}

/* --- opening --- */

static int64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Pushes a spool's failure as an error object: name SPOOL_LOCKED, ... */
static void push_code(lua_State *L, prd_spool_code rc, const char *message)
{
    prd_error_push(L, ERR_SPOOL_BASE - (int)rc, prd_spool_code_name(rc), message, 0);
}

/* The spool table at t (checked by kafka.lua) into o; its dir. */
static const char *read_options(lua_State *L, int t, prd_spool_options *o)
{
    const char *dir, *fsync;

    prd_spool_options_init(o);
    lua_getfield(L, t, "dir");
    dir = luaL_checkstring(L, -1);
    lua_getfield(L, t, "max_bytes");
    o->max_bytes = (uint64_t)luaL_optinteger(L, -1, (lua_Integer)o->max_bytes);
    lua_getfield(L, t, "segment_bytes");
    o->segment_bytes = (uint64_t)luaL_optinteger(L, -1, (lua_Integer)o->segment_bytes);
    lua_getfield(L, t, "fsync_interval_ms");
    o->fsync_interval_ms = (unsigned)luaL_optinteger(L, -1, o->fsync_interval_ms);
    lua_getfield(L, t, "fsync");
    fsync = luaL_optstring(L, -1, "never");
    o->fsync = strcmp(fsync, "always") == 0     ? PRD_SPOOL_FSYNC_ALWAYS
             : strcmp(fsync, "interval") == 0   ? PRD_SPOOL_FSYNC_INTERVAL
                                                : PRD_SPOOL_FSYNC_NEVER;
    lua_pop(L, 4);               /* dir stays below, anchored by t */
    return dir;
}

/* A producers-id prefix into out: id in 32 hex digits, '-'. */
static void id_prefix(char *out, const unsigned char id[16])
{
    static const char hex[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < 16; i++) {
        out[2 * i] = hex[id[i] >> 4];
        out[2 * i + 1] = hex[id[i] & 15];
    }
    out[ID_PREFIX - 1] = '-';
}

/* Opens the spool of dir into src: PRD_SPOOL_OK, or the code with the
 * message in err. */
static prd_spool_code source_open(prd_source *src, const char *dir, const prd_spool_options *o,
                                  char *err, size_t errlen)
{
    prd_spool_code rc;

    prd_spool_cursor_init(&src->cur);
    src->own_first = UINT64_MAX;
    if ((rc = prd_spool_open(dir, o, &src->s, err, errlen)) != PRD_SPOOL_OK)
        return rc;
    prd_spool_id(src->s, src->id);
    id_prefix(src->id_text, src->id);
    return rc;
}

/*
 * Opens the spool opts.spool asks for (the table at opts, built by
 * kafka.lua), before the transport opens. Raises an error object when
 * the spool cannot be opened: name SPOOL_LOCKED (another process holds
 * it: its pid), SPOOL_IO (the errno's text), SPOOL_VERSION.
 */
void prd_spooling_open(lua_State *L, prd_producer *p, int opts)
{
    char err[PRD_TEXT_MAX];
    prd_spool_options o;
    prd_spooling *sp;
    prd_spool_code rc;
    const char *dir;
    int t;

    lua_getfield(L, opts, "spool");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    t = lua_gettop(L);
    dir = read_options(L, t, &o);
    if (!(sp = calloc(1, sizeof *sp)))
        luaL_error(L, "spool %s: out of memory", dir);
    lua_getfield(L, t, "id_header");
    sp->id_header = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_pop(L, 1);
    sp->pool.keep = POOL_KEEP;
    sp->own.pool = &sp->pool;
    if ((rc = source_open(&sp->own, dir, &o, err, sizeof err)) != PRD_SPOOL_OK) {
        prd_spool_cursor_free(&sp->own.cur);
        free(sp);
        push_code(L, rc, err);
        lua_error(L);
    }
    p->spool = sp;
    lua_pop(L, 2);
}

static int feed(lua_State *L, prd_producer *p, uint64_t own);

/* Logs src's start-up line (I13) when it holds anything; its records
 * count as queued. */
static void resume(lua_State *L, prd_producer *p, prd_source *src)
{
    prd_spool_metrics m;
    char line[PRD_TEXT_MAX];

    prd_spool_metrics_get(src->s, &m);
    p->queued += (long)m.records;
    if (m.records || m.cut || m.damaged) {
        prd_spool_summary(src->s, line, sizeof line);
        if (prd_log_f(L, &p->log, &p->busy, PRD_INFO, "%s", line) != LUA_OK)
            lua_pop(L, 1);
    }
}

/* Once the transport is open: counts what the spool holds as queued,
 * logs the start-up line when it resumes a spool (I13), starts the
 * replay. */
void prd_spooling_start(lua_State *L, prd_producer *p)
{
    if (!p->spool)
        return;
    resume(L, p, &p->spool->own);
    feed(L, p, 0);
}

/* --- produce --- */

/* A header slot more in sp->hdrs; NULL out of memory (sp->hfailed). */
static prd_spool_header *next_header(prd_spooling *sp)
{
    prd_spool_header *h;

    if (sp->hcount == sp->hcap) {
        size_t cap = sp->hcap ? sp->hcap * 2 : 8;

        if (!(h = realloc(sp->hdrs, cap * sizeof *h))) {
            sp->hfailed = 1;
            return NULL;
        }
        sp->hdrs = h;
        sp->hcap = cap;
    }
    return &sp->hdrs[sp->hcount++];
}

static void collect_header(lua_State *L, int name_idx, int value_idx, void *ud)
{
    prd_spool_header *h = next_header(ud);

    if (!h)
        return;
    h->name = lua_tolstring(L, name_idx, &h->name_len);
    h->value = lua_tolstring(L, value_idx, &h->value_len);
}

/* opts.id kept in the record as the header the transport reads it from
 * (id_header: NATS's Nats-Msg-Id), so every send of the record carries
 * it; a transport without one ignores opts.id (Kafka). */
static void keep_id(prd_spooling *sp, const char *id_header, const char *id)
{
    prd_spool_header *h;

    if (!id || !id_header || !(h = next_header(sp)))
        return;
    h->name = id_header;
    h->name_len = strlen(id_header);
    h->value = id;
    h->value_len = strlen(id);
}

/* m as a record; its headers (the table at m->headers, then opts.id as
 * id_header) in sp->hdrs. */
static void record_of(lua_State *L, prd_spooling *sp, const prd_message *m,
                      const char *id_header, prd_each_header_fn each, prd_spool_record *r)
{
    r->topic = m->topic;
    r->topic_len = strlen(m->topic);
    r->partition = (int32_t)m->partition;
    r->key = m->key;
    r->key_len = m->key_len;
    r->value = m->value;
    r->value_len = m->value_len;
    r->timestamp_ms = m->timestamp ? (int64_t)m->timestamp : wall_ms();
    sp->hcount = 0;
    sp->hfailed = 0;
    if (m->headers)
        each(L, m->headers, collect_header, sp);
    keep_id(sp, id_header, m->id);
    r->headers = sp->hdrs;
    r->header_count = sp->hcount;
}

/* The callback at idx (or none) as a registry ref. */
static int callback_ref(lua_State *L, int idx)
{
    if (!idx || lua_isnil(L, idx))
        return LUA_NOREF;
    lua_pushvalue(L, idx);
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Keeps seq's callback (ref) for its report in a new entry (returned);
 * NULL without a callback, or without memory for it (the report then
 * goes to the producer's on_delivery). */
static prd_spooled *keep_callback(lua_State *L, prd_source *src, uint64_t seq, int ref,
                                  int takes_report)
{
    prd_spooled *e;

    if (ref == LUA_NOREF)
        return NULL;
    if (!(e = entry_new(src, seq, ref, takes_report)))
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return e;
}

/* produce's refusal for append's code rc: SPOOL_FULL, SPOOL_IO, or a
 * record larger than a segment as Kafka's MSG_SIZE_TOO_LARGE (code 10:
 * no retry can change it). Nothing of the record is on disk. */
static int refuse(lua_State *L, prd_spooling *sp, prd_spool_code rc)
{
    char text[PRD_TEXT_MAX];

    if (sp->hfailed)
        return prd_fail(L, ERR_SPOOL_BASE - PRD_SPOOL_IO, "SPOOL_IO", "spool: out of memory", 0);
    if (rc == PRD_SPOOL_INVALID) {
        snprintf(text, sizeof text, "spool: %s; refused locally", prd_spool_error(sp->own.s));
        return prd_fail(L, 10, "MSG_SIZE_TOO_LARGE", text, 0);
    }
    return prd_fail(L, ERR_SPOOL_BASE - (int)rc, prd_spool_code_name(rc),
                    prd_spool_error(sp->own.s), 0);
}

static int send_direct(lua_State *L, prd_producer *p, prd_spool_record *r, uint64_t seq,
                       prd_spooled *e, lua_Integer stamp);

/*
 * produce with a spool (produce.c, after its checks and encoding):
 * appends m, with the callback at callback (0: none), then feeds; serve
 * serves the reports that are ready. Pushes true, or a refusal: nil,
 * message, "SPOOL_FULL" | "SPOOL_IO", err (nothing written), or the
 * transport's final refusal of the record (acked as failed). Returns
 * the count pushed.
 */
int prd_spooling_produce(lua_State *L, prd_producer *p, const prd_message *m, int callback,
                         void (*serve)(lua_State *, prd_producer *), prd_each_header_fn each)
{
    int ref = callback_ref(L, callback), n;
    prd_spool_record r = {0};
    prd_spooling *sp;
    prd_spool_code rc;
    prd_spooled *e;
    uint64_t seq;

    if (p->closed || !(sp = p->spool)) {      /* a finalizer ran at the ref */
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        return luaL_error(L, "producer is closed");
    }
    record_of(L, sp, m, p->tr->id_header, each, &r);
    rc = sp->hfailed ? PRD_SPOOL_IO : prd_spool_append(sp->own.s, &r, &seq);
    if (rc != PRD_SPOOL_OK) {
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        return refuse(L, sp, rc);
    }
    if (sp->own.own_first == UINT64_MAX)
        sp->own.own_first = seq;
    p->queued++;
    e = keep_callback(L, &sp->own, seq, ref, m->takes_report);
    if ((n = send_direct(L, p, &r, seq, e, m->timestamp)) < 0)
        return -n;
    if (n == 0 && (n = feed(L, p, seq)))
        return n;
    if (p->serve_on_produce)
        serve(L, p);
    lua_pushboolean(L, 1);
    return 1;
}

/* --- the feeder --- */

/* Reads src's next record to send into src->rec (held): 1, or 0 when
 * none. */
static int read_next(prd_source *src)
{
    prd_spooled *e;

    for (;;) {
        if (src->rewind) {
            prd_spool_rewind(&src->cur);
            src->rewind = 0;
        }
        if (prd_spool_next(src->s, &src->cur, &src->rec) != PRD_SPOOL_OK)
            return 0;
        if (!(e = prd_seqtable_get(&src->entries, src->rec.seq)) || !e->inflight)
            return src->held = 1;
    }
}

/* src's record seq in flight from now, with its entry e (NULL: it has
 * none yet, one is made): counted replayed or resent. NULL out of
 * memory. */
static prd_spooled *take_entry(prd_spooling *sp, prd_source *src, uint64_t seq, prd_spooled *e)
{
    if (!e && !(e = entry_new(src, seq, LUA_NOREF, 0)))
        return NULL;
    e->inflight = 1;
    if (e->replayed && !e->counted) {
        e->counted = 1;
        sp->replayed++;
    }
    if (e->retried) {
        sp->resent++;
        sp->resent_written += e->written;
        e->retried = e->written = 0;
    }
    return e;
}

static int reserve(void **buf, size_t *cap, size_t need, size_t size)
{
    void *b;

    if (need <= *cap)
        return 1;
    if (!(b = realloc(*buf, need * size)))
        return 0;
    *buf = b;
    *cap = need;
    return 1;
}

/* The producers-id header's value of record r of src into out: its
 * segment's spool id in 32 hex digits (src's, built once, unless a
 * damaged SPOOL file gave src a new id), '-', its seq in decimal (no
 * sprintf: the hot path). */
static size_t format_id(char *out, const prd_source *src, const prd_spool_record *r)
{
    char digits[20];
    uint64_t seq = r->seq;
    size_t n = 0, len = ID_PREFIX;

    if (memcmp(r->id, src->id, 16) == 0)
        memcpy(out, src->id_text, ID_PREFIX);
    else
        id_prefix(out, r->id);
    do {
        digits[n++] = (char)('0' + seq % 10);
        seq /= 10;
    } while (seq);
    while (n)
        out[len++] = digits[--n];
    out[len] = '\0';
    return len;
}

/* The record r's topic (NUL-terminated) and headers, the id last
 * (unless id_header = false), into sp's buffers: 1, or 0 out of memory. */
static int prepare(prd_spooling *sp, const prd_source *src, const prd_spool_record *r)
{
    size_t i, n = r->header_count;

    if (!reserve((void **)&sp->topic, &sp->tcap, r->topic_len + 1, 1) ||
        !reserve((void **)&sp->send_hdrs, &sp->scap, n + 1, sizeof *sp->send_hdrs))
        return 0;
    memcpy(sp->topic, r->topic, r->topic_len);
    sp->topic[r->topic_len] = '\0';
    for (i = 0; i < n; i++) {
        sp->send_hdrs[i].name = r->headers[i].name;
        sp->send_hdrs[i].name_len = r->headers[i].name_len;
        sp->send_hdrs[i].value = r->headers[i].value;
        sp->send_hdrs[i].value_len = r->headers[i].value_len;
    }
    sp->send_count = n;
    if (!sp->id_header)
        return 1;
    sp->send_hdrs[n].name = ID_HEADER;
    sp->send_hdrs[n].name_len = sizeof ID_HEADER - 1;
    sp->send_hdrs[n].value = sp->id;
    sp->send_hdrs[n].value_len = format_id(sp->id, src, r);
    sp->send_count = n + 1;
    return 1;
}

/* Hands record r (prepared) to the transport with e as its state and
 * the timestamp stamp (0: the transport's now, for produce's own record
 * sent at once when it gave none: the same clock as the record's): the
 * transport's send's result (0, or the failure's count pushed). */
static int send_record(lua_State *L, prd_producer *p, const prd_spool_record *r,
                       lua_Integer stamp, prd_spooled *e)
{
    prd_spooling *sp = p->spool;
    prd_message m = {0};

    m.topic = sp->topic;
    m.key = r->key;
    m.key_len = r->key_len;
    m.value = r->value;
    m.value_len = r->value_len;
    m.partition = r->partition;
    m.timestamp = stamp;
    m.state = e;
    m.header_list = sp->send_hdrs;
    m.header_count = sp->send_count;
    m.spooled = 1;
    return p->tr->send(L, p, &m);
}

/* Whether the failure of n values on top says "not now": the
 * transport's full queue, or another refusal its error object calls
 * retriable (NATS: the connection closed for good, _CONNECTION_CLOSED).
 * The record then waits in the spool, for this feed or the next
 * producer. */
static int not_now(lua_State *L, int n)
{
    const char *name = n == 4 ? lua_tostring(L, -2) : NULL;
    int retriable;

    if (!name)
        return 0;
    if (strcmp(name, "_QUEUE_FULL") == 0)
        return 1;
    if (!lua_istable(L, -1))
        return 0;
    lua_getfield(L, -1, "retriable");
    retriable = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return retriable;
}

/* The transport refused the held record for good (the n values on top):
 * acked as failed. For produce's own record (seq own) the refusal stays
 * on the stack (returns n); any other is logged and counted. */
static int refused(lua_State *L, prd_producer *p, prd_spooled *e, uint64_t own, int n)
{
    char line[PRD_TEXT_MAX];
    prd_source *src = e->src;
    uint64_t seq = e->seq;

    src->held = 0;
    p->spool->send_failed++;
    prd_spool_ack(src->s, seq, PRD_SPOOL_FAILED);
    prd_seqtable_del(&src->entries, seq);
    prd_msgstate_release(L, e);
    p->queued--;
    if (seq == own && src == &p->spool->own)
        return n;
    p->failures++;
    snprintf(line, sizeof line, "spool: record %" PRIu64 " refused for good: %s", seq,
             lua_tostring(L, -n + 1));
    prd_host_log(L, "error", line);
    lua_pop(L, n);
    return 0;
}

/* Feeds src's records while the transport takes them: 0 when src has
 * none left to send, -1 when the transport is full (or out of memory),
 * or the count of produce's own refusal (refused). */
static int feed_source(lua_State *L, prd_producer *p, prd_source *src, uint64_t own)
{
    prd_spooling *sp = p->spool;
    prd_spooled *e;
    int n;

    if (!src->held && !src->rewind && prd_spool_cursor_at_end(src->s, &src->cur))
        return 0;                 /* nothing new: the common serve's case */
    while (src->held || read_next(src)) {
        e = prd_seqtable_get(&src->entries, src->rec.seq);
        if (!prepare(sp, src, &src->rec) || !(e = take_entry(sp, src, src->rec.seq, e)))
            return -1;            /* out of memory: the next feed tries again */
        if (!(n = send_record(L, p, &src->rec, src->rec.timestamp_ms, e))) {
            src->held = 0;
            continue;
        }
        if (not_now(L, n)) {
            e->inflight = 0;
            lua_pop(L, n);
            return -1;
        }
        if ((n = refused(L, p, e, own, n)))
            return n;
    }
    return 0;
}

/*
 * produce's record r (seq) to the transport from memory, when nothing
 * older waits in any spool (the cursor stands just before it): no read
 * back. Returns 1 when sent (the cursor moved past it), 0 when not (the
 * feeder reads it: older records wait, or the queue is full), -n for the
 * transport's final refusal (n values pushed).
 */
static int send_direct(lua_State *L, prd_producer *p, prd_spool_record *r, uint64_t seq,
                       prd_spooled *e, lua_Integer stamp)
{
    prd_spooling *sp = p->spool;
    prd_source *src = &sp->own;
    int n;

    if (sp->adopted || src->held || src->rewind ||
        !prd_spool_cursor_follow(src->s, &src->cur, seq, 0))
        return 0;
    r->seq = seq;
    memcpy(r->id, src->id, 16);
    for (n = 0; n < 8; n++)
        r->id[16 + n] = (unsigned char)(seq >> (8 * n));
    if (!prepare(sp, src, r) || !(e = take_entry(sp, src, seq, e)))
        return 0;
    if (!(n = send_record(L, p, r, stamp, e))) {
        prd_spool_cursor_follow(src->s, &src->cur, seq, 1);
        return 1;
    }
    if (not_now(L, n)) {
        e->inflight = 0;
        lua_pop(L, n);
        return 0;
    }
    return -refused(L, p, e, seq, n);
}

static void reap(lua_State *L, prd_spooling *sp);

/*
 * The feeder: sends records not acked and not in flight, adopted spools
 * first (older), each oldest first, while the transport takes them.
 * Returns the count of the refusal it left on the stack for produce's
 * record own, else 0.
 */
static int feed(lua_State *L, prd_producer *p, uint64_t own)
{
    prd_spooling *sp = p->spool;
    prd_source *src;
    int n = 0;

    if (!sp || p->closed || p->closing == PRD_PURGED)
        return 0;
    for (src = sp->adopted; src && n == 0; src = src->next)
        n = feed_source(L, p, src, own);
    if (n == 0)
        n = feed_source(L, p, &sp->own, own);
    if (sp->adopted)
        reap(L, sp);
    return n > 0 ? n : 0;
}

/* Serving's feed (queue.c): runs no Lua. */
void prd_spooling_feed(lua_State *L, prd_producer *p)
{
    feed(L, p, 0);
}

/* --- reports --- */

/*
 * Before a report is served (queue.c): a final one acks its record
 * (held: the serve's end writes the batch's acks, prd_spooling_flush)
 * and is served (1); a retriable one is kept from Lua (0), its record sent
 * again by the feeder. Runs no Lua.
 */
int prd_spooling_settle(prd_producer *p, const void *report)
{
    prd_spooled *e = p->tr->report_state(report);
    int outcome = p->tr->outcome(report);

    if (!e)
        return 1;
    e->inflight = 0;
    if (outcome == PRD_OUTCOME_RETRY || outcome == PRD_OUTCOME_RETRY_WRITTEN) {
        e->retried = 1;
        e->written |= outcome == PRD_OUTCOME_RETRY_WRITTEN;
        e->src->rewind = 1;
        return 0;
    }
    prd_spool_ack_lazy(e->src->s, e->seq, outcome == PRD_OUTCOME_DELIVERED ? PRD_SPOOL_DELIVERED
                                                                           : PRD_SPOOL_FAILED);
    prd_seqtable_del(&e->src->entries, e->seq);
    return 1;
}

/* After a served batch (queue.c): the acks its reports held, written
 * with one write() a segment (prd_spool_ack_flush). Runs no Lua. */
void prd_spooling_flush(prd_producer *p)
{
    prd_spooling *sp = p->spool;
    prd_source *src;

    if (!sp)
        return;
    for (src = sp->adopted; src; src = src->next)
        prd_spool_ack_flush(src->s);
    prd_spool_ack_flush(sp->own.s);
}

/* Sets the spool's fields into the report table on top (state: its
 * message's): replayed = true for a record of an earlier producer. */
void prd_spooling_report_fields(lua_State *L, prd_producer *p, const void *state)
{
    const prd_spooled *e = state;

    if (!p->spool || !e || !e->replayed)
        return;
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "replayed");
}

/* --- metrics, close --- */

static void set_u64(lua_State *L, const char *field, uint64_t n)
{
    lua_pushinteger(L, (lua_Integer)n);
    lua_setfield(L, -2, field);
}

/* Sets metrics().spool into the table on top, when there is a spool. */
void prd_spooling_push_metrics(lua_State *L, prd_producer *p)
{
    prd_spooling *sp = p->spool;
    prd_spool_metrics m;
    prd_source *src;
    uint64_t adopting = 0;

    if (!sp)
        return;
    for (src = sp->adopted; src; src = src->next)
        adopting++;
    prd_spool_metrics_get(sp->own.s, &m);
    lua_createtable(L, 0, 15);
    set_u64(L, "bytes", m.bytes);
    set_u64(L, "records", m.records);
    set_u64(L, "oldest_age_ms", (uint64_t)m.oldest_age_ms);
    set_u64(L, "replayed", sp->replayed);
    set_u64(L, "resent", sp->resent);
    set_u64(L, "resent_possibly_persisted", sp->resent_written);
    set_u64(L, "refused_full", m.refused_full);
    set_u64(L, "refused_io", m.refused_io);
    set_u64(L, "refused_send", sp->send_failed);
    set_u64(L, "cut", m.cut);
    set_u64(L, "damaged", m.damaged);
    set_u64(L, "fsync_errors", m.fsync_errors);
    set_u64(L, "segments", m.segments);
    set_u64(L, "adopted", sp->adopted_dirs);
    set_u64(L, "adopting", adopting);
    lua_setfield(L, -2, "spool");
}

/* Releases the states src still holds (waiting for a re-send, or in
 * flight when the transport closed), its buffers; closes its spool
 * (its records stay on disk). */
static void release_entry(void *e, void *L)
{
    prd_msgstate_release(L, e);
}

static void source_close(lua_State *L, prd_source *src)
{
    prd_seqtable_each(&src->entries, release_entry, L);
    prd_seqtable_free(&src->entries);
    prd_spool_cursor_free(&src->cur);
    prd_spool_close(src->s);
    free(src->dir);
}

/* After the transport closed (every report served or dropped): closes
 * the spools; records not acked stay for the next producer. Safe twice. */
void prd_spooling_close(lua_State *L, prd_producer *p)
{
    prd_spooling *sp = p->spool;
    prd_source *src;

    if (!sp)
        return;
    p->spool = NULL;
    while ((src = sp->adopted)) {
        sp->adopted = src->next;
        source_close(L, src);
        free(src);
    }
    source_close(L, &sp->own);
    prd_pool_free(&sp->pool);    /* every report was served or dropped */
    free(sp->hdrs);
    free(sp->send_hdrs);
    free(sp->topic);
    free(sp);
}

/* In a forked child: forgets the parent's spool without touching its
 * files (closing would write a footer into the parent's segment). */
void prd_spooling_forget(prd_producer *p)
{
    p->spool = NULL;
}

/* --- adoption (I17) --- */

/* Removes the files of an empty spool's dir (its lock still held), then
 * the dir; a dir holding anything else (damaged/) stays. */
static void remove_spool_dir(const char *dir)
{
    char path[PRD_TEXT_MAX];
    struct dirent *d;
    DIR *dh = opendir(dir);

    if (!dh)
        return;
    while ((d = readdir(dh))) {
        size_t len = strlen(d->d_name);

        if ((len > 4 && (strcmp(d->d_name + len - 4, ".seg") == 0 ||
                         strcmp(d->d_name + len - 4, ".ack") == 0)) ||
            strcmp(d->d_name, "SPOOL") == 0 || strcmp(d->d_name, "LOCK") == 0) {
            snprintf(path, sizeof path, "%s/%s", dir, d->d_name);
            unlink(path);
        }
    }
    closedir(dh);
}

/* Closes and removes the adopted spools that have nothing left. */
static void reap(lua_State *L, prd_spooling *sp)
{
    prd_source **at = &sp->adopted, *src;
    prd_spool_metrics m;

    while ((src = *at)) {
        prd_spool_metrics_get(src->s, &m);
        if (m.records || prd_seqtable_count(&src->entries) || src->held) {
            at = &src->next;
            continue;
        }
        *at = src->next;
        prd_spool_ack_flush(src->s);      /* before its files go */
        remove_spool_dir(src->dir);       /* under its lock */
        rmdir(src->dir);
        source_close(L, src);             /* writes to unlinked files */
        sp->adopted_dirs++;
        free(src);
    }
}

/*
 * p:spool_adopt(dir) (core/producer.c's method, the string dir
 * checked): opens dir's spool (its lock), feeds its records before the
 * producer's own, removes dir once empty (reap). Pushes true, or nil,
 * message, name, err; raises without a spool of p's own.
 */
int prd_spooling_adopt(lua_State *L, prd_producer *p, const char *dir)
{
    char err[PRD_TEXT_MAX];
    prd_source *src, **last;
    prd_spool_code rc;

    if (!p->spool)
        return luaL_error(L, "spool_adopt: the producer has no spool (option spool)");
    if (!(src = calloc(1, sizeof *src)) || !(src->dir = strdup(dir))) {
        free(src);
        return luaL_error(L, "spool_adopt: out of memory");
    }
    src->pool = &p->spool->pool;
    if ((rc = source_open(src, dir, NULL, err, sizeof err)) != PRD_SPOOL_OK) {
        prd_spool_cursor_free(&src->cur);
        free(src->dir);
        free(src);
        return prd_fail(L, ERR_SPOOL_BASE - (int)rc, prd_spool_code_name(rc), err, 0);
    }
    for (last = &p->spool->adopted; *last; last = &(*last)->next)
        ;
    *last = src;
    resume(L, p, src);
    feed(L, p, 0);
    lua_pushboolean(L, 1);
    return 1;
}
