/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * spool_recover.c: what prd_spool_open does with each state an earlier
 * process left (I11, I12, I13):
 *
 * 1. every segment header is read first: an unknown version refuses the
 *    spool before anything is deleted;
 * 2. *.tmp and an .ack without its .seg are deleted; a .seg too short
 *    for its header (a death while creating it) is deleted and counted
 *    in cut; a damaged header (bad magic or CRC) is counted in damaged,
 *    the file's frames are still scanned and delivered (its name gives
 *    the first seq), and the file goes to damaged/ once done;
 * 3. a segment whose last 48 bytes are a valid footer is sealed: its
 *    range is trusted without a scan (damage inside is found, counted
 *    and skipped by the replay cursor); any other is scanned frame by
 *    frame: a bad frame with a valid one after it is damage (skipped,
 *    counted, the file goes to damaged/ once done), with none after it
 *    a torn tail (ftruncated away, counted in cut; in a preallocated
 *    segment, zeros alone after the last frame are its unused space: the
 *    frames end there, the file keeps its length, nothing counted);
 * 4. each .ack is read in 16-byte entries: a bad CRC or a seq outside
 *    the segment is ignored (I8), a torn last entry truncated away;
 * 5. the next seq follows the highest on disk, a new active segment is
 *    created (when the disk refuses, the spool opens without one), and
 *    every older segment with nothing left is deleted.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "crc32c.h"
#include "spool_int.h"

typedef struct {
  uint64_t *segs, *acks;
  size_t nsegs, nacks, cap_s, cap_a;
} listing;

/* "NNNNNNNNNNNNNNNNNNNN.ext": 1 and *first set, else 0 */
static int parse_name(const char *name, const char *ext, uint64_t *first)
{
  size_t i;
  uint64_t v = 0;
  if (strlen(name) != 20 + strlen(ext) || strcmp(name + 20, ext) != 0)
    return 0;
  for (i = 0; i < 20; i++) {
    if (name[i] < '0' || name[i] > '9')
      return 0;
    v = v * 10 + (uint64_t)(name[i] - '0');
  }
  *first = v;
  return 1;
}

static int push(uint64_t **a, size_t *n, size_t *cap, uint64_t v)
{
  if (*n == *cap) {
    size_t c = *cap ? *cap * 2 : 64;
    uint64_t *b = realloc(*a, c * sizeof *b);
    if (!b)
      return -1;
    *a = b;
    *cap = c;
  }
  (*a)[(*n)++] = v;
  return 0;
}

