/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * spool_seg.c: segments: the in-memory table (each segment's seq range
 * and a bitmap of seqs done: acked, or lost to damage), creating,
 * sealing and deleting their files (I7), and reading one frame or
 * finding the next valid one after damage (I3, I11).
 *
 * The active segment is appended through a MAP_SHARED mapping of its
 * file (spool.c): the file grows by posix_fallocate, ALLOC_CHUNK at a
 * time (never past segment_bytes, nor past what max_bytes leaves), so a
 * full disk or RLIMIT_FSIZE refuses the growth (SPOOL_IO) and a store
 * into the mapping never meets a hole (no SIGBUS). Sealing unmaps it,
 * cuts the file to its used length and writes the footer there.
 *
 * Memory: 1 bit per record of the spool; frames are read one at a time
 * into the caller's buffer, and a resync reads 64 KiB chunks. The
 * mapping is address space, segment_bytes of it; its pages are the page
 * cache's.
 */
#define _DEFAULT_SOURCE          /* madvise's MADV_POPULATE_WRITE (Linux) */
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

#define RESYNC_CHUNK 65536

prd_seg *prd_seg_new(uint64_t first)
{
  prd_seg *g = calloc(1, sizeof *g);
  if (!g)
    return NULL;
  g->first = first;
  g->last = first - 1;
  g->ack_fd = -1;
  return g;
}

void prd_seg_free(prd_seg *g)
{
  if (!g)
    return;
  if (g->ack_fd >= 0)
    close(g->ack_fd);
  free(g->abuf);
  free(g->done);
  free(g);
}

int prd_seg_is_done(const prd_seg *g, uint64_t seq)
{
  uint64_t i = seq - g->first;
  if (seq < g->first || i >= g->done_bits)
    return 0;
  return (g->done[i / 8] >> (i % 8)) & 1;
}

int prd_seg_mark(prd_seg *g, uint64_t seq)
{
  uint64_t i = seq - g->first;
  if (seq < g->first)
    return 0;
  if (i >= g->done_bits) {
    uint64_t bits = g->done_bits ? g->done_bits : 1024;
    unsigned char *d;
    while (bits <= i)
      bits *= 2;
    d = realloc(g->done, (size_t)(bits / 8));
    if (!d)
      return -1;
    memset(d + g->done_bits / 8, 0, (size_t)((bits - g->done_bits) / 8));
    g->done = d;
    g->done_bits = bits;
  }
  if ((g->done[i / 8] >> (i % 8)) & 1)
    return 0;
  g->done[i / 8] |= (unsigned char)(1u << (i % 8));
  g->done_count++;
  return 1;
}

uint64_t prd_seg_live(const prd_seg *g)
{
  uint64_t n = g->last + 1 - g->first;
  return n > g->done_count ? n - g->done_count : 0;
}

int prd_spool_add_seg(prd_spool *s, prd_seg *g)
{
  size_t i;
  if (s->nsegs == s->segs_cap) {
    size_t cap = s->segs_cap ? s->segs_cap * 2 : 16;
    prd_seg **a = realloc(s->segs, cap * sizeof *a);
    if (!a)
      return -1;
    s->segs = a;
    s->segs_cap = cap;
  }
  for (i = s->nsegs; i > 0 && s->segs[i - 1]->first > g->first; i--)
    s->segs[i] = s->segs[i - 1];
  s->segs[i] = g;
  s->nsegs++;
  return 0;
}

prd_seg *prd_spool_find_seg(prd_spool *s, uint64_t seq)
{
  size_t lo = 0, hi = s->nsegs;
  while (lo < hi) {  /* the last segment whose first <= seq */
    size_t mid = (lo + hi) / 2;
    if (s->segs[mid]->first <= seq)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo == 0 || seq > s->segs[lo - 1]->last)
    return NULL;
  return s->segs[lo - 1];
}

