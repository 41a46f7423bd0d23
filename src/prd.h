/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * prd.h: what the C files of the `producers.core` module share.
 *
 * Thread rule: a producer belongs to the lua_State that created it and is
 * only ever touched from the thread running that state. librdkafka's own
 * threads never call into Lua: delivery reports, logs and errors arrive as
 * events on the producer's main queue and are served by poll, flush,
 * produce and close, after librdkafka has returned control to us. Their
 * only touch on a producer is prd_queue_event: an atomic flag and a write
 * to event_fd's pipe.
 */
#ifndef PRD_H
#define PRD_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <lua.h>
#include <lauxlib.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#if LUA_VERSION_NUM < 503
#include "compat-5.3.h"
#endif

#define PRD_VERSION "0.1.0"

#define PRD_PRODUCER_T "producers.Producer"
#define PRD_MOCK_T "producers.MockCluster"
#define PRD_ERROR_T "producers.Error"

/*
 * What a message carries to its report, in its opaque:
 * - NULL: nothing;
 * - an odd value: its own callback's registry ref, shifted left by two,
 *   bit 1 set when the callback takes a report;
 * - else a prd_msgstate (malloc'd, so even): for a message whose value
 *   librdkafka does not copy, a Lua string kept alive until the report.
 * prd_opaque_release releases what it holds, once, after the report.
 */
typedef struct prd_msgstate {
    int callback;                /* registry ref, or LUA_NOREF */
    int takes_report;
    int value;                   /* registry ref of the value's string */
} prd_msgstate;

static inline void *prd_opaque(int ref, int takes_report)
{
    if (ref == LUA_NOREF)
        return NULL;
    return (void *)(((intptr_t)ref << 2) | (takes_report ? 2 : 0) | 1);
}

static inline int prd_opaque_packed(const void *opaque)
{
    return ((intptr_t)opaque & 1) != 0;
}

static inline int prd_opaque_ref(const void *opaque)
{
    if (!opaque)
        return LUA_NOREF;
    if (prd_opaque_packed(opaque))
        return (int)((intptr_t)opaque >> 2);
    return ((const prd_msgstate *)opaque)->callback;
}

static inline int prd_opaque_takes_report(const void *opaque)
{
    if (!opaque)
        return 0;
    if (prd_opaque_packed(opaque))
        return ((intptr_t)opaque & 2) != 0;
    return ((const prd_msgstate *)opaque)->takes_report;
}

void *prd_opaque_keep(int ref, int takes_report, int value);
void prd_opaque_release(lua_State *L, void *opaque);

/* Log levels, lowest first; the logger function receives their names. */
enum prd_level { PRD_DEBUG = 1, PRD_INFO, PRD_WARN, PRD_ERROR };

#define PRD_TOPIC_CACHE 8

typedef struct prd_topic {
    char *name;                  /* malloc'd copy, NULL when the slot is free */
    rd_kafka_topic_t *rkt;
} prd_topic;

/*
 * Delivery latency of the reports served in a window (stats.c), in a
 * log-scale histogram of microseconds: values below 16 exact, then 8
 * buckets a power of two (a bucket within 12.5%), up to 2^40 us. A
 * report costs prd_latency_record: no clock, no allocation.
 */
#define PRD_LATENCY_BUCKETS 304

typedef struct prd_latency {
    int64_t start_ms;            /* the current window's start (prd_now_ms) */
    int interval_ms;             /* the windows' length */
    uint64_t count, sum_us;
    int64_t max_us;
    uint64_t buckets[PRD_LATENCY_BUCKETS];
    uint64_t last_count;         /* the last completed window: */
    double last_avg_us, last_p99_us;
} prd_latency;

static inline void prd_latency_record(prd_latency *l, int64_t us)
{
    int i = (int)us;

    if (us < 0)                  /* librdkafka does not know */
        return;
    if (us >= 16) {
        int e;

        if (us >= (int64_t)1 << 40)
            us = ((int64_t)1 << 40) - 1;
        e = 63 - __builtin_clzll((unsigned long long)us);
        i = 16 + (e - 4) * 8 + (int)((us >> (e - 3)) & 7);
    }
    l->buckets[i]++;
    l->count++;
    l->sum_us += (uint64_t)us;
    if (us > l->max_us)
        l->max_us = us;
}

/* signal.c: what a waiting call compares with to see that it was
 * interrupted: the interpreter's hook (lua.c's Ctrl-C sets one) and the
 * count of trapped signals caught. */
typedef struct prd_watch {
    lua_State *main;             /* the main thread (Lua 5.2+; else NULL): in
                                    PUC Lua hooks are per thread, and lua.c
                                    sets its hook on the main one */
    lua_Hook hook, main_hook;
    int mask, count, main_mask;
    long caught;
} prd_watch;

