/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * spool.c: opening and closing a spool, appending records (I1, I2, I4,
 * I16), acking them (I5, I7, I8), and its metrics.
 *
 * An append builds the whole frame in place, in the active segment's
 * MAP_SHARED mapping (spool_seg.c): the frame is in the page cache when
 * the append returns, so it survives any death of the process (I1)
 * without a system call. When the file must grow first and cannot (a
 * full disk, RLIMIT_FSIZE: posix_fallocate says so), the append is
 * refused before a byte is stored, so a refusal leaves no record.
 * max_bytes counts the .seg and .ack bytes on disk (the active
 * segment's preallocated tail included: metrics' bytes is what the
 * files take) plus 16 bytes for the ack each record not yet acked will
 * need, the footer of the active segment and, at a roll, the new
 * header; an append is refused when its frame would pass it counting
 * the bytes used (the tail is allocated only within what max_bytes
 * leaves), nothing old is evicted.
 *
 * Caveats: under fsync = always a failed fdatasync refuses that append
 * but the record stays in the segment (its pages may or may not reach
 * the disk; truncating could not be trusted either): a refused record
 * can still be replayed and delivered. prd_spool_ack writes its entry
 * at once; prd_spool_ack_lazy holds entries (up to ACK_BATCH a segment)
 * until prd_spool_ack_flush, close or a full buffer writes them with one
 * write() a segment. Acks are never synced: a lost ack makes a
 * duplicate, never a loss (I8).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "crc32c.h"
#include "spool_int.h"

void prd_spool_options_init(prd_spool_options *o)
{
  memset(o, 0, sizeof *o);
  o->max_bytes = (uint64_t)1 << 30;
  o->segment_bytes = (uint64_t)16 << 20;
  o->fsync = PRD_SPOOL_FSYNC_NEVER;
  o->fsync_interval_ms = 1000;
}

const char *prd_spool_code_name(prd_spool_code c)
{
  switch (c) {
  case PRD_SPOOL_OK: return "OK";
  case PRD_SPOOL_END: return "SPOOL_END";
  case PRD_SPOOL_FULL: return "SPOOL_FULL";
  case PRD_SPOOL_IO: return "SPOOL_IO";
  case PRD_SPOOL_LOCKED: return "SPOOL_LOCKED";
  case PRD_SPOOL_VERSION: return "SPOOL_VERSION";
  case PRD_SPOOL_INVALID: return "SPOOL_INVALID";
  }
  return "SPOOL_UNKNOWN";
}

const char *prd_spool_error(const prd_spool *s) { return s->err; }
int prd_spool_errno(const prd_spool *s) { return s->err_errno; }
void prd_spool_id(const prd_spool *s, unsigned char id[16]) { memcpy(id, s->id, 16); }

static void free_spool(prd_spool *s)
{
  size_t i;
  for (i = 0; i < s->nsegs; i++)
    prd_seg_free(s->segs[i]);
  free(s->segs);
  if (s->active_fd >= 0)
    close(s->active_fd);
  if (s->lock_fd >= 0)
    close(s->lock_fd);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  if (s->map)
    munmap(s->map, (size_t)s->o.segment_bytes);
  free(s->dir);
  free(s);
}

static prd_spool_code check_options(prd_spool *s)
{
  if (s->o.segment_bytes < 4096 || s->o.segment_bytes > MAX_FRAME_BODY)
    return prd_spool_fail(s, PRD_SPOOL_INVALID, 0, "segment_bytes must be from 4096 to %u", MAX_FRAME_BODY);
  if (s->o.max_bytes < SEG_HDR_LEN + FOOTER_LEN)
    return prd_spool_fail(s, PRD_SPOOL_INVALID, 0, "max_bytes too small");
  if (s->o.fsync > PRD_SPOOL_FSYNC_ALWAYS)
    return prd_spool_fail(s, PRD_SPOOL_INVALID, 0, "unknown fsync mode");
  if (s->o.fsync == PRD_SPOOL_FSYNC_INTERVAL && s->o.fsync_interval_ms == 0)
    return prd_spool_fail(s, PRD_SPOOL_INVALID, 0, "fsync_interval_ms must be positive");
  return PRD_SPOOL_OK;
}