static void move_damaged(prd_spool *s, const char *seg)
{
  size_t n = strlen(s->dir) + 64;
  char *to = malloc(n), *dir = malloc(n);
  if (to && dir) {
    snprintf(dir, n, "%s/damaged", s->dir);
    (void)mkdir(dir, 0700);
    snprintf(to, n, "%s/%s", dir, strrchr(seg, '/') + 1);
    if (rename(seg, to) != 0)
      (void)unlink(seg);
  }
  free(to);
  free(dir);
}

/* I7: data first, then (a directory fsync under "always") its acks, so
 * a crash between leaves acks without data, never data without acks. */
void prd_spool_drop_seg(prd_spool *s, prd_seg *g)
{
  char *seg = prd_spool_path(s, g->first, ".seg"), *ack = prd_spool_path(s, g->first, ".ack");
  size_t i;
  if (seg && ack) {
    if (g->damaged)
      move_damaged(s, seg);
    else
      (void)unlink(seg);
    if (s->o.fsync == PRD_SPOOL_FSYNC_ALWAYS)
      (void)prd_spool_fsync_dir(s->dir);
    (void)unlink(ack);
  }
  free(seg);
  free(ack);
  s->bytes -= g->alloc + g->ack_size;
  for (i = 0; i < s->nsegs && s->segs[i] != g; i++)
    ;
  if (i < s->nsegs) {
    memmove(s->segs + i, s->segs + i + 1, (s->nsegs - i - 1) * sizeof *s->segs);
    s->nsegs--;
  }
  prd_seg_free(g);
}

/* deletes g if every record in it is done and it is not the newest */
void prd_spool_maybe_drop(prd_spool *s, prd_seg *g)
{
  if (s->nsegs && g != s->segs[s->nsegs - 1] && prd_seg_live(g) == 0)
    prd_spool_drop_seg(s, g);
}

/* A new newest segment at next_seq: created, header written, synced
 * (with its directory entry) unless fsync = never, mapped (its file
 * grows at the first append). */
prd_spool_code prd_spool_new_active(prd_spool *s)
{
  unsigned char h[SEG_HDR_LEN];
  char *path = prd_spool_path(s, s->next_seq, ".seg");
  prd_seg *g = prd_seg_new(s->next_seq);
  unsigned char *map = MAP_FAILED;
  int fd = -1, e;
  if (!path || !g) {
    free(path);
    prd_seg_free(g);
    return prd_spool_fail(s, PRD_SPOOL_IO, ENOMEM, "spool %s: new segment", s->dir);
  }
  g->created_ms = prd_spool_now_ms();
  memcpy(g->spool_id, s->id, 16);
  prd_spool_header_encode(h, s->id, g->first, g->created_ms, SEG_FLAG_PREALLOC);
  fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0 || prd_spool_write_full(fd, h, sizeof h) != 0 ||
      (s->o.fsync != PRD_SPOOL_FSYNC_NEVER &&
       (prd_spool_datasync(s, fd) != 0 || prd_spool_fsync_dir(s->dir) != 0)))
    goto fail;
  map = mmap(NULL, (size_t)s->o.segment_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED)
    goto fail;
  if (prd_spool_add_seg(s, g) != 0) {
    errno = ENOMEM;
    goto fail;
  }
  free(path);
  g->size = g->alloc = SEG_HDR_LEN;
  s->bytes += SEG_HDR_LEN;
  s->map = map;
  pthread_mutex_lock(&s->mu);
  s->active_fd = fd;
  s->gen++;
  pthread_mutex_unlock(&s->mu);
  return PRD_SPOOL_OK;
fail:
  e = errno;
  if (map != MAP_FAILED)
    munmap(map, (size_t)s->o.segment_bytes);
  if (fd >= 0) {
    close(fd);
    (void)unlink(path);
  }
  free(path);
  prd_seg_free(g);
  return prd_spool_fail(s, PRD_SPOOL_IO, e, "spool %s: cannot create a segment", s->dir);
}

/* How far the active segment g may grow to hold bytes up to end: an
 * ALLOC_CHUNK step, within segment_bytes and what max_bytes leaves after
 * the acks to come and the footer; never less than end (the append's
 * own check let end in). */
