/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * spool_read.c: the replay cursor (I10): every record not acked, oldest
 * seq first, read from the segment files one frame at a time with its
 * CRC checked; memory is one record buffer (and a 64 KiB chunk while
 * looking past damage).
 *
 * In flight or to re-send is the caller's to track: the cursor is one
 * forward pass that skips acked records; prd_spool_rewind starts a new
 * pass, which gives again every record still not acked (those the
 * transport timed out on, and those still in flight, which the caller
 * skips by seq). Records appended after the cursor reached the end come
 * on a later call, in order.
 *
 * Damage the open did not scan (a bad frame inside a sealed segment) is
 * found here: skipped, counted once in damaged, the seqs it hid marked
 * done, and the file moved to damaged/ instead of deleted at the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "spool_int.h"

void prd_spool_cursor_init(prd_spool_cursor *c)
{
  memset(c, 0, sizeof *c);
  c->fd = -1;
}

void prd_spool_rewind(prd_spool_cursor *c)
{
  if (c->fd >= 0)
    close(c->fd);
  c->fd = -1;
  c->seg_first = 0;
  c->off = 0;
  c->expect = 0;
}

void prd_spool_cursor_free(prd_spool_cursor *c)
{
  prd_spool_rewind(c);
  free(c->buf);
  free(c->hdrs);
  c->buf = NULL;
  c->hdrs = NULL;
  c->cap = c->hcap = 0;
}

static prd_seg *seg_at_or_after(prd_spool *s, uint64_t first)
{
  size_t i;
  for (i = 0; i < s->nsegs; i++)
    if (s->segs[i]->first >= first)
      return s->segs[i];
  return NULL;
}

/* done with g: seqs never found in it were lost to damage */
static void finish_seg(prd_spool *s, prd_spool_cursor *c, prd_seg *g)
{
  uint64_t seq;
  close(c->fd);
  c->fd = -1;
  c->seg_first = g->first + 1;
  for (seq = c->expect; seq <= g->last; seq++)
    (void)prd_seg_mark(g, seq);
  prd_spool_maybe_drop(s, g);
}

/* the body's fields into r (pointers into the body); 0 if inconsistent */
static int parse(prd_spool_cursor *c, const prd_seg *g, const unsigned char *b, uint32_t len, prd_spool_record *r)
{
  uint32_t flags = prd_get32(b + 20), n, i;
  uint64_t tl = prd_get32(b + 24), kl = prd_get32(b + 28), vl = prd_get32(b + 32), at;
  memset(r, 0, sizeof *r);
  r->seq = prd_get64(b);
  r->timestamp_ms = (int64_t)prd_get64(b + 8);
  r->partition = (int32_t)prd_get32(b + 16);
  n = prd_get32(b + 36);
  at = RECORD_FIXED_LEN + tl + kl + vl;
  if (at > len || n > (len - at) / 8)
    return 0;
  r->topic = (const char *)b + RECORD_FIXED_LEN;
  r->topic_len = (size_t)tl;
  r->key = flags & REC_KEY_NIL ? NULL : b + RECORD_FIXED_LEN + tl;
  r->key_len = r->key ? (size_t)kl : 0;
  r->value = flags & REC_VALUE_NIL ? NULL : b + RECORD_FIXED_LEN + tl + kl;
  r->value_len = r->value ? (size_t)vl : 0;
  if (n > c->hcap) {
    prd_spool_header *h = realloc(c->hdrs, n * sizeof *h);
    if (!h)
      return 0;
    c->hdrs = h;
    c->hcap = n;
  }
  for (i = 0; i < n; i++) {
    prd_spool_header *h = &c->hdrs[i];
    uint64_t nl, hv;
    if (at + 4 > len || (nl = prd_get32(b + at)) + at + 8 > len)
      return 0;
    h->name = (const char *)b + at + 4;
    h->name_len = (size_t)nl;
    at += 4 + nl;
    hv = prd_get32(b + at);
    at += 4;
    h->value = hv == NIL_LEN ? NULL : (const char *)b + at;
    h->value_len = hv == NIL_LEN ? 0 : (size_t)hv;
    if (hv != NIL_LEN && (at += hv) > len)
      return 0;
  }
  r->headers = n ? c->hdrs : NULL;
  r->header_count = n;
  memcpy(r->id, g->spool_id, 16);
  prd_put64(r->id + 16, r->seq);
  return 1;
}