prd_spool_code prd_spool_open(const char *dir, const prd_spool_options *o,
                              prd_spool **out, char *err, size_t errlen)
{
  prd_spool *s = calloc(1, sizeof *s);
  prd_spool_code rc;
  *out = NULL;
  if (!s || !(s->dir = strdup(dir))) {
    free(s);
    if (errlen)
      snprintf(err, errlen, "spool %s: out of memory", dir);
    return PRD_SPOOL_IO;
  }
  s->lock_fd = s->active_fd = -1;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  if (o)
    s->o = *o;
  else
    prd_spool_options_init(&s->o);
  rc = check_options(s);
  if (rc == PRD_SPOOL_OK && mkdir(dir, 0700) != 0 && errno != EEXIST)
    rc = prd_spool_fail(s, PRD_SPOOL_IO, errno, "spool %s: cannot create", dir);
  if (rc == PRD_SPOOL_OK)
    rc = prd_spool_lock(s);
  if (rc == PRD_SPOOL_OK)
    rc = prd_spool_id_file(s);
  if (rc == PRD_SPOOL_OK)
    rc = prd_spool_recover(s);
  if (rc == PRD_SPOOL_OK && s->o.fsync == PRD_SPOOL_FSYNC_INTERVAL && prd_spool_sync_start(s) != 0)
    rc = prd_spool_fail(s, PRD_SPOOL_IO, errno, "spool %s: fsync thread", dir);
  if (rc != PRD_SPOOL_OK) {
    if (errlen)
      snprintf(err, errlen, "%s", s->err);
    free_spool(s);
    return rc;
  }
  *out = s;
  return PRD_SPOOL_OK;
}

void prd_spool_close(prd_spool *s)
{
  if (!s)
    return;
  prd_spool_sync_stop(s);
  (void)prd_spool_ack_flush(s);
  (void)prd_spool_seal_active(s);
  free_spool(s);
}

static prd_seg *active(prd_spool *s)
{
  return s->nsegs ? s->segs[s->nsegs - 1] : NULL;
}

/* the record's body length, 0 when a field does not fit its u32 */
static uint64_t body_len(const prd_spool_record *r)
{
  uint64_t n = RECORD_FIXED_LEN + (uint64_t)r->topic_len;
  size_t i;
  if (r->topic_len >= NIL_LEN || (r->key && r->key_len >= NIL_LEN) || (r->value && r->value_len >= NIL_LEN))
    return 0;
  n += (r->key ? r->key_len : 0) + (r->value ? r->value_len : 0);
  for (i = 0; i < r->header_count; i++) {
    const prd_spool_header *h = &r->headers[i];
    if (h->name_len >= NIL_LEN || (h->value && h->value_len >= NIL_LEN))
      return 0;
    n += 8 + h->name_len + (h->value ? h->value_len : 0);
  }
  return n > MAX_FRAME_BODY ? 0 : n;
}

static unsigned char *put_bytes(unsigned char *p, const void *b, size_t n)
{
  if (n)
    memcpy(p, b, n);
  return p + n;
}

/* the frame of r at seq into f (size bytes) */
static void build_frame(unsigned char *f, size_t size, const prd_spool_record *r, uint64_t seq, uint64_t blen)
{
  unsigned char *p;
  size_t i;
  memset(f + size - 8, 0, 8);
  prd_put32(f, FRAME_MARKER);
  prd_put32(f + 4, (uint32_t)blen);
  prd_put32(f + 12, FRAME_RECORD);
  p = f + FRAME_HDR_LEN;
  prd_put64(p, seq);
  prd_put64(p + 8, (uint64_t)r->timestamp_ms);
  prd_put32(p + 16, (uint32_t)r->partition);
  prd_put32(p + 20, (r->key ? 0 : REC_KEY_NIL) | (r->value ? 0 : REC_VALUE_NIL));
  prd_put32(p + 24, (uint32_t)r->topic_len);
  prd_put32(p + 28, r->key ? (uint32_t)r->key_len : 0);
  prd_put32(p + 32, r->value ? (uint32_t)r->value_len : 0);
  prd_put32(p + 36, (uint32_t)r->header_count);
  p = put_bytes(p + RECORD_FIXED_LEN, r->topic, r->topic_len);
  p = put_bytes(p, r->key, r->key ? r->key_len : 0);
  p = put_bytes(p, r->value, r->value ? r->value_len : 0);
  for (i = 0; i < r->header_count; i++) {
    const prd_spool_header *h = &r->headers[i];
    prd_put32(p, (uint32_t)h->name_len);
    p = put_bytes(p + 4, h->name, h->name_len);
    prd_put32(p, h->value ? (uint32_t)h->value_len : NIL_LEN);
    p = put_bytes(p + 4, h->value, h->value ? h->value_len : 0);
  }
  /* crc32c(len, type, body): type and body are contiguous, one call */
  prd_put32(f + 8, prd_crc32c(prd_crc32c(0, f + 4, 4), f + 12, 4 + (size_t)blen));
}

/* seals the active segment and starts the next (I16: after a failed
 * fsync the file is never synced or written again) */
