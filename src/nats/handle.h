/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * handle.h: the NATS producer's state (the NatsProducer userdata): core's
 * prd_producer first, then nats.c's connection and JetStream context, and
 * the queue that nats.c's threads fill with reports and events. Every
 * file of src/nats/ includes it. nats.c's threads touch a producer only
 * under p->lock (the queue, the map of messages in flight) and through
 * prd_wake_signal.
 */
#ifndef PRD_NATS_HANDLE_H
#define PRD_NATS_HANDLE_H

#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>

#include "core/base.h"
#include "core/pool.h"
#include "core/producer.h"

/* The header the key travels in (NATS messages have no key). */
#define PRD_NATS_KEY_HEADER "Producers-Key"

/* A message in flight, then its report: made by send, found again by the
 * ack handler (by the natsMsg's address), queued, served, freed. */
typedef struct prd_nats_report {
    struct prd_nats_report *next;    /* in the queue, or in a map bucket */
    natsMsg *msg;                    /* the message published (its subject,
                                        data, headers): ours once acked */
    void *state;                     /* the message's state (msgstate.h) */
    int64_t sent_us;                 /* clock at send, for latency */
    int64_t done_us;                 /* clock at the ack or failure */
    int code;                        /* 0: acked; else the error's code */
    const char *name;                /* the error's name (static), or NULL */
    char *text;                      /* the error's message (malloc'd) */
    int retriable, maybe_stored;     /* failed, yet perhaps stored */
    char *stream;                    /* of the ack: stream_buf, or malloc'd
                                        when longer */
    uint64_t sequence;
    int duplicate;
    size_t bytes;                    /* the key's and value's, for metrics */
    char stream_buf[40];             /* no malloc for a usual stream name */
} prd_nats_report;

/* Reports kept for reuse on the Lua thread (send takes, serving gives):
 * no malloc a message once the producer runs at its pace. At most
 * max_pending of them (the acks in flight), and this. */
#define PRD_NATS_POOL_MAX 65536

/* Something else nats.c said: a disconnect, a reconnect, an error. */
typedef struct prd_nats_event {
    struct prd_nats_event *next;
    int level;                       /* enum prd_log_level */
    int code;                        /* an error for on_error, or 0: a log line */
    const char *name;
    char text[256];
} prd_nats_event;

/* A batch of reports being served (p->base.pending). */
typedef struct prd_nats_batch {
    prd_nats_report *head;           /* not yet served */
    prd_nats_report *last;           /* served last, freed with the next */
} prd_nats_batch;

/* A subject the server refused a publish to (a Permissions Violation,
 * which comes to the error handler, not to the message): its publishes
 * that time out failed for good (report.c). The last few are kept. */
#define PRD_NATS_DENIALS 8
#define PRD_NATS_SUBJECT_MAX 256
typedef struct prd_nats_denial {
    char subject[PRD_NATS_SUBJECT_MAX];  /* "" when unused */
    int64_t at_us;                   /* the last refusal (prd_nats_now_us) */
} prd_nats_denial;

typedef struct prd_nats {
    prd_producer base;               /* first: core's part */
    natsConnection *nc;              /* NULL once closed */
    jsCtx *js;
    int64_t ack_timeout_ms;          /* jsPubOptions.MaxWait */
    int on_delivery;                 /* registry ref, or LUA_NOREF */
    int on_delivery_report;          /* it takes a report */
    int on_error;                    /* registry ref, or LUA_NOREF */
    /* shared with nats.c's threads, under lock */
    pthread_mutex_t lock;
    pthread_cond_t cond;             /* the queue got something */
    int locks_made;                  /* lock and cond exist (release frees) */
    prd_nats_report *head, *tail;    /* reports waiting */
    prd_nats_event *ev_head, *ev_tail;   /* events waiting */
    atomic_int waiting;              /* head or ev_head set: written under
                                        lock, read without (serving's look
                                        at every produce) */
    prd_nats_report **buckets;       /* messages in flight by address */
    size_t nbuckets, in_flight;
    prd_nats_batch batch;            /* p->base.pending while served */
    prd_pool pool;                   /* free reports (Lua thread only) */
    prd_nats_denial denied[PRD_NATS_DENIALS];  /* subjects the server refused
                                        to let this connection publish to */
    int conn_closed;                 /* nats.c's closed callback ran */
    atomic_int shutting;             /* close is taking the connection down */
    atomic_int published;            /* js_PublishMsgAsync took a message */
    /* metrics, on the Lua thread */
    uint64_t produced_bytes, delivered_bytes, failed_bytes;
    long duplicates;
    atomic_long disconnects;
    int64_t max_pending;             /* jsOptions' MaxPending (spool.c) */
    atomic_llong moved_us;           /* the connection last lost or regained
                                        (prd_nats_now_us), for NO_STREAM's
                                        grace (spool.c) */
} prd_nats;

/* The open NATS producer at 1 (raises as prd_producer_check, and on a
 * producer of another transport). */
prd_nats *prd_nats_check(lua_State *L);

#endif