static prd_spool_code open_next(prd_spool *s, prd_spool_cursor *c, prd_seg **out)
{
  prd_seg *g = seg_at_or_after(s, c->seg_first);
  char *path;
  *out = g;
  if (!g)
    return PRD_SPOOL_END;
  path = prd_spool_path(s, g->first, ".seg");
  c->fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
  free(path);
  if (c->fd < 0)
    return prd_spool_fail(s, PRD_SPOOL_IO, errno, "spool %s: cannot open segment %llu", s->dir,
                          (unsigned long long)g->first);
  c->seg_first = g->first;
  c->off = SEG_HDR_LEN;
  c->expect = g->first;
  return PRD_SPOOL_OK;
}

/* one step at c's position: 1 a record in r, 0 moved on, else a code */
static int step(prd_spool *s, prd_spool_cursor *c, prd_seg *g, prd_spool_record *r)
{
  int is_active = g == s->segs[s->nsegs - 1] && s->active_fd >= 0;
  prd_frame f;
  int rc = prd_frame_read(c->fd, c->off, g->size, &c->buf, &c->cap, &f);
  uint64_t next;
  if (rc < 0)
    return -(int)prd_spool_fail(s, PRD_SPOOL_IO, errno, "spool %s: reading segment %llu", s->dir,
                                (unsigned long long)g->first);
  if (rc == 1 && f.type == FRAME_RECORD && prd_get64(f.body) >= c->expect) {
    uint64_t seq = prd_get64(f.body);
    for (; c->expect < seq; c->expect++)
      (void)prd_seg_mark(g, c->expect);
    c->expect = seq + 1;
    c->off += f.size;
    if (c->off > g->read_hi)
      g->read_hi = c->off;
    if (prd_seg_is_done(g, seq))
      return 0;
    if (parse(c, g, f.body, f.len, r))
      return 1;
    (void)prd_seg_mark(g, seq);  /* a valid CRC over an impossible layout */
    s->m.damaged++;
    g->damaged = 1;
    return 0;
  }
  if (rc == 1 && f.type == FRAME_RECORD) {  /* an older seq again: skip */
    c->off += f.size;
    return 0;
  }
  if (is_active && c->off >= g->size)
    return -PRD_SPOOL_END;
  next = rc == 0 && c->off < g->size ? prd_frame_resync(c->fd, c->off, g->size, c->expect, &c->buf, &c->cap) : 0;
  if (next && !is_active) {
    if (c->off >= g->read_hi) {
      s->m.damaged++;
      g->damaged = 1;
    }
    c->off = next;
    return 0;
  }
  if (is_active)
    return -PRD_SPOOL_END;
  finish_seg(s, c, g);  /* a footer, the end, or nothing valid after damage */
  return 0;
}

int prd_spool_cursor_follow(prd_spool *s, prd_spool_cursor *c, uint64_t seq, int move)
{
  prd_seg *g = s->nsegs ? s->segs[s->nsegs - 1] : NULL;
  if (!g || s->active_fd < 0 || c->fd < 0 || c->seg_first != g->first || c->expect != seq ||
      g->last != seq)
    return 0;
  if (move) {
    c->off = g->size;
    c->expect = seq + 1;
    if (c->off > g->read_hi)
      g->read_hi = c->off;
  }
  return 1;
}

int prd_spool_cursor_at_end(const prd_spool *s, const prd_spool_cursor *c)
{
  const prd_seg *g = s->nsegs ? s->segs[s->nsegs - 1] : NULL;
  return g && s->active_fd >= 0 && c->fd >= 0 && c->seg_first == g->first && c->off >= g->size;
}

prd_spool_code prd_spool_next(prd_spool *s, prd_spool_cursor *c, prd_spool_record *r)
{
  for (;;) {
    prd_seg *g;
    int rc;
    if (c->fd < 0) {
      prd_spool_code oc = open_next(s, c, &g);
      if (oc != PRD_SPOOL_OK)
        return oc;
    } else if (!(g = seg_at_or_after(s, c->seg_first)) || g->first != c->seg_first) {
      close(c->fd);  /* its segment was deleted meanwhile */
      c->fd = -1;
      c->seg_first++;
      continue;
    }
    rc = step(s, c, g, r);
    if (rc == 1)
      return PRD_SPOOL_OK;
    if (rc < 0)
      return (prd_spool_code)-rc;
  }
}