static prd_spool_code roll(prd_spool *s)
{
  prd_seg *old = active(s);
  prd_spool_code rc;
  if (old && old->last + 1 == old->first && old->first == s->next_seq)
    s->next_seq++;  /* an empty segment keeps its name: skip one seq */
  (void)prd_spool_seal_active(s);
  rc = prd_spool_new_active(s);
  if (rc != PRD_SPOOL_OK)
    return rc;
  s->roll_next = 0;
  if (old)
    prd_spool_maybe_drop(s, old);
  return PRD_SPOOL_OK;
}

static int needs_roll(prd_spool *s, prd_seg *g, size_t size)
{
  if (s->active_fd < 0 || s->roll_next || !g)
    return 1;
  if (s->o.fsync == PRD_SPOOL_FSYNC_INTERVAL && prd_spool_sync_failed(s)) {
    g->fsync_failed = 1;
    return 1;
  }
  return g->last >= g->first && g->size + size + FOOTER_LEN > s->o.segment_bytes;
}

/* r's frame (size bytes) stored at the end of g's mapping, the file
 * grown first when needed */
static prd_spool_code write_frame(prd_spool *s, prd_seg *g, const prd_spool_record *r, uint64_t blen,
                                  size_t size, uint64_t *seq)
{
  if (prd_spool_grow_active(s, g, g->size + size) != PRD_SPOOL_OK) {
    s->m.refused_io++;
    return PRD_SPOOL_IO;
  }
  build_frame(s->map + g->size, size, r, s->next_seq, blen);
  g->last = s->next_seq;
  g->size += size;       /* s->bytes counted it when the file grew */
  *seq = s->next_seq++;
  if (s->o.fsync == PRD_SPOOL_FSYNC_INTERVAL)
    prd_spool_sync_dirty(s);
  if (s->o.fsync == PRD_SPOOL_FSYNC_ALWAYS && !g->fsync_failed && prd_spool_datasync(s, s->active_fd) != 0) {
    int e = errno;
    g->fsync_failed = 1;
    s->roll_next = 1;
    prd_spool_fsync_error(s);
    s->m.refused_io++;
    return prd_spool_fail(s, PRD_SPOOL_IO, e, "spool %s: fdatasync (record %llu may still be delivered)",
                          s->dir, (unsigned long long)*seq);
  }
  return PRD_SPOOL_OK;
}

prd_spool_code prd_spool_append(prd_spool *s, const prd_spool_record *r, uint64_t *seq)
{
  uint64_t blen = body_len(r), need, reserved;
  size_t size;
  prd_seg *g = active(s);
  int rolls;
  if (!blen || FRAME_HDR_LEN + ALIGN8(blen) + SEG_HDR_LEN + FOOTER_LEN > s->o.segment_bytes)
    return prd_spool_fail(s, PRD_SPOOL_INVALID, 0, "record larger than segment_bytes (%llu)",
                          (unsigned long long)s->o.segment_bytes);
  size = (size_t)(FRAME_HDR_LEN + ALIGN8(blen));
  rolls = needs_roll(s, g, size);
  need = size + ACK_LEN + FOOTER_LEN + (rolls ? SEG_HDR_LEN : 0);
  reserved = s->bytes + ACK_LEN * prd_spool_live(s) - (g ? g->alloc - g->size : 0);  /* used bytes */
  if (reserved + need > s->o.max_bytes) {
    s->m.refused_full++;
    return prd_spool_fail(s, PRD_SPOOL_FULL, 0, "spool %s is full (max_bytes %llu)", s->dir,
                          (unsigned long long)s->o.max_bytes);
  }
  if (rolls) {
    prd_spool_code rc = roll(s);
    if (rc != PRD_SPOOL_OK) {
      s->m.refused_io++;
      return rc;
    }
    g = active(s);
  }
  return write_frame(s, g, r, blen, size, seq);
}

/* Opens g's .ack file (appending) the first time this process acks in it. */
static int ack_open(prd_spool *s, prd_seg *g)
{
  char *path;
  if (g->ack_fd >= 0)
    return 0;
  path = prd_spool_path(s, g->first, ".ack");
  g->ack_fd = path ? open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600) : -1;
  free(path);
  return g->ack_fd < 0 ? -1 : 0;
}

/* Writes g's held ack entries with one write(): 0, or -1 (errno set;
 * they are dropped: their records will be sent again, I8). Their bytes
 * were counted when held; a failure takes them back. */
static int ack_write_held(prd_spool *s, prd_seg *g)
{
  size_t n = g->alen;
  if (!n)
    return 0;
  g->alen = 0;
  if (ack_open(s, g) == 0 && prd_spool_write_full(g->ack_fd, g->abuf, n) == 0)
    return 0;
  g->ack_size -= n;
  s->bytes -= n;
  return -1;
}

/* Holds seq's ack entry in g's buffer (written when it is full, or by
 * prd_spool_ack_flush): 0, or -1 (errno set) when a write failed. */
