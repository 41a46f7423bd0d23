/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * spool.h: the durable spool's storage layer (issue #22,
 * docs/design/spool.md): append-only segment files of self-checking
 * records in one locked directory, per-record acks, recovery of every
 * state a crash leaves, and a replay cursor. Plain C99 + POSIX: no Lua,
 * no librdkafka; the transport seam wires it in later.
 *
 * Not thread-safe: one thread uses a prd_spool (the fsync = interval
 * thread is internal). Every function returning prd_spool_code leaves a
 * message in prd_spool_error() when it is not PRD_SPOOL_OK.
 */
#ifndef PRD_SPOOL_H
#define PRD_SPOOL_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
  PRD_SPOOL_OK = 0,
  PRD_SPOOL_END,      /* prd_spool_next: no more records */
  PRD_SPOOL_FULL,     /* max_bytes would be passed (I4) */
  PRD_SPOOL_IO,       /* ENOSPC, EDQUOT, EFBIG, EIO, unwritable dir, failed fsync (I4, I16) */
  PRD_SPOOL_LOCKED,   /* another process holds the directory (I9) */
  PRD_SPOOL_VERSION,  /* a file of an unknown format version: nothing deleted (I11) */
  PRD_SPOOL_INVALID   /* misuse: record larger than a segment, unknown seq, closed spool */
} prd_spool_code;

typedef enum {
  PRD_SPOOL_FSYNC_NEVER = 0, /* in the page cache (a shared mapping): survives any process death */
  PRD_SPOOL_FSYNC_INTERVAL,  /* plus fdatasync every fsync_interval_ms on a thread of ours */
  PRD_SPOOL_FSYNC_ALWAYS     /* plus fdatasync before append returns, dir fsync per segment */
} prd_spool_fsync;

typedef struct {
  uint64_t max_bytes;         /* segment + ack bytes, acks to come included (default 1 GiB) */
  uint64_t segment_bytes;     /* roll size (default 16 MiB); a record must fit in one */
  prd_spool_fsync fsync;      /* default PRD_SPOOL_FSYNC_NEVER */
  unsigned fsync_interval_ms; /* default 1000 */
  /* tests only: replaces fdatasync(2) on segment files (NULL: the real one) */
  int (*fdatasync_fn)(int fd);
} prd_spool_options;

typedef struct {
  const char *name;
  size_t name_len;
  const char *value;  /* NULL: a header without a value (nil) */
  size_t value_len;
} prd_spool_header;

/* What append takes and what next gives back. From prd_spool_next the
 * pointers point into the cursor's buffer, valid until its next call. */
typedef struct {
  const char *topic;
  size_t topic_len;
  int32_t partition;          /* -1: the partitioner's choice */
  const void *key;            /* NULL: no key (nil) */
  size_t key_len;
  const void *value;          /* NULL: no value (nil) */
  size_t value_len;
  const prd_spool_header *headers;
  size_t header_count;
  int64_t timestamp_ms;
  /* set by prd_spool_next only: */
  uint64_t seq;
  unsigned char id[24];       /* stable record id: spool id (16) + seq (8, little-endian) */
} prd_spool_record;

typedef struct {
  uint64_t bytes;          /* segment + ack files on disk */
  uint64_t records;        /* records not acked */
  int64_t oldest_age_ms;   /* age of the oldest segment holding a record not acked; 0: none */
  uint64_t cut;            /* torn tails cut (I11) */
  uint64_t damaged;        /* damaged frames skipped, bad segment headers moved aside */
  uint64_t refused_full;
  uint64_t refused_io;
  uint64_t fsync_errors;
  uint64_t segments;
} prd_spool_metrics;

/* Replay position. Fields are private; init before use, free after. */
typedef struct {
  uint64_t seg_first;      /* the segment being read (its first seq); 0: before the first */
  uint64_t off;            /* next frame's offset in it */
  uint64_t expect;         /* next seq expected in it */
  int fd;
  unsigned char *buf;
  size_t cap;
  prd_spool_header *hdrs;
  size_t hcap;
} prd_spool_cursor;

