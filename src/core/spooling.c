/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * spooling.c: the durable spool (src/spool/, docs/design/spool.md) on the
 * transport seam (issue #22; the promise and its limits: docs/spool.md).
 *
 * produce builds the record in C and appends it (one write: I1, I2),
 * then runs the feeder, which hands the transport the records not acked
 * and not in flight, oldest seq first (I10, I14), while the transport
 * takes them: a full queue leaves the record read (held) for the next
 * feed, so memory holds one record, never the spool. The feeder runs
 * inside serving (queue.c), produce and open, on the Lua thread, and runs
 * no Lua.
 *
 * Each message the transport holds carries a prd_spooled as its state: a
 * prd_msgstate (its callback, so report.c and queue.c serve it as any
 * other) followed by its seq. A final report acks the record (I5) and is
 * served; a retriable one (timed out, purged at close) is not served
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
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/host.h"
#include "core/log.h"
#include "core/msgstate.h"
#include "core/spooling.h"
#include "spool/spool.h"

#define ID_HEADER "producers-id"
#define ID_MAX 64                 /* 32 hex digits, '-', 20 digits */
#define ERR_SPOOL_BASE (-1000)    /* error codes: -1000 - prd_spool_code */

/* A spooled message's state: msgstate.c releases and frees it. */
typedef struct prd_spooled {
    prd_msgstate base;           /* first: the callback, for its report */
    uint64_t seq;
    int inflight;                /* handed to the transport, no report yet */
    int replayed;                /* written by an earlier producer */
    int counted;                 /* counted in replayed */
    int retried;                 /* a retriable report came: resent next */
    int written;                 /* ... and the broker may have written it */
} prd_spooled;

typedef struct prd_spooling {
    prd_spool *s;
    prd_spool_cursor cur;
    prd_spool_record rec;        /* read and not taken yet (held) */
    int held;
    int rewind;                  /* a retriable report: read again from the oldest */
    uint64_t own_first;          /* first seq this producer appended */
    prd_spooled **slots;         /* seq -> entry, open addressing */
    size_t cap, count;
    prd_spool_header *hdrs;      /* produce's headers, as C bytes */
    size_t hcap, hcount;
    int hfailed;
    prd_header *send_hdrs;       /* a record's headers and the id, for send */
    size_t scap;
    char *topic;                 /* the record's topic, NUL-terminated */
    size_t tcap;
    char id[ID_MAX];
    uint64_t replayed, resent, resent_written, send_failed;
} prd_spooling;

/* --- entries by seq --- */

static size_t slot_of(const prd_spooling *sp, uint64_t seq)
{
    return (size_t)((seq * 0x9E3779B97F4A7C15ull) >> 32) & (sp->cap - 1);
}

static prd_spooled *map_get(const prd_spooling *sp, uint64_t seq)
{
    size_t i;

    if (!sp->cap)
        return NULL;
    for (i = slot_of(sp, seq); sp->slots[i]; i = (i + 1) & (sp->cap - 1))
        if (sp->slots[i]->seq == seq)
            return sp->slots[i];
    return NULL;
}

static void map_insert(prd_spooling *sp, prd_spooled *e)
{
    size_t i = slot_of(sp, e->seq);

    while (sp->slots[i])
        i = (i + 1) & (sp->cap - 1);
    sp->slots[i] = e;
    sp->count++;
}

/* Doubles the table: 0, or -1 out of memory. */
static int map_grow(prd_spooling *sp)
{
    prd_spooled **old = sp->slots;
    size_t old_cap = sp->cap, i;

    sp->cap = old_cap ? old_cap * 2 : 64;
    if (!(sp->slots = calloc(sp->cap, sizeof *sp->slots))) {
        sp->slots = old;
        sp->cap = old_cap;
        return -1;
    }
    sp->count = 0;
    for (i = 0; i < old_cap; i++)
        if (old[i])
            map_insert(sp, old[i]);
    free(old);
    return 0;
}

static int map_put(prd_spooling *sp, prd_spooled *e)
{
    if ((sp->count + 1) * 2 > sp->cap && map_grow(sp) != 0)
        return -1;
    map_insert(sp, e);
    return 0;
}

/* Whether slot k, home of an entry, lies cyclically in (i, j]. */
static int between(size_t i, size_t k, size_t j)
{
    return i <= j ? (i < k && k <= j) : (i < k || k <= j);
}

/* Removes seq's entry (backward shift: no tombstones). */
static void map_del(prd_spooling *sp, uint64_t seq)
{
    size_t mask = sp->cap - 1, i, j;

    if (!sp->cap)
        return;
    for (i = slot_of(sp, seq); sp->slots[i] && sp->slots[i]->seq != seq; i = (i + 1) & mask)
        ;
    if (!sp->slots[i])
        return;
    sp->slots[i] = NULL;
    sp->count--;
    for (j = (i + 1) & mask; sp->slots[j]; j = (j + 1) & mask)
        if (!between(i, slot_of(sp, sp->slots[j]->seq), j)) {
            sp->slots[i] = sp->slots[j];
            sp->slots[j] = NULL;
            i = j;
        }
}

static prd_spooled *entry_new(prd_spooling *sp, uint64_t seq, int ref, int takes_report)
{
    prd_spooled *e = calloc(1, sizeof *e);

    if (!e)
        return NULL;
    e->base.callback = ref;
    e->base.takes_report = takes_report;
    e->base.value = LUA_NOREF;
    e->seq = seq;
    e->replayed = seq < sp->own_first;
    if (map_put(sp, e) != 0) {
        free(e);
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

/* Raises a spool's failure as an error object: name SPOOL_LOCKED, ... */
static int raise_code(lua_State *L, prd_spool_code rc, const char *message)
{
    prd_error_push(L, ERR_SPOOL_BASE - (int)rc, prd_spool_code_name(rc), message, 0);
    return lua_error(L);
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

/* A new spooling on the spool of dir: NULL with the error raised. */
static prd_spooling *open_dir(lua_State *L, const char *dir, const prd_spool_options *o)
{
    char err[PRD_TEXT_MAX];
    prd_spooling *sp = calloc(1, sizeof *sp);
    prd_spool_code rc;

    if (!sp)
        luaL_error(L, "spool %s: out of memory", dir);
    prd_spool_cursor_init(&sp->cur);
    sp->own_first = UINT64_MAX;
    if ((rc = prd_spool_open(dir, o, &sp->s, err, sizeof err)) != PRD_SPOOL_OK) {
        prd_spool_cursor_free(&sp->cur);
        free(sp);
        raise_code(L, rc, err);
    }
    return sp;
}

/*
 * Opens the spool opts.spool asks for (the table at opts, built by
 * kafka.lua), before the transport opens. Raises an error object when
 * the spool cannot be opened: name SPOOL_LOCKED (another process holds
 * it: its pid), SPOOL_IO (the errno's text), SPOOL_VERSION.
 */
void prd_spooling_open(lua_State *L, prd_producer *p, int opts)
{
    prd_spool_options o;
    const char *dir;

    lua_getfield(L, opts, "spool");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    dir = read_options(L, lua_gettop(L), &o);
    p->spool = open_dir(L, dir, &o);
    lua_pop(L, 2);
}

static int feed(lua_State *L, prd_producer *p, uint64_t own);

/* Once the transport is open: counts what the spool holds as queued,
 * logs the start-up line when it resumes a spool (I13), starts the
 * replay. */
void prd_spooling_start(lua_State *L, prd_producer *p)
{
    prd_spooling *sp = p->spool;
    prd_spool_metrics m;
    char line[PRD_TEXT_MAX];

    if (!sp)
        return;
    prd_spool_metrics_get(sp->s, &m);
    p->queued += (long)m.records;
    if (m.records || m.cut || m.damaged) {
        prd_spool_summary(sp->s, line, sizeof line);
        if (prd_log_f(L, &p->log, &p->busy, PRD_INFO, "%s", line) != LUA_OK)
            lua_pop(L, 1);
    }
    feed(L, p, 0);
}

/* --- produce --- */

static void collect_header(lua_State *L, int name_idx, int value_idx, void *ud)
{
    prd_spooling *sp = ud;
    prd_spool_header *h;

    if (sp->hcount == sp->hcap) {
        size_t cap = sp->hcap ? sp->hcap * 2 : 8;

        if (!(h = realloc(sp->hdrs, cap * sizeof *h))) {
            sp->hfailed = 1;
            return;
        }
        sp->hdrs = h;
        sp->hcap = cap;
    }
    h = &sp->hdrs[sp->hcount++];
    h->name = lua_tolstring(L, name_idx, &h->name_len);
    h->value = lua_tolstring(L, value_idx, &h->value_len);
}

/* m as a record; its headers (the table at m->headers) in sp->hdrs. */
static void record_of(lua_State *L, prd_spooling *sp, const prd_message *m,
                      prd_each_header_fn each, prd_spool_record *r)
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

/* Keeps seq's callback (ref) for its report; without memory for it,
 * the report goes to the producer's on_delivery. */
static void keep_callback(lua_State *L, prd_spooling *sp, uint64_t seq, int ref,
                          int takes_report)
{
    if (ref != LUA_NOREF && !entry_new(sp, seq, ref, takes_report))
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
}

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
    prd_spooling *sp = p->spool;
    prd_spool_record r = {0};
    prd_spool_code rc;
    uint64_t seq;

    if (p->closed || !(sp = p->spool)) {      /* a finalizer ran at the ref */
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        return luaL_error(L, "producer is closed");
    }
    record_of(L, sp, m, each, &r);
    rc = sp->hfailed ? PRD_SPOOL_IO : prd_spool_append(sp->s, &r, &seq);
    if (rc != PRD_SPOOL_OK) {
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        return prd_fail(L, ERR_SPOOL_BASE - (int)rc, prd_spool_code_name(rc),
                        sp->hfailed ? "spool: out of memory" : prd_spool_error(sp->s), 0);
    }
    if (sp->own_first == UINT64_MAX)
        sp->own_first = seq;
    p->queued++;
    keep_callback(L, sp, seq, ref, m->takes_report);
    if ((n = feed(L, p, seq)))
        return n;
    if (p->serve_on_produce)
        serve(L, p);
    lua_pushboolean(L, 1);
    return 1;
}

/* --- the feeder --- */

/* Reads the next record to send into sp->rec (held): 1, or 0 when none. */
static int read_next(prd_spooling *sp)
{
    prd_spooled *e;

    for (;;) {
        if (sp->rewind) {
            prd_spool_rewind(&sp->cur);
            sp->rewind = 0;
        }
        if (prd_spool_next(sp->s, &sp->cur, &sp->rec) != PRD_SPOOL_OK)
            return 0;
        if (!(e = map_get(sp, sp->rec.seq)) || !e->inflight)
            return sp->held = 1;
    }
}

/* The held record's entry, in flight from now: counted replayed or
 * resent. NULL out of memory. */
static prd_spooled *take_entry(prd_spooling *sp)
{
    prd_spooled *e = map_get(sp, sp->rec.seq);

    if (!e && !(e = entry_new(sp, sp->rec.seq, LUA_NOREF, 0)))
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

/* The held record's topic (NUL-terminated) and headers, the id last. */
static int prepare(prd_spooling *sp)
{
    const prd_spool_record *r = &sp->rec;
    size_t i, n = r->header_count;
    char *o = sp->id;

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
    for (i = 0; i < 16; i++)
        o += sprintf(o, "%02x", r->id[i]);
    sprintf(o, "-%" PRIu64, r->seq);
    sp->send_hdrs[n].name = ID_HEADER;
    sp->send_hdrs[n].name_len = sizeof ID_HEADER - 1;
    sp->send_hdrs[n].value = sp->id;
    sp->send_hdrs[n].value_len = strlen(sp->id);
    return 1;
}

/* Hands the held record to the transport with e as its state: the
 * transport's send's result (0, or the failure's count pushed). */
static int send_held(lua_State *L, prd_producer *p, prd_spooling *sp, prd_spooled *e)
{
    const prd_spool_record *r = &sp->rec;
    prd_message m = {0};

    m.topic = sp->topic;
    m.key = r->key;
    m.key_len = r->key_len;
    m.value = r->value;
    m.value_len = r->value_len;
    m.partition = r->partition;
    m.timestamp = r->timestamp_ms;
    m.state = e;
    m.header_list = sp->send_hdrs;
    m.header_count = r->header_count + 1;
    return p->tr->send(L, p, &m);
}

/* Whether the failure of n values on top is the transport's full queue. */
static int queue_full(lua_State *L, int n)
{
    const char *name = n == 4 ? lua_tostring(L, -2) : NULL;

    return name && strcmp(name, "_QUEUE_FULL") == 0;
}

/* The transport refused the held record for good (the n values on top):
 * acked as failed. For produce's own record (seq own) the refusal stays
 * on the stack (returns n); any other is logged and counted. */
static int refused(lua_State *L, prd_producer *p, prd_spooling *sp, prd_spooled *e,
                   uint64_t own, int n)
{
    char line[PRD_TEXT_MAX];
    uint64_t seq = e->seq;

    sp->held = 0;
    sp->send_failed++;
    prd_spool_ack(sp->s, seq, PRD_SPOOL_FAILED);
    map_del(sp, seq);
    prd_msgstate_release(L, e);
    p->queued--;
    if (seq == own)
        return n;
    p->failures++;
    snprintf(line, sizeof line, "spool: record %" PRIu64 " refused for good: %s", seq,
             lua_tostring(L, -n + 1));
    prd_host_log(L, "error", line);
    lua_pop(L, n);
    return 0;
}

/*
 * The feeder: sends records not acked and not in flight, oldest first,
 * while the transport takes them. Returns the count of the refusal it
 * left on the stack for produce's record own, else 0.
 */
static int feed(lua_State *L, prd_producer *p, uint64_t own)
{
    prd_spooling *sp = p->spool;
    prd_spooled *e;
    int n;

    if (!sp || p->closed || p->closing == PRD_PURGED)
        return 0;
    while (sp->held || read_next(sp)) {
        if (!prepare(sp) || !(e = take_entry(sp)))
            return 0;             /* out of memory: the next feed tries again */
        if (!(n = send_held(L, p, sp, e))) {
            sp->held = 0;
            continue;
        }
        if (queue_full(L, n)) {
            e->inflight = 0;
            lua_pop(L, n);
            return 0;
        }
        if ((n = refused(L, p, sp, e, own, n)))
            return n;
    }
    return 0;
}

/* Serving's feed (queue.c): runs no Lua. */
void prd_spooling_feed(lua_State *L, prd_producer *p)
{
    feed(L, p, 0);
}

/* --- reports --- */

/*
 * Before a report is served (queue.c): a final one acks its record and
 * is served (1); a retriable one is kept from Lua (0), its record sent
 * again by the feeder. Runs no Lua.
 */
int prd_spooling_settle(prd_producer *p, const void *report)
{
    prd_spooling *sp = p->spool;
    prd_spooled *e = p->tr->report_state(report);
    int outcome = p->tr->outcome(report);

    if (!e)
        return 1;
    e->inflight = 0;
    if (outcome == PRD_OUTCOME_RETRY || outcome == PRD_OUTCOME_RETRY_WRITTEN) {
        e->retried = 1;
        e->written |= outcome == PRD_OUTCOME_RETRY_WRITTEN;
        sp->rewind = 1;
        return 0;
    }
    prd_spool_ack(sp->s, e->seq, outcome == PRD_OUTCOME_DELIVERED ? PRD_SPOOL_DELIVERED
                                                                  : PRD_SPOOL_FAILED);
    map_del(sp, e->seq);
    return 1;
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

    if (!sp)
        return;
    prd_spool_metrics_get(sp->s, &m);
    lua_createtable(L, 0, 12);
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
    lua_setfield(L, -2, "spool");
}

/* Frees sp: the states it still holds (waiting for a re-send), its
 * buffers; the spool closed (its records stay on disk). */
static void free_spooling(lua_State *L, prd_spooling *sp)
{
    size_t i;

    for (i = 0; i < sp->cap; i++)
        if (sp->slots[i])
            prd_msgstate_release(L, sp->slots[i]);
    free(sp->slots);
    free(sp->hdrs);
    free(sp->send_hdrs);
    free(sp->topic);
    prd_spool_cursor_free(&sp->cur);
    prd_spool_close(sp->s);
    free(sp);
}

/* After the transport closed (every report served or dropped): closes
 * the spool; records not acked stay for the next producer. Safe twice. */
void prd_spooling_close(lua_State *L, prd_producer *p)
{
    prd_spooling *sp = p->spool;

    if (!sp)
        return;
    p->spool = NULL;
    free_spooling(L, sp);
}

/* In a forked child: forgets the parent's spool without touching its
 * files (closing would write a footer into the parent's segment). */
void prd_spooling_forget(prd_producer *p)
{
    p->spool = NULL;
}

/***
 * Adopts the spool of another directory (nginx: a worker that is gone,
 * I17): not yet.
 * @function spool_adopt
 */
int prd_spooling_adopt(lua_State *L)
{
    return luaL_error(L, "spool_adopt: not implemented yet");
}
