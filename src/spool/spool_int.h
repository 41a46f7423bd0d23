/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * spool_int.h: what the spool's files share: the on-disk format (all
 * integers little-endian, frames 8-byte aligned), the in-memory segment
 * table, and small I/O helpers.
 *
 * Segment file NNNNNNNNNNNNNNNNNNNN.seg (its first seq, 20 digits):
 *   header (64): "PRDSPSEG" | u16 version | u16 flags | u32 header_len=64 |
 *                spool_id[16] | u64 first_seq | i64 created_ms |
 *                12 zero bytes | u32 crc32c(the 60 bytes before);
 *                flags: 1 preallocated (its file may end in zeros after
 *                its frames: unused space, cut without being counted)
 *   frames:      u32 marker 'SPRL' | u32 len | u32 crc32c(len, type, body) |
 *                u32 type | body (len bytes) | zero pad to 8
 *   RECORD body: u64 seq | i64 timestamp_ms | i32 partition | u32 flags
 *                (1 key nil, 2 value nil) | u32 topic_len | u32 key_len |
 *                u32 value_len | u32 header_count | topic | key | value |
 *                header_count x (u32 name_len | name | u32 value_len or
 *                0xFFFFFFFF for nil | value)
 *   FOOTER body: u64 first_seq | u64 last_seq | u64 count | u64 data_bytes
 * Ack file NNN.ack: 16-byte entries u64 seq | u8 outcome | 3 zero |
 *   u32 crc32c(the 12 bytes before).
 * SPOOL (40): "PRDSPOOL" | u16 version | u16 flags | u32 0 | spool_id[16] |
 *   u32 crc32c(the 32 bytes before) | u32 0.
 */
#ifndef PRD_SPOOL_INT_H
#define PRD_SPOOL_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "spool.h"

#define SPOOL_VERSION 1
#define SEG_MAGIC "PRDSPSEG"
#define SPOOL_MAGIC "PRDSPOOL"
#define SEG_HDR_LEN 64
#define SEG_FLAG_PREALLOC 1u
#define SPOOL_FILE_LEN 40
#define FRAME_HDR_LEN 16
#define FRAME_MARKER 0x4C525053u /* "SPRL" on disk */
#define FRAME_RECORD 1u
#define FRAME_FOOTER 2u
#define FOOTER_BODY_LEN 32
#define FOOTER_LEN (FRAME_HDR_LEN + FOOTER_BODY_LEN)
#define RECORD_FIXED_LEN 40
#define ACK_LEN 16
#define ACK_BATCH 256            /* lazy acks held before a write of them all */
#define MAX_FRAME_BODY (1u << 30) /* a length above is damage whatever segment_bytes was */
#define REC_KEY_NIL 1u
#define REC_VALUE_NIL 2u
#define NIL_LEN 0xFFFFFFFFu

#define ALLOC_CHUNK ((uint64_t)1 << 20) /* the active segment grows by this much, at most its segment_bytes */

#define ALIGN8(n) (((n) + 7) & ~(uint64_t)7)

typedef struct prd_seg {
  uint64_t first;          /* first seq (the file's name) */
  uint64_t last;           /* last seq in it; first - 1 when empty */
  uint64_t done_count;     /* bits set in done */
  unsigned char *done;     /* 1 bit per seq from first: acked, or absent (damage) */
  uint64_t done_bits;      /* bits allocated */
  uint64_t size;           /* .seg bytes used (frames end here) */
  uint64_t alloc;          /* .seg file length: size, or more for the active one */
  uint64_t ack_size;       /* .ack bytes */
  uint64_t ack_max;        /* the highest valid ack past last (0: none) */
  uint64_t read_hi;        /* damage before this offset was counted already */
  int64_t created_ms;
  unsigned char spool_id[16];
  int ack_fd;              /* -1 until this process acks in it */
  unsigned char *abuf;     /* ack entries not written yet (ACK_BATCH at most) */
  size_t alen;             /* their bytes */
  int prealloc;            /* its header says SEG_FLAG_PREALLOC */
  int sealed;              /* has a footer, or must not be written to again */
  int damaged;             /* moved to damaged/ instead of deleted */
  int fsync_failed;        /* never fdatasync'ed again (I16) */
} prd_seg;