typedef struct prd_spool prd_spool;

#define PRD_SPOOL_DELIVERED 1
#define PRD_SPOOL_FAILED 2    /* failed for good: no retry can change it */

void prd_spool_options_init(prd_spool_options *o);

/* Opens (creates) the spool in dir and recovers what it holds (I9, I11,
 * I12, I13). o NULL: defaults. On failure *out is NULL, err holds the
 * message, the code says which. */
prd_spool_code prd_spool_open(const char *dir, const prd_spool_options *o,
                              prd_spool **out, char *err, size_t errlen);

/* Appends r (its seq and id are ignored): its frame built in place in the
 * active segment's shared mapping (I1, I2); *seq gets its sequence
 * number. */
prd_spool_code prd_spool_append(prd_spool *s, const prd_spool_record *r, uint64_t *seq);

/* Ends a record's life: outcome PRD_SPOOL_DELIVERED or PRD_SPOOL_FAILED.
 * Acking twice is a no-op; a fully acked segment that is not the newest
 * is deleted (I7). */
prd_spool_code prd_spool_ack(prd_spool *s, uint64_t seq, int outcome);

/* prd_spool_ack without the write: the entry is held in memory (the
 * record is done for this process at once) and written by
 * prd_spool_ack_flush, prd_spool_close, or when ACK_BATCH entries of one
 * segment are held, all of them with one write(). A crash loses the
 * held entries: their records are sent again (I8), never lost. */
prd_spool_code prd_spool_ack_lazy(prd_spool *s, uint64_t seq, int outcome);

/* Writes every held ack entry (one write() a segment holding any):
 * PRD_SPOOL_OK, or PRD_SPOOL_IO (those entries dropped: re-sends). */
prd_spool_code prd_spool_ack_flush(prd_spool *s);

/* fdatasync of the active segment now (any fsync mode; a failure seals it, I16) */
prd_spool_code prd_spool_sync(prd_spool *s);

void prd_spool_cursor_init(prd_spool_cursor *c);
void prd_spool_cursor_free(prd_spool_cursor *c);
/* back to the oldest record: the next pass gives every record not acked again */
void prd_spool_rewind(prd_spool_cursor *c);
/* The next record not acked, by seq, read from disk with its CRC checked:
 * PRD_SPOOL_OK (r filled), PRD_SPOOL_END, or PRD_SPOOL_IO. Records
 * appended after the cursor passed the end come on the next call. */
prd_spool_code prd_spool_next(prd_spool *s, prd_spool_cursor *c, prd_spool_record *r);

/* Whether c stands just before seq, the last record of the active
 * segment, with nothing after it unread: a caller that sent seq from
 * memory may then move the cursor past it (move set), as if
 * prd_spool_next had given it, instead of reading it back. */
int prd_spool_cursor_follow(prd_spool *s, prd_spool_cursor *c, uint64_t seq, int move);

/* Whether c has read everything appended (it stands at the active
 * segment's end): prd_spool_next would say PRD_SPOOL_END. The feeder's
 * check when it has nothing to do, without a read. */
int prd_spool_cursor_at_end(const prd_spool *s, const prd_spool_cursor *c);

void prd_spool_metrics_get(prd_spool *s, prd_spool_metrics *m);
/* The one line to log at start-up (I13): "spool <dir> resumed: N records,
 * B bytes, oldest S s, cut C, damaged D" into buf (truncated to len). */
void prd_spool_summary(prd_spool *s, char *buf, size_t len);
const char *prd_spool_error(const prd_spool *s);     /* the last failure's message */
int prd_spool_errno(const prd_spool *s);             /* its errno, 0 if none */
const char *prd_spool_code_name(prd_spool_code c);   /* "SPOOL_FULL", ... */
void prd_spool_id(const prd_spool *s, unsigned char id[16]);

/* Seals the active segment (footer, fdatasync unless never), releases
 * the lock, frees s. NULL is a no-op. */
void prd_spool_close(prd_spool *s);

#endif
