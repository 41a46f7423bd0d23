/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * transport.h: the producer every transport makes and the seam between
 * core and a transport (prd_transport).
 *
 * A transport's producer struct starts with a prd_producer (its first
 * member, so a pointer to one is a pointer to the other) and points it at
 * its prd_transport, a table of functions core calls: sending a message,
 * the next event of its queue, the reports of a batch, calling a report's
 * callback, sending what lingers, purging, closing. Core owns what every
 * backend shares: produce's checks and encoding (produce.c), the serving
 * loop (queue.c), the busy guard, interrupts, the wake-up descriptor,
 * logging, and the methods that need nothing else (poll, flush, close,
 * reports, event_fd, queue_length, stats, is_closed, spool_adopt, __gc,
 * __close, __tostring: producer.c). A transport adds its own (Kafka: purge,
 * metrics, transactions) and registers them beside core's
 * (prd_producer_methods, prd_produce_methods). A transport includes
 * core's headers; core includes none of a transport's.
 */
#ifndef PRD_CORE_TRANSPORT_H
#define PRD_CORE_TRANSPORT_H

#include "core/base.h"
#include "core/log.h"
#include "core/signal.h"
#include "core/wake.h"

typedef struct prd_producer prd_producer;

/* A header given as C bytes (a spooled record's, spooling.c). */
typedef struct prd_header {
    const char *name;
    size_t name_len;
    const char *value;          /* NULL: a header without a value */
    size_t value_len;
} prd_header;

/* A message produce hands to the transport's send. */
typedef struct prd_message {
    const char *topic, *key, *value;    /* value NULL: a tombstone */
    size_t key_len, value_len;
    lua_Integer partition;      /* or PRD_PARTITION_ANY: the transport's pick */
    lua_Integer timestamp;      /* ms since the epoch, or 0: now */
    const char *id;             /* opts.id, or NULL: a message id the
                                   transport may de-duplicate by (NATS:
                                   Nats-Msg-Id); Kafka has none */
    int headers;                /* stack index of the headers table
                                   (checked: string names and values, a map
                                   or {name, value} pairs;
                                   prd_produce_each_header), or 0 */
    int takes_report;           /* the message's callback takes a report */
    int value_string;           /* stack index of a Lua string holding the
                                   value's bytes, or 0 (the encoder's buffer,
                                   valid until the next encoding) */
    int lent;                   /* the value's string is kept alive by the
                                   state until the report: the transport
                                   may keep a pointer instead of copying */
    void *state;                /* the message's state (msgstate.h), for
                                   its report */
    const prd_header *header_list;  /* headers as C bytes (a spooled
                                   record's), header_count of them, when
                                   headers is 0 */
    size_t header_count;
    int spooled;                /* a spooled record (core/spooling.c): its
                                   headers in header_list (maybe none), its
                                   key not NUL-terminated */
} prd_message;

#define PRD_PARTITION_ANY (-1)   /* Kafka's RD_KAFKA_PARTITION_UA */

/* What a delivery report means for a spooled message (outcome). */
enum {
    PRD_OUTCOME_DELIVERED,      /* final: delivered */
    PRD_OUTCOME_FAILED,         /* final: no retry can change it */
    PRD_OUTCOME_RETRY,          /* retriable: sent again later */
    PRD_OUTCOME_RETRY_WRITTEN   /* retriable, and the broker may have
                                   written it (Kafka's POSSIBLY_PERSISTED) */
};

/* What next_event found. */
enum { PRD_EVENT_NONE, PRD_EVENT_BATCH, PRD_EVENT_OTHER };

