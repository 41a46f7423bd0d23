/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * handle.h: the Kafka producer's state (the Producer userdata): core's
 * prd_producer first, then librdkafka's handle and what the Kafka
 * transport keeps. Every file of src/kafka/ includes it; librdkafka's
 * threads touch a producer only through prd_wake_signal (report.c's
 * prd_report_wake).
 */
#ifndef PRD_KAFKA_HANDLE_H
#define PRD_KAFKA_HANDLE_H

#include <librdkafka/rdkafka.h>
#include <string.h>

#include "core/base.h"
#include "core/producer.h"

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
    int64_t start_ms;            /* the current window's start (prd_clock_now_ms) */
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

typedef struct prd_kafka {
    prd_producer base;           /* first: core's part (core/producer.h) */
    rd_kafka_t *rk;              /* NULL once closed */
    rd_kafka_queue_t *queue;     /* main queue: delivery reports, logs, errors */
    int on_delivery;             /* registry ref: producer-wide callback */
    int on_delivery_report;      /* it takes a report (prd_arg_takes_report) */
    int on_error;                /* registry ref: function(err), or LUA_NOREF:
                                    client errors are logged */
    int on_token;                /* registry ref: on_oauthbearer_token, or
                                    LUA_NOREF (oauth.c) */
    int token_failed;            /* a token refresh failed: librdkafka's
                                    error that repeats it is dropped */
    int only_errors;             /* delivery.report.only.error=true: Lua
                                    sees failures only (librdkafka still
                                    reports every message, so each
                                    message's state is released) */
    struct prd_secrets *secrets; /* values of secret properties, hidden
                                    from every string handed to Lua */
    rd_kafka_resp_err_t last_error;     /* of the last error event, until a
                                           delivery succeeds */
    char last_error_text[256];
    int max_msg_bytes;           /* message.max.bytes, read at creation */
    prd_topic topics[PRD_TOPIC_CACHE];  /* handles of recent topics */
    unsigned next_evict;         /* round robin over topics[] when full */
    /* metrics and statistics (stats.c) */
    int on_stats;                /* registry ref: function(stats), or LUA_NOREF */
    int stats_interval_ms;       /* statistics.interval.ms; 0: no statistics */
    uint64_t produced_bytes;     /* keys + values: queued, */
    uint64_t delivered_bytes;    /* delivered, */
    uint64_t failed_bytes;       /* failed */
    struct prd_brokers *brokers; /* of the last statistics, or NULL */
    prd_latency latency;         /* of the reports served */
    /* what abort needs to know of the transaction and the last commit
     * (txn.c) */
    long txn_delivered;          /* delivered when the transaction began */
    long txn_done;               /* delivered + failures then */
    int64_t txn_committed_at;    /* prd_clock_now_ms() when a commit last returned
                                    true; 0 before the first */
} prd_kafka;

/* The open Kafka producer at 1 (raises as prd_producer_check, and on a
 * producer of another transport: a Kafka method taken from its table and
 * called on a NATS producer). */
static inline prd_kafka *prd_kafka_check(lua_State *L)
{
    prd_producer *p = prd_producer_check(L);

    if (p->tr->size != sizeof(prd_kafka) || strcmp(p->tr->kind, "producers.kafka") != 0)
        luaL_argerror(L, 1, "expected a Kafka producer");
    return (prd_kafka *)p;
}

#endif