static int cmp_u64(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static int has(const uint64_t *a, size_t n, uint64_t v)
{
  return n && bsearch(&v, a, n, sizeof v, cmp_u64) != NULL;
}

/* Lists the segments and acks; deletes *.tmp only when del is set */
static prd_spool_code list_dir(prd_spool *s, listing *l, int del)
{
  DIR *d = opendir(s->dir);
  struct dirent *e;
  uint64_t first;
  if (!d)
    return prd_spool_fail(s, PRD_SPOOL_IO, errno, "spool %s: cannot list", s->dir);
  while ((e = readdir(d)) != NULL) {
    size_t n = strlen(e->d_name);
    int rc = 0;
    if (parse_name(e->d_name, ".seg", &first))
      rc = push(&l->segs, &l->nsegs, &l->cap_s, first);
    else if (parse_name(e->d_name, ".ack", &first))
      rc = push(&l->acks, &l->nacks, &l->cap_a, first);
    else if (del && n > 4 && strcmp(e->d_name + n - 4, ".tmp") == 0)
      (void)unlinkat(dirfd(d), e->d_name, 0);
    if (rc != 0) {
      closedir(d);
      return prd_spool_fail(s, PRD_SPOOL_IO, ENOMEM, "spool %s: listing", s->dir);
    }
  }
  closedir(d);
  if (l->nsegs)
    qsort(l->segs, l->nsegs, sizeof *l->segs, cmp_u64);
  if (l->nacks)
    qsort(l->acks, l->nacks, sizeof *l->acks, cmp_u64);
  return PRD_SPOOL_OK;
}

/* 1: refuses on the first header of an unknown version, deleting nothing */
static prd_spool_code check_versions(prd_spool *s, const listing *l)
{
  size_t i;
  for (i = 0; i < l->nsegs; i++) {
    char *path = prd_spool_path(s, l->segs[i], ".seg");
    unsigned char h[SEG_HDR_LEN];
    prd_seg g;
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1, v = -1;
    if (fd >= 0 && prd_spool_pread_full(fd, h, sizeof h, 0) == 0)
      v = prd_spool_header_decode(h, &g);
    if (fd >= 0)
      close(fd);
    if (v > 0) {
      prd_spool_code rc = prd_spool_fail(s, PRD_SPOOL_VERSION, 0,
          "spool %s: segment %s has format version %d, this build reads version %d",
          s->dir, strrchr(path, '/') + 1, v, SPOOL_VERSION);
      free(path);
      return rc;
    }
    free(path);
  }
  return PRD_SPOOL_OK;
}

/* a valid footer as the file's last frame: the range is known */
static int read_footer(int fd, prd_seg *g, unsigned char **buf, size_t *cap)
{
  prd_frame f;
  if (g->size < SEG_HDR_LEN + FOOTER_LEN)
    return 0;
  if (prd_frame_read(fd, g->size - FOOTER_LEN, g->size, buf, cap, &f) != 1 || f.type != FRAME_FOOTER)
    return 0;
  if (prd_get64(f.body) != g->first || prd_get64(f.body + 8) + 1 < g->first ||
      prd_get64(f.body + 16) != prd_get64(f.body + 8) + 1 - g->first)
    return 0;
  g->last = prd_get64(f.body + 8);
  g->sealed = 1;
  return 1;
}

/* marks the seqs [from, to) absent: lost to damage */
static int mark_gap(prd_seg *g, uint64_t from, uint64_t to)
{
  for (; from < to; from++)
    if (prd_seg_mark(g, from) < 0)
      return -1;
  return 0;
}

/* whether [off, end) of fd holds only zero bytes (0 on a read error) */
static int zeros_only(int fd, uint64_t off, uint64_t end)
{
  unsigned char b[4096];
  while (off < end) {
    size_t n = (size_t)(end - off < sizeof b ? end - off : sizeof b), i;
    if (prd_spool_pread_full(fd, b, n, off) != 0)
      return 0;
    for (i = 0; i < n; i++)
      if (b[i])
        return 0;
    off += n;
  }
  return 1;
}

/* 3: an unsealed segment, frame by frame */
static prd_spool_code scan(prd_spool *s, int fd, prd_seg *g, const char *path,
                           unsigned char **buf, size_t *cap)
{
  uint64_t off = SEG_HDR_LEN, expect = g->first;
  for (;;) {
    prd_frame f;
    int rc = prd_frame_read(fd, off, g->size, buf, cap, &f);
    uint64_t next;
    if (rc < 0)
      return prd_spool_fail(s, PRD_SPOOL_IO, errno, "spool %s: reading %s", s->dir, path);
    if (rc == 1 && f.type == FRAME_FOOTER)
      break;
    if (rc == 1 && prd_get64(f.body) >= expect) {
      uint64_t seq = prd_get64(f.body);
      if (mark_gap(g, expect, seq) != 0)
        return prd_spool_fail(s, PRD_SPOOL_IO, ENOMEM, "spool %s", s->dir);
      g->last = seq;
      expect = seq + 1;
      off += f.size;
      continue;
    }
    next = off < g->size ? prd_frame_resync(fd, off, g->size, expect, buf, cap) : 0;
    if (next) {
      s->m.damaged++;
      g->damaged = 1;
      off = next;
      continue;
    }
    if (off < g->size && g->prealloc && zeros_only(fd, off, g->size)) {
      g->size = off;      /* a preallocated one's unused space: kept, not counted */
    } else if (off < g->size) {  /* a torn tail: cut */
      s->m.cut++;
      if (truncate(path, (off_t)off) == 0)
        g->size = g->alloc = off;
    }
    break;
  }
  g->read_hi = g->size;
  return PRD_SPOOL_OK;
}

/* 4: the acks of g; a torn last entry is truncated so appends stay aligned */
static void load_acks(prd_spool *s, prd_seg *g)
{
  char *path = prd_spool_path(s, g->first, ".ack");
  unsigned char b[4096];
  uint64_t off = 0;
  struct stat st;
  int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
  if (fd < 0) {
    free(path);
    return;
  }
  if (fstat(fd, &st) == 0) {
    g->ack_size = (uint64_t)st.st_size - (uint64_t)st.st_size % ACK_LEN;
    if ((uint64_t)st.st_size != g->ack_size)
      (void)truncate(path, (off_t)g->ack_size);
  }
  while (off < g->ack_size) {
    size_t n = (size_t)(g->ack_size - off < sizeof b ? g->ack_size - off : sizeof b), i;
    if (prd_spool_pread_full(fd, b, n, off) != 0)
      break;
    for (i = 0; i + ACK_LEN <= n; i += ACK_LEN) {
      uint64_t seq = prd_get64(b + i);
      if (prd_get32(b + i + 12) != prd_crc32c(0, b + i, 12) || seq < g->first)
        continue;
      if (seq <= g->last)
        (void)prd_seg_mark(g, seq);
      else if (seq > g->ack_max)
        g->ack_max = seq;
    }
    off += n;
  }
  close(fd);
  free(path);
}

/* 2-4 for one segment file; *g NULL when the file was set aside */
static prd_spool_code load_seg(prd_spool *s, uint64_t first, unsigned char **buf, size_t *cap, prd_seg **out)
{
  char *path = prd_spool_path(s, first, ".seg");
  unsigned char h[SEG_HDR_LEN];
  struct stat st;
  prd_seg *g = prd_seg_new(first);
  prd_spool_code rc = PRD_SPOOL_OK;
  int fd;
  *out = NULL;
  if (!path || !g) {
    free(path);
    prd_seg_free(g);
    return prd_spool_fail(s, PRD_SPOOL_IO, ENOMEM, "spool %s", s->dir);
  }
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || fstat(fd, &st) != 0) {
    rc = prd_spool_fail(s, PRD_SPOOL_IO, errno, "spool %s: cannot open %s", s->dir, path);
  } else if (st.st_size < SEG_HDR_LEN) {
    s->m.cut++;           /* died while creating it */
    (void)unlink(path);
  } else {
    if (prd_spool_pread_full(fd, h, sizeof h, 0) != 0 || prd_spool_header_decode(h, g) != 0 ||
        g->first != first) {
      /* a damaged header: its frames may be intact; the name gives the
       * first seq, SPOOL the id; moved to damaged/ once done */
      g->first = first;
      g->last = first - 1;
      memcpy(g->spool_id, s->id, 16);
      g->created_ms = (int64_t)st.st_mtime * 1000;
      s->m.damaged++;
      g->damaged = 1;
    }
    g->size = g->alloc = (uint64_t)st.st_size;
    if (!read_footer(fd, g, buf, cap))
      rc = scan(s, fd, g, path, buf, cap);
    if (rc == PRD_SPOOL_OK) {
      load_acks(s, g);
      *out = g;
      g = NULL;
    }
  }
  if (fd >= 0)
    close(fd);
  prd_seg_free(g);
  free(path);
  return rc;
}