static uint64_t grow_target(prd_spool *s, const prd_seg *g, uint64_t end)
{
  uint64_t target = (end + ALLOC_CHUNK - 1) / ALLOC_CHUNK * ALLOC_CHUNK;
  uint64_t committed = s->bytes + ACK_LEN * (prd_spool_live(s) + 1) + FOOTER_LEN;
  if (target > s->o.segment_bytes)
    target = s->o.segment_bytes;
  if (committed + (target - g->alloc) > s->o.max_bytes)
    target = committed < s->o.max_bytes ? g->alloc + (s->o.max_bytes - committed) : end;
  return target < end ? end : target;
}

/* Maps the active segment's pages from from to to (just allocated) for
 * writing now, in one call, rather than a page fault at the first store
 * into each (best effort: Linux 5.14's MADV_POPULATE_WRITE; the pages
 * are zeros either way). */
static void populate(prd_spool *s, uint64_t from, uint64_t to)
{
#ifdef MADV_POPULATE_WRITE
  uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
  from = from / page * page;
  to = to / page * page;  /* within the file: no page past its end */
  if (s->map && to > from)
    (void)madvise(s->map + from, (size_t)(to - from), MADV_POPULATE_WRITE);
#else
  (void)s, (void)from, (void)to;
#endif
}

/* Makes the active segment's file at least end bytes long, its blocks
 * allocated (posix_fallocate: a full disk or RLIMIT_FSIZE says so here,
 * never as a SIGBUS at a store into the mapping). SPOOL_IO when refused:
 * the file keeps its length and nothing was written. */
prd_spool_code prd_spool_grow_active(prd_spool *s, prd_seg *g, uint64_t end)
{
  uint64_t target;
  int e;
  if (end <= g->alloc)
    return PRD_SPOOL_OK;
  target = grow_target(s, g, end);
  e = posix_fallocate(s->active_fd, (off_t)g->alloc, (off_t)(target - g->alloc));
  if (e && target > end)  /* a nearly full disk: just this record */
    e = posix_fallocate(s->active_fd, (off_t)g->alloc, (off_t)((target = end) - g->alloc));
  if (e) {
    struct stat st;
    if (fstat(s->active_fd, &st) == 0 && (uint64_t)st.st_size > g->alloc)
      (void)ftruncate(s->active_fd, (off_t)g->alloc);  /* a partial allocation */
    return prd_spool_fail(s, PRD_SPOOL_IO, e, "spool %s: cannot write", s->dir);
  }
  populate(s, g->alloc, target);
  s->bytes += target - g->alloc;
  g->alloc = target;
  return PRD_SPOOL_OK;
}

/* Unmaps the active segment, cuts its file to the used length, writes
 * its footer there (fdatasync unless never) and closes it. A failure
 * leaves it without footer: recovery scans it instead (a file still
 * longer than its frames then ends in zeros, cut as a torn tail). */
prd_spool_code prd_spool_seal_active(prd_spool *s)
{
  prd_seg *g = s->nsegs ? s->segs[s->nsegs - 1] : NULL;
  unsigned char f[FOOTER_LEN];
  prd_spool_code rc = PRD_SPOOL_OK;
  int fd = s->active_fd;
  if (s->map) {
    munmap(s->map, (size_t)s->o.segment_bytes);
    s->map = NULL;
  }
  if (fd < 0 || !g)
    return PRD_SPOOL_OK;
  if (!g->sealed) {
    int cut = g->alloc == g->size || ftruncate(fd, (off_t)g->size) == 0;
    if (cut) {
      s->bytes -= g->alloc - g->size;
      g->alloc = g->size;
    }
    prd_put32(f, FRAME_MARKER);
    prd_put32(f + 4, FOOTER_BODY_LEN);
    prd_put32(f + 12, FRAME_FOOTER);
    prd_put64(f + 16, g->first);
    prd_put64(f + 24, g->last);
    prd_put64(f + 32, g->last + 1 - g->first);
    prd_put64(f + 40, g->size - SEG_HDR_LEN);
    prd_put32(f + 8, prd_crc32c(prd_crc32c(0, f + 4, 4), f + 12, 4 + FOOTER_BODY_LEN));
    if (cut && lseek(fd, (off_t)g->size, SEEK_SET) >= 0 && prd_spool_write_full(fd, f, sizeof f) == 0) {
      g->size += FOOTER_LEN;
      g->alloc = g->size;
      s->bytes += FOOTER_LEN;
    } else if (!cut || ftruncate(fd, (off_t)g->size) != 0) {
      rc = prd_spool_fail(s, PRD_SPOOL_IO, errno, "spool %s: segment footer", s->dir);
    }
    if (s->o.fsync != PRD_SPOOL_FSYNC_NEVER && !g->fsync_failed && prd_spool_datasync(s, fd) != 0) {
      g->fsync_failed = 1;
      prd_spool_fsync_error(s);
      rc = prd_spool_fail(s, PRD_SPOOL_IO, errno, "spool %s: fdatasync", s->dir);
    }
    g->sealed = 1;
  }
  pthread_mutex_lock(&s->mu);
  s->active_fd = -1;
  pthread_mutex_unlock(&s->mu);
  close(fd);
  return rc;
}