#define PRD_INTR_HOOK (-1)       /* prd_watch_check: the hook changed */
#define PRD_WATCH_SLICE_MS 100   /* waits are checked at least this often */

void prd_watch_start(lua_State *L, prd_watch *w);
void prd_watch_hook(lua_State *L, prd_watch *w);
int prd_watch_check(lua_State *L, const prd_watch *w);
int prd_interrupted_fail(lua_State *L, int why, long left);
void prd_signal_open(lua_State *L);

/* The longest text (a log line, an error) handed to Lua, with its NUL. */
#define PRD_TEXT_MAX 1024

typedef struct prd_producer {
    const void *magic;           /* marks a producer (check_producer) */
    rd_kafka_t *rk;              /* NULL once closed */
    rd_kafka_queue_t *queue;     /* main queue: delivery reports, logs, errors */
    rd_kafka_event_t *pending;   /* report batch being served; resumed after
                                    a callback raised */
    int on_delivery;             /* registry ref: producer-wide callback */
    int on_delivery_report;      /* it takes a report (prd_takes_report) */
    int logger;                  /* registry ref: function(level, message) */
    int on_error;                /* registry ref: function(err), or LUA_NOREF:
                                    client errors are logged */
    int on_token;                /* registry ref: on_oauthbearer_token, or
                                    LUA_NOREF (oauth.c) */
    int token_failed;            /* a token refresh failed: librdkafka's
                                    error that repeats it is dropped */
    int log_level;               /* lowest enum prd_level passed to logger */
    int gc_flush_ms;             /* how long __gc waits for deliveries */
    long failures;               /* failed deliveries reported so far */
    long delivered;              /* successful deliveries reported so far */
    long outstanding;            /* produced, report not yet served */
    int only_errors;             /* delivery.report.only.error=true: Lua
                                    sees failures only (librdkafka still
                                    reports every message, so each
                                    message's state is released) */
    int busy;                    /* > 0 while Lua called by one of its
                                    methods runs (callbacks, loggers, an
                                    encoder): close is refused, and
                                    nested calls serve no reports */
    int closing;                 /* PRD_CLOSING, PRD_PURGED: in teardown */
    int encoder;                 /* registry ref: json = function, or
                                    LUA_NOREF */
    struct prd_secrets *secrets; /* values of secret properties, hidden
                                    from every string handed to Lua */
    int wake[2];                 /* pipe made by event_fd(), or -1, -1 */
    atomic_int wake_fd;          /* wake[1] for prd_queue_event, or -1 */
    atomic_int ready;            /* events may be waiting: set by
                                    prd_queue_event, cleared by serving */
    struct prd_buf *json;        /* the C encoder's buffer (the Lua state's,
                                    kept by the methods' upvalue), or NULL
                                    for json = "lua-cjson" */
    rd_kafka_resp_err_t last_error;     /* of the last error event, until a
                                           delivery succeeds */
    char last_error_text[256];
    int serve_on_produce;        /* produce serves reports (default) */
    int max_msg_bytes;           /* message.max.bytes, read at creation */
    int generation;              /* prd_fork_generation when made */
    prd_topic topics[PRD_TOPIC_CACHE];  /* handles of recent topics */
    unsigned next_evict;         /* round robin over topics[] when full */
    char name[128];              /* rd_kafka_name(), kept for tostring */
    /* metrics and statistics (stats.c) */
    int on_stats;                /* registry ref: function(stats), or LUA_NOREF */
    int stats_interval_ms;       /* statistics.interval.ms; 0: no statistics */
    uint64_t produced_bytes;     /* keys + values: queued, */
    uint64_t delivered_bytes;    /* delivered, */
    uint64_t failed_bytes;       /* failed */
    struct prd_brokers *brokers; /* of the last statistics, or NULL */
    prd_latency latency;         /* of the reports served */
    /* interrupts (signal.c) */
    prd_watch watch;             /* what the waiting call started with */
    int watching;                /* a flush or close holds watch: serving
                                    does not take it anew */
    int interrupted;             /* the last wait was cut short: 0, a
                                    trapped signal's number or
                                    PRD_INTR_HOOK; __gc then waits no more */
    /* what abort needs to know of the transaction and the last commit
     * (txn.c) */
    long txn_delivered;          /* delivered when the transaction began */
    long txn_done;               /* delivered + failures then */
    int64_t txn_committed_at;    /* prd_now_ms() when a commit last returned
                                    true; 0 before the first */
} prd_producer;

enum prd_closing { PRD_OPEN, PRD_CLOSING, PRD_PURGED };

/* config.c: a Lua table of librdkafka properties into a new conf.
 * Raises, naming the property, on a bad key or value. The values of
 * secret properties are kept in *secrets (freed by prd_secrets_free) so
 * that prd_redact can hide them. */