static prd_spool_code load_all(prd_spool *s, listing *l)
{
  unsigned char *buf = NULL;
  size_t cap = 0, i;
  prd_spool_code rc = PRD_SPOOL_OK;
  for (i = 0; i < l->nacks; i++) {
    if (!has(l->segs, l->nsegs, l->acks[i])) {  /* acks without data: a death between the unlinks */
      char *p = prd_spool_path(s, l->acks[i], ".ack");
      if (p)
        (void)unlink(p);
      free(p);
    }
  }
  for (i = 0; i < l->nsegs && rc == PRD_SPOOL_OK; i++) {
    prd_seg *g;
    rc = load_seg(s, l->segs[i], &buf, &cap, &g);
    if (rc == PRD_SPOOL_OK && g) {
      /* past every seq on disk, acked ones included (an ack can outlive
       * a record lost at the tail), and past an empty segment's name */
      if (s->next_seq < g->last + 1)
        s->next_seq = g->last + 1;
      if (s->next_seq < g->first + 1)
        s->next_seq = g->first + 1;
      if (s->next_seq < g->ack_max + 1)
        s->next_seq = g->ack_max + 1;
      g->sealed = 1;  /* an earlier process's: never written again */
      s->bytes += g->alloc + g->ack_size;
      if (prd_spool_add_seg(s, g) != 0) {
        prd_seg_free(g);
        rc = prd_spool_fail(s, PRD_SPOOL_IO, ENOMEM, "spool %s", s->dir);
      }
    }
  }
  free(buf);
  return rc;
}

prd_spool_code prd_spool_recover(prd_spool *s)
{
  listing l;
  prd_spool_code rc;
  size_t i;
  memset(&l, 0, sizeof l);
  rc = list_dir(s, &l, 0);
  if (rc == PRD_SPOOL_OK)
    rc = check_versions(s, &l);
  if (rc == PRD_SPOOL_OK) {
    free(l.segs);
    free(l.acks);
    memset(&l, 0, sizeof l);
    rc = list_dir(s, &l, 1);
  }
  if (rc == PRD_SPOOL_OK)
    rc = load_all(s, &l);
  free(l.segs);
  free(l.acks);
  if (rc != PRD_SPOOL_OK)
    return rc;
  if (s->next_seq == 0)
    s->next_seq = 1;
  /* A full or failing disk must not stop the backlog's delivery (I12):
   * without a new segment the spool opens all the same, appends retry
   * creating one (SPOOL_IO until acks free room), and the newest old
   * segment stays, so the seqs never go back. */
  if (prd_spool_new_active(s) != PRD_SPOOL_OK) {
    s->err[0] = 0;
    s->err_errno = 0;
  }
  for (i = s->nsegs; i-- > 1;)  /* oldest first would shift the rest: any order is fine */
    prd_spool_maybe_drop(s, s->segs[i - 1]);
  return PRD_SPOOL_OK;
}