static int grow(unsigned char **buf, size_t *cap, size_t need)
{
  unsigned char *b;
  size_t n = *cap ? *cap : 4096;
  if (need <= *cap)
    return 0;
  while (n < need)
    n *= 2;
  b = realloc(*buf, n);
  if (!b)
    return -1;
  *buf = b;
  *cap = n;
  return 0;
}

int prd_frame_read(int fd, uint64_t off, uint64_t end, unsigned char **buf, size_t *cap, prd_frame *f)
{
  unsigned char h[FRAME_HDR_LEN];
  uint32_t crc;
  if (off + FRAME_HDR_LEN > end)
    return 0;
  if (prd_spool_pread_full(fd, h, sizeof h, off) != 0)
    return errno ? -1 : 0;
  f->len = prd_get32(h + 4);
  f->type = prd_get32(h + 12);
  if (prd_get32(h) != FRAME_MARKER || f->len > MAX_FRAME_BODY ||
      (f->type != FRAME_RECORD && f->type != FRAME_FOOTER))
    return 0;
  f->size = FRAME_HDR_LEN + ALIGN8((uint64_t)f->len);
  if (off + FRAME_HDR_LEN + f->len > end)
    return 0;
  if (grow(buf, cap, f->len + 1) != 0)
    return -1;
  if (prd_spool_pread_full(fd, *buf, f->len, off + FRAME_HDR_LEN) != 0)
    return errno ? -1 : 0;
  crc = prd_crc32c(prd_crc32c(prd_crc32c(0, h + 4, 4), h + 12, 4), *buf, f->len);
  if (crc != prd_get32(h + 8))
    return 0;
  if (f->type == FRAME_RECORD ? f->len < RECORD_FIXED_LEN : f->len != FOOTER_BODY_LEN)
    return 0;
  f->body = *buf;
  return 1;
}

uint64_t prd_frame_resync(int fd, uint64_t off, uint64_t end, uint64_t min_seq,
                          unsigned char **buf, size_t *cap)
{
  unsigned char *chunk = malloc(RESYNC_CHUNK);
  uint64_t at = ALIGN8(off + 1), found = 0;
  if (!chunk)
    return 0;
  while (!found && at + FRAME_HDR_LEN <= end) {
    size_t n = (size_t)(end - at < RESYNC_CHUNK ? end - at : RESYNC_CHUNK), i;
    if (prd_spool_pread_full(fd, chunk, n, at) != 0)
      break;
    for (i = 0; !found && i + 4 <= n; i += 8) {
      prd_frame f;
      if (prd_get32(chunk + i) != FRAME_MARKER)
        continue;
      if (prd_frame_read(fd, at + i, end, buf, cap, &f) == 1 &&
          (f.type == FRAME_FOOTER || prd_get64(f.body) >= min_seq))
        found = at + i;
    }
    at += n;
  }
  free(chunk);
  return found;
}

uint64_t prd_spool_live(const prd_spool *s)
{
  uint64_t n = 0;
  size_t i;
  for (i = 0; i < s->nsegs; i++)
    n += prd_seg_live(s->segs[i]);
  return n;
}