struct prd_spool {
  char *dir;
  prd_spool_options o;
  unsigned char id[16];
  int lock_fd;
  prd_seg **segs;          /* by first seq; the last one is the active segment */
  size_t nsegs, segs_cap;
  int active_fd;           /* read-write on the active segment */
  unsigned char *map;      /* the active segment, MAP_SHARED, segment_bytes long */
  uint64_t next_seq;
  uint64_t bytes;          /* .seg + .ack bytes */
  prd_spool_metrics m;     /* the counters (bytes, records, segments computed) */
  char err[256];
  int err_errno;
  /* fsync = interval: the thread, and what it shares under mu */
  pthread_t thread;
  int thread_on;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int stop, dirty;
  unsigned gen;            /* bumped at each roll */
  unsigned failed_gen;     /* gen of a segment whose fdatasync failed, + 1 (0: none) */
  int roll_next;           /* the next append starts a new segment */
};

/* little-endian codecs (inline: the append builds a frame with them) */
static inline void prd_put16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static inline void prd_put32(unsigned char *p, uint32_t v)
{
  p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8);
  p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
}
static inline void prd_put64(unsigned char *p, uint64_t v)
{
  prd_put32(p, (uint32_t)v);
  prd_put32(p + 4, (uint32_t)(v >> 32));
}
static inline uint16_t prd_get16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t prd_get32(const unsigned char *p)
{
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t prd_get64(const unsigned char *p) { return prd_get32(p) | (uint64_t)prd_get32(p + 4) << 32; }

/* spool_file.c: I/O helpers, names, the lock and the SPOOL file */
int64_t prd_spool_now_ms(void);
prd_spool_code prd_spool_fail(prd_spool *s, prd_spool_code c, int e, const char *fmt, ...);
char *prd_spool_path(const prd_spool *s, uint64_t first, const char *ext);
int prd_spool_fsync_dir(const char *dir);
int prd_spool_pread_full(int fd, void *buf, size_t len, uint64_t off);
int prd_spool_write_full(int fd, const void *buf, size_t len);
int prd_spool_datasync(prd_spool *s, int fd);
prd_spool_code prd_spool_lock(prd_spool *s);
prd_spool_code prd_spool_id_file(prd_spool *s);
void prd_spool_header_encode(unsigned char *h, const unsigned char id[16], uint64_t first, int64_t created,
                             unsigned flags);
/* 0 valid, -1 garbage, else the unknown version found */
int prd_spool_header_decode(const unsigned char *h, prd_seg *g);

/* spool_seg.c: the segment table and frames */
prd_seg *prd_seg_new(uint64_t first);
void prd_seg_free(prd_seg *g);
int prd_seg_mark(prd_seg *g, uint64_t seq);        /* 1 newly set, 0 already, -1 ENOMEM */
int prd_seg_is_done(const prd_seg *g, uint64_t seq);
uint64_t prd_seg_live(const prd_seg *g);
int prd_spool_add_seg(prd_spool *s, prd_seg *g);   /* keeps segs sorted */
prd_seg *prd_spool_find_seg(prd_spool *s, uint64_t seq);
void prd_spool_drop_seg(prd_spool *s, prd_seg *g); /* deletes its files (I7) */
void prd_spool_maybe_drop(prd_spool *s, prd_seg *g);
uint64_t prd_spool_live(const prd_spool *s);     /* records not acked */
prd_spool_code prd_spool_new_active(prd_spool *s);
prd_spool_code prd_spool_seal_active(prd_spool *s);
prd_spool_code prd_spool_grow_active(prd_spool *s, prd_seg *g, uint64_t end);

typedef struct {
  uint32_t type;
  uint32_t len;          /* body bytes */
  uint64_t size;         /* whole frame, aligned */
  unsigned char *body;   /* in the caller's buffer */
} prd_frame;
/* 1 a valid frame at off (body read into *buf), 0 not one, -1 read error */
int prd_frame_read(int fd, uint64_t off, uint64_t end, unsigned char **buf, size_t *cap, prd_frame *f);
/* the offset of the next valid frame after off (8-byte steps, chunked
 * reads), whose seq is >= min_seq for records; 0 if none, and on error */
uint64_t prd_frame_resync(int fd, uint64_t off, uint64_t end, uint64_t min_seq,
                          unsigned char **buf, size_t *cap);

/* spool_recover.c */
prd_spool_code prd_spool_recover(prd_spool *s);

/* spool_sync.c: the fsync = interval thread */
int prd_spool_sync_start(prd_spool *s);
void prd_spool_sync_stop(prd_spool *s);
void prd_spool_sync_dirty(prd_spool *s);
int prd_spool_sync_failed(prd_spool *s);   /* the active segment's background fdatasync failed */
void prd_spool_fsync_error(prd_spool *s);  /* counts one (under the lock the thread shares) */

#endif