typedef struct prd_transport {
    const char *type;            /* the metatable's name */
    const char *kind;            /* tostring's "producers.kafka" */
    size_t size;                 /* of the transport's producer struct */
    const char *id_header;       /* the header a spooled record keeps
                                    opts.id in (NATS: Nats-Msg-Id), or
                                    NULL: opts.id is not kept (Kafka) */
    /* Queues m: 0, or pushes the failure (nil, message, name, err) and
     * returns its count; then nothing of m is kept (its state is released
     * by the caller). Runs no Lua. */
    int (*send)(lua_State *L, prd_producer *p, const prd_message *m);
    /* The next event of the queue, waiting up to timeout_ms: a batch of
     * reports, then held in p->pending (PRD_EVENT_BATCH); another event,
     * served when serve is set (Lua may run: its status in *status) and
     * dropped otherwise (PRD_EVENT_OTHER); or none (PRD_EVENT_NONE). */
    int (*next_event)(lua_State *L, prd_producer *p, int timeout_ms, int serve,
                      int *status);
    /* The next report of the batch p->pending; NULL once it is done (the
     * batch released, p->pending NULL). */
    const void *(*next_report)(prd_producer *p);
    /* The report's message state (msgstate.h), released after it. */
    void *(*report_state)(const void *report);
    /* What the report means for its message (PRD_OUTCOME_*): whether a
     * failure is final (the spool, spooling.c, then forgets the message)
     * or retriable (the spool sends it again). */
    int (*outcome)(const void *report);
    /* Counts a report served: p->queued, delivered, failures. */
    void (*count)(prd_producer *p, const void *report);
    /* Calls the report's callback, unprotected (the serving holds a
     * protected call), or logs it: the logger's status. The stack holds
     * the batch's argument at 1 and, from 2, what report left there for
     * the batch (nothing else runs between the reports of a batch): a
     * value read for every report may be pushed once a batch. */
    int (*report)(lua_State *L, prd_producer *p, const void *report);
    /* Pushes the report as a value for reports() and returns 1, or
     * pushes nothing and returns 0 (a success not shown). */
    int (*push_report)(lua_State *L, prd_producer *p, const void *report);
    /* Whether events wait in the queue (after an early return). */
    int (*waiting)(prd_producer *p);
    /* Has what lingers sent at once (flush, close). */
    void (*send_now)(prd_producer *p);
    /* Purges every message queued and in flight: each gets a failure
     * report. */
    void (*purge)(prd_producer *p);
    /* Frees what the transport holds (after the last report is served,
     * timeout_ms: the close's); in a forked child, without touching the
     * parent's threads. Runs no Lua. */
    void (*close)(lua_State *L, prd_producer *p, int timeout_ms);
    void (*abandon)(lua_State *L, prd_producer *p);
    /* Unrefs what Lua values it holds; safe twice, and on a producer its
     * constructor left half made (__gc). */
    void (*release)(lua_State *L, prd_producer *p);
} prd_transport;

struct prd_producer {
    const void *magic;           /* marks a producer (prd_producer_check) */
    const prd_transport *tr;
    int closed;                  /* 1 until the transport is open, and
                                    once closed */
    int generation;              /* the process's fork generation when made */
    void *pending;               /* the transport's batch of reports being
                                    served; resumed after a callback raised */
    long queued;                 /* produced, report not yet served */
    long delivered;              /* successful deliveries reported so far */
    long failures;               /* failed deliveries reported so far */
    int busy;                    /* > 0 while Lua called by one of its
                                    methods runs (callbacks, loggers, an
                                    encoder): close is refused, and
                                    nested calls serve no reports
                                    (call.c) */
    int closing;                 /* PRD_CLOSING, PRD_PURGED: in teardown */
    int gc_flush_ms;             /* how long __gc waits for deliveries */
    int serve_on_produce;        /* produce serves reports (default) */
    int encoder;                 /* registry ref: json = function, or
                                    LUA_NOREF */
    struct prd_buf *json;        /* the C encoder's buffer (the Lua state's,
                                    kept by produce's upvalue), or NULL for
                                    json = "lua-cjson" or a function */
    prd_log log;                 /* the Lua logger and its level (log.c) */
    prd_wake wake;               /* ready flag and event_fd's pipe, set by
                                    the transport's threads */
    prd_watch watch;             /* what the waiting call started with */
    int watching;                /* a flush or close holds watch: serving
                                    does not take it anew */
    int interrupted;             /* the last wait was cut short: 0, a
                                    trapped signal's number or
                                    PRD_INTR_HOOK; __gc then waits no more */
    char name[128];              /* for tostring */
    struct prd_spooling *spool;  /* the durable spool (spooling.c), or
                                    NULL: none */
};

enum prd_closing { PRD_OPEN, PRD_CLOSING, PRD_PURGED };

/* The name luaL_checkudata's error gives a value that is no producer. */
#define PRD_PRODUCER_T "producers.Producer"

#define PRD_PRODUCER_FORKED_MSG "producer was created in another process (before fork): " \
    "create it in the process that uses it (in nginx, in init_worker_by_lua)"

#endif