static int ack_entry_hold(prd_spool *s, prd_seg *g, uint64_t seq, int outcome)
{
  unsigned char *e;
  if (!g->abuf && !(g->abuf = malloc(ACK_BATCH * ACK_LEN))) {
    errno = ENOMEM;
    return -1;
  }
  e = g->abuf + g->alen;
  memset(e, 0, ACK_LEN);
  prd_put64(e, seq);
  e[8] = (unsigned char)outcome;
  prd_put32(e + 12, prd_crc32c(0, e, 12));
  g->alen += ACK_LEN;
  g->ack_size += ACK_LEN;
  s->bytes += ACK_LEN;
  return g->alen == ACK_BATCH * ACK_LEN ? ack_write_held(s, g) : 0;
}

prd_spool_code prd_spool_ack_lazy(prd_spool *s, uint64_t seq, int outcome)
{
  prd_seg *g;
  prd_spool_code rc = PRD_SPOOL_OK;
  if (outcome != PRD_SPOOL_DELIVERED && outcome != PRD_SPOOL_FAILED)
    return prd_spool_fail(s, PRD_SPOOL_INVALID, 0, "ack outcome must be DELIVERED or FAILED");
  if (seq == 0 || seq >= s->next_seq)
    return prd_spool_fail(s, PRD_SPOOL_INVALID, 0, "ack of seq %llu, never appended",
                          (unsigned long long)seq);
  g = prd_spool_find_seg(s, seq);
  if (!g || prd_seg_is_done(g, seq))
    return PRD_SPOOL_OK;  /* acked before (its segment may be gone) */
  if (ack_entry_hold(s, g, seq, outcome) != 0)
    rc = prd_spool_fail(s, PRD_SPOOL_IO, errno, "spool %s: cannot write ack (the record will be sent again)", s->dir);
  if (prd_seg_mark(g, seq) < 0)
    return prd_spool_fail(s, PRD_SPOOL_IO, ENOMEM, "spool %s", s->dir);
  prd_spool_maybe_drop(s, g);  /* its held acks go with its files (I7) */
  return rc;
}

prd_spool_code prd_spool_ack_flush(prd_spool *s)
{
  prd_spool_code rc = PRD_SPOOL_OK;
  size_t i;
  for (i = 0; i < s->nsegs; i++)
    if (ack_write_held(s, s->segs[i]) != 0)
      rc = prd_spool_fail(s, PRD_SPOOL_IO, errno, "spool %s: cannot write acks (their records will be sent again)",
                          s->dir);
  return rc;
}

prd_spool_code prd_spool_ack(prd_spool *s, uint64_t seq, int outcome)
{
  prd_spool_code rc = prd_spool_ack_lazy(s, seq, outcome);
  prd_seg *g = rc == PRD_SPOOL_INVALID ? NULL : prd_spool_find_seg(s, seq);
  if (g && ack_write_held(s, g) != 0)
    rc = prd_spool_fail(s, PRD_SPOOL_IO, errno, "spool %s: cannot write ack (the record will be sent again)", s->dir);
  return rc;
}

prd_spool_code prd_spool_sync(prd_spool *s)
{
  prd_seg *g = active(s);
  if (s->active_fd < 0 || !g || g->fsync_failed)
    return PRD_SPOOL_OK;
  if (prd_spool_datasync(s, s->active_fd) != 0) {
    int e = errno;
    g->fsync_failed = 1;
    s->roll_next = 1;
    prd_spool_fsync_error(s);
    return prd_spool_fail(s, PRD_SPOOL_IO, e, "spool %s: fdatasync", s->dir);
  }
  return PRD_SPOOL_OK;
}

void prd_spool_metrics_get(prd_spool *s, prd_spool_metrics *m)
{
  size_t i;
  pthread_mutex_lock(&s->mu);
  *m = s->m;
  pthread_mutex_unlock(&s->mu);
  m->bytes = s->bytes;
  m->records = prd_spool_live(s);
  m->segments = s->nsegs;
  m->oldest_age_ms = 0;
  for (i = 0; i < s->nsegs; i++) {
    if (prd_seg_live(s->segs[i])) {
      int64_t age = prd_spool_now_ms() - s->segs[i]->created_ms;
      m->oldest_age_ms = age > 0 ? age : 0;
      break;
    }
  }
}

void prd_spool_summary(prd_spool *s, char *buf, size_t len)
{
  prd_spool_metrics m;
  prd_spool_metrics_get(s, &m);
  snprintf(buf, len, "spool %s resumed: %llu records, %llu bytes, oldest %lld s, cut %llu, damaged %llu", s->dir,
           (unsigned long long)m.records, (unsigned long long)m.bytes, (long long)(m.oldest_age_ms / 1000),
           (unsigned long long)m.cut, (unsigned long long)m.damaged);
}