typedef struct prd_secrets prd_secrets;
rd_kafka_conf_t *prd_conf_from_table(lua_State *L, int idx, prd_secrets **secrets);
void prd_secrets_free(prd_secrets *secrets);
void prd_redact(const prd_secrets *secrets, char *text);   /* text: PRD_TEXT_MAX bytes */
int prd_secrets_token(prd_secrets **secrets, const char *token, int in_use);

/* json.c: message values into bytes. */
typedef struct prd_buf prd_buf;          /* the encoder's state (json.c) */

void prd_json_open(lua_State *L);           /* pushes the JSON state */
prd_buf *prd_json_buffer(lua_State *L, int state_idx, int json_idx);
const char *prd_encode_value(lua_State *L, int idx, int state_idx, prd_buf *b,
                             size_t *len);

/* report.c: serving the main queue. */
int prd_serve(lua_State *L, prd_producer *p, int timeout_ms, int *served);
int prd_serve_max(lua_State *L, prd_producer *p, int timeout_ms, int *served, int max);
void prd_queue_event(rd_kafka_t *rk, void *opaque);
void prd_wake_if_waiting(prd_producer *p);
void prd_clear_wake(prd_producer *p);
long prd_waiting(prd_producer *p);
int prd_take_reports(lua_State *L, prd_producer *p, int max);
void prd_report_open(lua_State *L);
int prd_logf(lua_State *L, prd_producer *p, int level, const char *fmt, ...);
void prd_push_function(lua_State *L, const void *key, lua_CFunction f);
int prd_call_busy(lua_State *L, prd_producer *p, const void *key, lua_CFunction f,
                  void *ud);
void prd_drain_silently(prd_producer *p, lua_State *L, int timeout_ms);
int prd_report_error(lua_State *L, prd_producer *p, rd_kafka_resp_err_t err,
                     char *text, int fatal);

/* oauth.c: SASL/OAUTHBEARER tokens from the on_oauthbearer_token callback. */
int prd_oauth_refresh(lua_State *L, prd_producer *p, rd_kafka_event_t *ev);
int prd_oauth_echo(const prd_producer *p, rd_kafka_event_t *ev);
void prd_oauth_open(lua_State *L);

/* stats.c: statistics.interval.ms's events, on_stats and metrics(). */
int prd_stats_interval_ms(rd_kafka_conf_t *conf);
int prd_stats_start(lua_State *L, prd_producer *p);
int prd_stats_serve(lua_State *L, prd_producer *p, rd_kafka_event_t *ev);
void prd_latency_tick(prd_latency *l, int64_t now_ms);
void prd_stats_free(prd_producer *p);
void prd_stats_open(lua_State *L);
int prd_producer_metrics(lua_State *L);

/* json_decode.c: JSON text into a Lua value (pushed; or a message, 0). */
int prd_json_decode(lua_State *L, const char *s, size_t len);
int prd_json_decode_fn(lua_State *L);

/* log.c: the host's side (producers_set_log) and the shared __gc deadline. */
void prd_log_host(lua_State *L, const char *level, const char *line);
int prd_log_write(lua_State *L);
int prd_gc_wait_ms(lua_State *L, int timeout_ms);
void prd_gc_done(lua_State *L);

/* error.c: the error object's flags (retriable is also set for the
 * errors error.c knows to be retriable). */
enum { PRD_E_RETRIABLE = 1, PRD_E_FATAL = 2, PRD_E_TXN_ABORT = 4 };
void prd_push_error(lua_State *L, rd_kafka_resp_err_t err, const char *message, int flags);
void prd_push_rd_error(lua_State *L, const rd_kafka_error_t *e, const char *message);
int prd_fail(lua_State *L, rd_kafka_resp_err_t err);
int prd_fail_text(lua_State *L, rd_kafka_resp_err_t err, const char *text);
int prd_fail_fatal(lua_State *L, rd_kafka_t *rk);
void prd_error_open(lua_State *L);
int prd_check_callable(lua_State *L, int idx);
int prd_takes_report(lua_State *L, int idx);
int prd_check_timeout_ms(lua_State *L, int idx, int default_ms);
int64_t prd_now_ms(void);
int prd_error_string(lua_State *L);
rd_kafka_resp_err_t prd_check_err_name(lua_State *L, int idx);

/* producer.c and mock.c: metatables and constructors. */
prd_producer *prd_check_producer(lua_State *L);
void prd_producer_open(lua_State *L, int json_idx);
int prd_producer_new(lua_State *L);
int prd_check_config(lua_State *L);
void prd_mock_open(lua_State *L);
int prd_test_fatal_error(lua_State *L);
void prd_check_not_busy(lua_State *L, prd_producer *p, const char *method);
long prd_drain(lua_State *L, prd_producer *p, int timeout_ms);

/* txn.c: the transactional methods, registered with the producer's. */
extern const luaL_Reg prd_txn_methods[];
void prd_txn_close(prd_producer *p, int timeout_ms);

#endif
