/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * spool_test.c: the spool's storage layer (src/spool/) proved on real
 * files against docs/design/spool.md's invariants (I1-I16; I17 needs
 * nginx). Each case runs in a forked child in a fresh temporary folder,
 * so a crash is an error of that case alone; the last line is busted's
 * summary ("N successes / N failures / N errors / N pending : T seconds")
 * so scripts/test.sh counts the cases. Exit status 1 when any failed.
 *
 * PRD_SPOOL_TEST_SEED sets the random-kill test's seed (printed); a
 * case name as argument runs that case alone.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#ifdef __linux__
#include <sys/mount.h>
#endif
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "crc32c.h"
#include "spool.h"

/* ---- harness ---- */

static char dir[256];          /* the case's spool folder */
static char root[64];         /* its temporary parent */
static int failed;
static int skipped;            /* the case could not run here (said why) */

#define CHECK(cond, ...) do { if (!(cond)) { fail_at(__LINE__, #cond, __VA_ARGS__); return; } } while (0)
#define CHECK_CODE(got, want, s) CHECK((got) == (want), "%s, expected %s: %s", prd_spool_code_name(got), \
                                       prd_spool_code_name(want), (s) ? prd_spool_error(s) : "")

static void fail_at(int line, const char *cond, const char *fmt, ...)
{
  va_list ap;
  fprintf(stderr, "    line %d: %s: ", line, cond);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  failed = 1;
}

static void rm_rf(const char *path)
{
  DIR *d = opendir(path);
  struct dirent *e;
  if (!d) {
    (void)unlink(path);
    return;
  }
  while ((e = readdir(d)) != NULL) {
    char p[1024];
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    snprintf(p, sizeof p, "%s/%s", path, e->d_name);
    rm_rf(p);
  }
  closedir(d);
  (void)rmdir(path);
}

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- records: every field a function of i, so a replay can be checked byte for byte ---- */

typedef struct {
  char topic[16], key[16];
  unsigned char value[600];
  prd_spool_header h[2];
  prd_spool_record r;
} rec_buf;

static void make_record(uint64_t i, rec_buf *b)
{
  size_t n = (size_t)((i * 37) % 590), j;
  memset(b, 0, sizeof *b);
  snprintf(b->topic, sizeof b->topic, "topic-%u", (unsigned)(i % 3));
  snprintf(b->key, sizeof b->key, "k%llu", (unsigned long long)i);
  for (j = 0; j < n; j++)
    b->value[j] = (unsigned char)(i * 131 + j * 7);
  b->r.topic = b->topic;
  b->r.topic_len = strlen(b->topic);
  b->r.partition = (int32_t)(i % 4) - 1;
  b->r.key = i % 5 ? b->key : NULL;              /* nil key every 5th */
  b->r.key_len = i % 5 ? strlen(b->key) : 0;
  b->r.value = i % 7 == 3 ? NULL : b->value;     /* nil value, and empty ones (n = 0) */
  b->r.value_len = i % 7 == 3 ? 0 : n;
  b->r.timestamp_ms = 1700000000000LL + (int64_t)i;
  if (i % 2) {
    b->h[0].name = "trace";
    b->h[0].name_len = 5;
    b->h[0].value = b->key;
    b->h[0].value_len = strlen(b->key);
    b->h[1].name = "nil-header";
    b->h[1].name_len = 10;
    b->h[1].value = NULL;
    b->r.headers = b->h;
    b->r.header_count = 2;
  }
}

static int same_bytes(const void *a, size_t al, const void *b, size_t bl)
{
  if ((a == NULL) != (b == NULL) || al != bl)
    return 0;
  return al == 0 || memcmp(a, b, al) == 0;
}

/* 1 when r (from prd_spool_next) holds record i exactly */
static int record_is(const prd_spool_record *r, uint64_t i)
{
  rec_buf b;
  size_t j;
  make_record(i, &b);
  if (!same_bytes(r->topic, r->topic_len, b.r.topic, b.r.topic_len) || r->partition != b.r.partition ||
      !same_bytes(r->key, r->key_len, b.r.key, b.r.key_len) ||
      !same_bytes(r->value, r->value_len, b.r.value, b.r.value_len) ||
      r->timestamp_ms != b.r.timestamp_ms || r->header_count != b.r.header_count)
    return 0;
  for (j = 0; j < r->header_count; j++)
    if (!same_bytes(r->headers[j].name, r->headers[j].name_len, b.h[j].name, b.h[j].name_len) ||
        !same_bytes(r->headers[j].value, r->headers[j].value_len, b.h[j].value, b.h[j].value_len))
      return 0;
  return 1;
}

static prd_spool_options opts(uint64_t segment_bytes)
{
  prd_spool_options o;
  prd_spool_options_init(&o);
  if (segment_bytes)
    o.segment_bytes = segment_bytes;
  return o;
}

static prd_spool *open_ok(const prd_spool_options *o)
{
  prd_spool *s = NULL;
  char err[512];
  prd_spool_code rc = prd_spool_open(dir, o, &s, err, sizeof err);
  if (rc != PRD_SPOOL_OK) {
    fprintf(stderr, "    open %s: %s %s\n", dir, prd_spool_code_name(rc), err);
    return NULL;
  }
  return s;
}

/* appends records first..first+n-1 (content i); seqs[k] gets each seq */
static int append_n(prd_spool *s, uint64_t first, size_t n, uint64_t *seqs)
{
  size_t k;
  for (k = 0; k < n; k++) {
    rec_buf b;
    uint64_t seq;
    make_record(first + k, &b);
    if (prd_spool_append(s, &b.r, &seq) != PRD_SPOOL_OK) {
      fprintf(stderr, "    append %zu: %s\n", k, prd_spool_error(s));
      return -1;
    }
    if (seqs)
      seqs[k] = seq;
  }
  return 0;
}

/* Replays everything: seqs and contents must be exactly want_seq[k] ->
 * want_i[k] in that order. Returns the count replayed, -1 on mismatch. */
static long replay_expect(prd_spool *s, const uint64_t *want_seq, const uint64_t *want_i, size_t n)
{
  prd_spool_cursor c;
  prd_spool_record r;
  prd_spool_code rc;
  long k = 0;
  prd_spool_cursor_init(&c);
  while ((rc = prd_spool_next(s, &c, &r)) == PRD_SPOOL_OK) {
    if ((size_t)k >= n || r.seq != want_seq[k] || !record_is(&r, want_i[k])) {
      fprintf(stderr, "    replay #%ld: seq %llu, expected %llu (%s)\n", k, (unsigned long long)r.seq,
              (size_t)k < n ? (unsigned long long)want_seq[k] : 0ULL,
              (size_t)k < n && r.seq == want_seq[k] ? "content differs" : "seq differs");
      k = -1;
      break;
    }
    k++;
  }
  if (rc != PRD_SPOOL_OK && rc != PRD_SPOOL_END) {
    fprintf(stderr, "    replay: %s\n", prd_spool_error(s));
    k = -1;
  }
  prd_spool_cursor_free(&c);
  return k;
}

static char *path_of(const char *name)
{
  static char p[2][512];
  static int w;
  w ^= 1;
  snprintf(p[w], sizeof p[w], "%s/%s", dir, name);
  return p[w];
}

static const char *seg_name(uint64_t first, const char *ext)
{
  static char n[2][64];
  static int w;
  w ^= 1;
  snprintf(n[w], sizeof n[w], "%020llu%s", (unsigned long long)first, ext);
  return n[w];
}

static long file_size(const char *path)
{
  struct stat st;
  return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static unsigned char *slurp(const char *path, long *len);

/* Where the frames of a segment file end: its length once sealed; the
 * active segment's file is longer (preallocated, zeros after its last
 * frame), so tests that cut or damage it find its frames this way.
 * Walks the frames' markers and lengths (little-endian). */
static long frames_end(const char *path)
{
  long len, off = 64;
  unsigned char *b = slurp(path, &len);
  while (b && off + 16 <= len && b[off] == 'S' && b[off + 1] == 'P' && b[off + 2] == 'R' && b[off + 3] == 'L') {
    unsigned long n = b[off + 4] | (unsigned long)b[off + 5] << 8 | (unsigned long)b[off + 6] << 16 |
                      (unsigned long)b[off + 7] << 24;
    off += 16 + (long)((n + 7) & ~7ul);
  }
  if (!b)
    return -1;
  free(b);
  return off;
}

static unsigned char *slurp(const char *path, long *len)
{
  FILE *f = fopen(path, "rb");
  unsigned char *b;
  *len = file_size(path);
  if (!f || *len < 0)
    return f ? (fclose(f), NULL) : NULL;
  b = malloc((size_t)*len + 1);
  if (b && fread(b, 1, (size_t)*len, f) != (size_t)*len) {
    free(b);
    b = NULL;
  }
  fclose(f);
  return b;
}

static int spit(const char *path, const void *b, size_t len)
{
  FILE *f = fopen(path, "wb");
  int ok = f && fwrite(b, 1, len, f) == len;
  if (f)
    fclose(f);
  return ok ? 0 : -1;
}

static long count_files(const char *ext)
{
  DIR *d = opendir(dir);
  struct dirent *e;
  long n = 0;
  if (!d)
    return -1;
  while ((e = readdir(d)) != NULL) {
    size_t l = strlen(e->d_name);
    if (l > strlen(ext) && !strcmp(e->d_name + l - strlen(ext), ext))
      n++;
  }
  closedir(d);
  return n;
}

/* the sum of the .seg and .ack sizes in dir */
static long disk_bytes(void)
{
  DIR *d = opendir(dir);
  struct dirent *e;
  long n = 0;
  if (!d)
    return -1;
  while ((e = readdir(d)) != NULL) {
    size_t l = strlen(e->d_name);
    if (l > 4 && (!strcmp(e->d_name + l - 4, ".seg") || !strcmp(e->d_name + l - 4, ".ack")))
      n += file_size(path_of(e->d_name));
  }
  closedir(d);
  return n;
}

/* Crash image: the files of a spool still open (its segment unsealed),
 * as a kill -9 would leave them. */
typedef struct {
  unsigned char *spool, *seg;
  long spool_len, seg_len;
  uint64_t seg_first;
} image;

static int take_image(image *im, uint64_t seg_first)
{
  im->seg_first = seg_first;
  im->spool = slurp(path_of("SPOOL"), &im->spool_len);
  im->seg = slurp(path_of(seg_name(seg_first, ".seg")), &im->seg_len);
  return im->spool && im->seg ? 0 : -1;
}

/* the folder holds the image only, its segment cut to seg_len bytes */
static int restore_image(const image *im, long seg_len)
{
  rm_rf(dir);
  if (mkdir(dir, 0700) != 0 || spit(path_of("SPOOL"), im->spool, (size_t)im->spool_len) != 0)
    return -1;
  return spit(path_of(seg_name(im->seg_first, ".seg")), im->seg, (size_t)seg_len);
}

static void free_image(image *im)
{
  free(im->spool);
  free(im->seg);
}

static void metrics(prd_spool *s, prd_spool_metrics *m) { prd_spool_metrics_get(s, m); }

static void fill_seq(uint64_t *a, size_t n, uint64_t from)
{
  size_t k;
  for (k = 0; k < n; k++)
    a[k] = from + k;
}

/* ---- cases ---- */

/* the known vectors, with the tables (hw 0) or the CPU's instruction */
static void crc32c_vectors(int hw)
{
  unsigned char z[32], f[32];
  const char *v = "123456789";
  prd_crc32c_hardware(hw);
  memset(z, 0, sizeof z);
  memset(f, 0xff, sizeof f);
  CHECK(prd_crc32c(0, v, 9) == 0xE3069283u, "hw %d: got %08x", hw, prd_crc32c(0, v, 9));
  CHECK(prd_crc32c(0, "", 0) == 0, "empty");
  CHECK(prd_crc32c(0, z, 32) == 0x8A9136AAu, "32 zeros: %08x", prd_crc32c(0, z, 32));
  CHECK(prd_crc32c(0, f, 32) == 0x62A8AB43u, "32 x ff: %08x", prd_crc32c(0, f, 32));
  CHECK(prd_crc32c(prd_crc32c(0, v, 4), v + 4, 5) == 0xE3069283u, "in two parts");
}

static void t_crc32c(void)
{
  unsigned char b[300];
  size_t i, off, len;
  crc32c_vectors(0);
  crc32c_vectors(1);
  for (i = 0; i < sizeof b; i++)
    b[i] = (unsigned char)(i * 131 + 7);
  for (off = 0; off < 9; off++)         /* both ways agree, at any alignment */
    for (len = 0; len + off <= sizeof b; len += 13) {
      uint32_t soft, hard;
      prd_crc32c_hardware(0);
      soft = prd_crc32c(0, b + off, len);
      prd_crc32c_hardware(1);
      hard = prd_crc32c(0, b + off, len);
      CHECK(soft == hard, "offset %zu, %zu bytes: %08x, %08x", off, len, soft, hard);
    }
}

/* I1, I10, I13: records come back oldest first, byte for byte, across
 * segments and reopens; acks end them; seqs never go back; ids stable */
static void t_append_reopen_replay(void)
{
  prd_spool_options o = opts(8192);
  uint64_t seqs[500], want[500], wi[500], next;
  unsigned char id1[16], id2[16];
  prd_spool_metrics m;
  prd_spool *s = open_ok(&o);
  size_t k, n;
  CHECK(s, "open");
  CHECK(append_n(s, 0, 500, seqs) == 0, "append");
  for (k = 0; k < 500; k++)
    CHECK(seqs[k] == k + 1, "seq %llu at %zu", (unsigned long long)seqs[k], k);
  fill_seq(wi, 500, 0);
  CHECK(replay_expect(s, seqs, wi, 500) == 500, "replay in the writing process");
  metrics(s, &m);
  CHECK(m.records == 500 && m.segments > 5, "records %llu segments %llu", (unsigned long long)m.records,
        (unsigned long long)m.segments);
  CHECK((long)m.bytes == disk_bytes(), "bytes %llu, on disk %ld", (unsigned long long)m.bytes, disk_bytes());
  prd_spool_id(s, id1);
  prd_spool_close(s);

  s = open_ok(&o);
  CHECK(s, "reopen");
  prd_spool_id(s, id2);
  CHECK(!memcmp(id1, id2, 16), "the spool id survives a reopen");
  CHECK(replay_expect(s, seqs, wi, 500) == 500, "replay after reopen");
  for (k = 0; k < 500; k += 2)
    CHECK_CODE(prd_spool_ack(s, seqs[k], k % 4 ? PRD_SPOOL_FAILED : PRD_SPOOL_DELIVERED), PRD_SPOOL_OK, s);
  CHECK_CODE(prd_spool_ack(s, seqs[0], PRD_SPOOL_DELIVERED), PRD_SPOOL_OK, s); /* twice: a no-op */
  CHECK_CODE(prd_spool_ack(s, 100000, PRD_SPOOL_DELIVERED), PRD_SPOOL_INVALID, s);
  prd_spool_close(s);

  s = open_ok(&o);
  CHECK(s, "third open");
  for (n = 0, k = 1; k < 500; k += 2, n++) {
    want[n] = seqs[k];
    wi[n] = k;
  }
  CHECK(replay_expect(s, want, wi, n) == (long)n, "only the records not acked");
  {
    prd_spool_cursor c;
    prd_spool_record r;
    prd_spool_cursor_init(&c);
    CHECK(prd_spool_next(s, &c, &r) == PRD_SPOOL_OK && r.seq == 2, "first");
    CHECK(!memcmp(r.id, id1, 16) && r.id[16] == 2 && r.id[17] == 0, "id = spool id + seq");
    while (prd_spool_next(s, &c, &r) == PRD_SPOOL_OK)
      ;
    CHECK(append_n(s, 1000, 1, &next) == 0, "append after the end");
    CHECK(next > 500, "seq %llu", (unsigned long long)next);
    CHECK(prd_spool_next(s, &c, &r) == PRD_SPOOL_OK && r.seq == next && record_is(&r, 1000),
          "a record appended after the cursor reached the end comes next");
    CHECK(prd_spool_next(s, &c, &r) == PRD_SPOOL_END, "then the end");
    prd_spool_rewind(&c);
    CHECK(prd_spool_next(s, &c, &r) == PRD_SPOOL_OK && r.seq == 2, "rewind: from the oldest again");
    prd_spool_cursor_free(&c);
  }
  for (k = 1; k < 500; k += 2)
    CHECK_CODE(prd_spool_ack(s, seqs[k], PRD_SPOOL_DELIVERED), PRD_SPOOL_OK, s);
  CHECK_CODE(prd_spool_ack(s, next, PRD_SPOOL_DELIVERED), PRD_SPOOL_OK, s);
  metrics(s, &m);
  CHECK(m.records == 0 && m.segments == 1, "all acked: %llu records, %llu segments (I7)",
        (unsigned long long)m.records, (unsigned long long)m.segments);
  CHECK(count_files(".seg") == 1 && count_files(".ack") <= 1, "files deleted: %ld seg", count_files(".seg"));
  prd_spool_close(s);
  s = open_ok(&o);
  CHECK(s, "fourth open");
  CHECK(append_n(s, 0, 1, seqs) == 0 && seqs[0] > next, "seqs never go back: %llu after %llu",
        (unsigned long long)seqs[0], (unsigned long long)next);
  CHECK(count_files(".seg") == 1, "the empty segments of earlier opens deleted: %ld", count_files(".seg"));
  prd_spool_close(s);
}

/* I1, I3, I11: the last frame cut at every byte of it: cut and counted,
 * every earlier record intact, the next append works */
static void t_torn_tail_every_byte(void)
{
  prd_spool_options o = opts(0);
  uint64_t seqs[6], wi[6];
  long start, end, off;
  image im;
  prd_spool *s = open_ok(&o);
  CHECK(s, "open");
  CHECK(append_n(s, 20, 5, seqs) == 0, "append");
  start = frames_end(path_of(seg_name(1, ".seg")));
  CHECK(append_n(s, 25, 1, seqs + 5) == 0, "append the last");
  end = frames_end(path_of(seg_name(1, ".seg")));
  CHECK(take_image(&im, 1) == 0, "image");
  prd_spool_close(s);
  fill_seq(wi, 6, 20);
  for (off = start; off <= end; off++) {
    prd_spool_metrics m;
    uint64_t seq;
    int torn = off > start && off < end;
    CHECK(restore_image(&im, off) == 0, "restore");
    s = open_ok(&o);
    CHECK(s, "open cut at %ld", off);
    metrics(s, &m);
    CHECK(m.cut == (uint64_t)torn, "cut %llu at offset %ld (frame %ld..%ld)", (unsigned long long)m.cut, off,
          start, end);
    CHECK(replay_expect(s, seqs, wi, off == end ? 6 : 5) == (off == end ? 6 : 5), "records at offset %ld", off);
    CHECK(append_n(s, 99, 1, &seq) == 0, "append after the cut");
    CHECK(seq >= 6, "seq %llu", (unsigned long long)seq);
    prd_spool_close(s);
    s = open_ok(&o);
    CHECK(s, "reopen");
    metrics(s, &m);
    CHECK(m.cut == 0 && m.records == (off == end ? 7u : 6u), "a second open finds nothing to cut (%llu records)",
          (unsigned long long)m.records);
    prd_spool_close(s);
  }
  free_image(&im);
}

/* The image's segment header without SEG_FLAG_PREALLOC (flags at 10,
 * the CRC of the 60 bytes before at 60): a segment as a build that
 * appended with write() left it. */
static void without_prealloc_flag(image *im)
{
  uint32_t crc;
  im->seg[10] = im->seg[11] = 0;
  crc = prd_crc32c(0, im->seg, 60);
  im->seg[60] = (unsigned char)crc;
  im->seg[61] = (unsigned char)(crc >> 8);
  im->seg[62] = (unsigned char)(crc >> 16);
  im->seg[63] = (unsigned char)(crc >> 24);
}

/* I3, I11: the preallocated tail of an unsealed segment (a kill -9 left
 * it): zeros after the last frame, neither cut nor counted; the file
 * keeps its length (counted in bytes) until its records are done */
static void t_prealloc_tail(void)
{
  prd_spool_options o = opts(0);
  uint64_t seqs[8], wi[8];
  long end;
  prd_spool_metrics m;
  image im;
  prd_spool *s = open_ok(&o);
  uint64_t seq = 0;
  CHECK(s, "open");
  CHECK(append_n(s, 0, 8, seqs) == 0, "append");
  end = frames_end(path_of(seg_name(1, ".seg")));
  CHECK(take_image(&im, 1) == 0, "image");
  CHECK(im.seg_len > end, "preallocated: %ld bytes, frames end at %ld", im.seg_len, end);
  prd_spool_close(s);
  CHECK(restore_image(&im, im.seg_len) == 0, "restore");
  s = open_ok(&o);
  CHECK(s, "open");
  metrics(s, &m);
  CHECK(m.cut == 0 && m.damaged == 0, "cut %llu damaged %llu", (unsigned long long)m.cut, (unsigned long long)m.damaged);
  CHECK(file_size(path_of(seg_name(1, ".seg"))) == im.seg_len && (long)m.bytes == disk_bytes(),
        "kept: %ld bytes, metrics %llu", file_size(path_of(seg_name(1, ".seg"))), (unsigned long long)m.bytes);
  fill_seq(wi, 8, 0);
  CHECK(replay_expect(s, seqs, wi, 8) == 8, "all 8 records");
  CHECK(append_n(s, 8, 1, &seq) == 0 && seq == 9, "the next seq follows: %llu", (unsigned long long)seq);
  prd_spool_close(s);
  s = open_ok(&o);
  CHECK(s, "reopen");
  metrics(s, &m);
  CHECK(m.cut == 0 && m.records == 9, "cut %llu records %llu", (unsigned long long)m.cut, (unsigned long long)m.records);
  prd_spool_close(s);
  free_image(&im);
}

/* I3, I11: a zero-filled tail (a power loss after the size grew) in a
 * segment not preallocated: cut */
static void t_zero_tail(void)
{
  prd_spool_options o = opts(0);
  uint64_t seqs[8], wi[8];
  unsigned char *z = calloc(1, 4096);
  long start, end;
  prd_spool_metrics m;
  image im;
  prd_spool *s = open_ok(&o);
  CHECK(s && z, "open");
  CHECK(append_n(s, 0, 7, seqs) == 0, "append");
  start = frames_end(path_of(seg_name(1, ".seg")));
  CHECK(append_n(s, 7, 1, seqs + 7) == 0, "append the last");
  end = frames_end(path_of(seg_name(1, ".seg")));
  CHECK(take_image(&im, 1) == 0, "image");
  without_prealloc_flag(&im);
  prd_spool_close(s);
  fill_seq(wi, 8, 0);
  /* zeros after the last frame */
  CHECK(restore_image(&im, end) == 0, "restore");
  {
    FILE *f = fopen(path_of(seg_name(1, ".seg")), "ab");
    CHECK(f && fwrite(z, 1, 4096, f) == 4096, "zeros");
    fclose(f);
  }
  s = open_ok(&o);
  CHECK(s, "open");
  metrics(s, &m);
  CHECK(m.cut == 1 && m.damaged == 0, "cut %llu damaged %llu", (unsigned long long)m.cut, (unsigned long long)m.damaged);
  CHECK(file_size(path_of(seg_name(1, ".seg"))) == end, "truncated back to %ld", end);
  CHECK(replay_expect(s, seqs, wi, 8) == 8, "all 8 records");
  prd_spool_close(s);
  /* the last frame's bytes zeroed in place */
  memset(im.seg + start, 0, (size_t)(end - start));
  CHECK(restore_image(&im, end) == 0, "restore");
  s = open_ok(&o);
  CHECK(s, "open");
  metrics(s, &m);
  CHECK(m.cut == 1 && m.damaged == 0, "cut %llu damaged %llu", (unsigned long long)m.cut, (unsigned long long)m.damaged);
  CHECK(replay_expect(s, seqs, wi, 7) == 7, "the 7 before");
  prd_spool_close(s);
  free(z);
  free_image(&im);
}

/* I11, I12: a byte flipped in a middle record, in an unsealed (scanned at
 * open) and in a sealed (found by the replay) segment: skipped, counted,
 * the rest delivered, the file moved to damaged/ once acked */
static void flipped(int sealed)
{
  prd_spool_options o = opts(0);
  uint64_t seqs[10], want[9], wi[9], k, n;
  long at;
  prd_spool_metrics m;
  image im;
  prd_spool *s = open_ok(&o);
  CHECK(s, "open");
  CHECK(append_n(s, 0, 4, seqs) == 0, "append");
  at = frames_end(path_of(seg_name(1, ".seg"))) + 16 + 20;  /* inside record 5's body */
  CHECK(append_n(s, 4, 6, seqs + 4) == 0, "append");
  if (!sealed)
    CHECK(take_image(&im, 1) == 0, "image");
  prd_spool_close(s);
  if (sealed)
    CHECK(take_image(&im, 1) == 0, "image");
  im.seg[at] ^= 0x40;
  CHECK(restore_image(&im, im.seg_len) == 0, "restore");
  s = open_ok(&o);
  CHECK(s, "open with damage");
  for (n = 0, k = 0; k < 10; k++)
    if (k != 4) {
      want[n] = seqs[k];
      wi[n++] = k;
    }
  CHECK(replay_expect(s, want, wi, 9) == 9, "every intact record");
  metrics(s, &m);
  CHECK(m.damaged == 1 && m.cut == 0, "damaged %llu cut %llu", (unsigned long long)m.damaged, (unsigned long long)m.cut);
  CHECK(m.records == 9, "the damaged record is not waiting: %llu", (unsigned long long)m.records);
  CHECK(replay_expect(s, want, wi, 9) == 9, "a second pass: same records");
  metrics(s, &m);
  CHECK(m.damaged == 1, "counted once: %llu", (unsigned long long)m.damaged);
  for (k = 0; k < 9; k++)
    CHECK_CODE(prd_spool_ack(s, want[k], PRD_SPOOL_DELIVERED), PRD_SPOOL_OK, s);
  CHECK(file_size(path_of(seg_name(1, ".seg"))) < 0, "moved out of the spool");
  CHECK(file_size(path_of(seg_name(1, ".ack"))) < 0, "its acks deleted");
  CHECK(file_size(path_of("damaged/00000000000000000001.seg")) == im.seg_len, "kept in damaged/");
  prd_spool_close(s);
  free_image(&im);
}
static void t_flipped_unsealed(void) { flipped(0); }
static void t_flipped_sealed(void) { flipped(1); }

/* I8, I11: ack entries with a bad CRC, torn, or naming no record: ignored */
static void t_bad_acks(void)
{
  prd_spool_options o = opts(0);
  uint64_t seqs[10], k, want[1], wi[1];
  unsigned char *a, extra[16];
  long len;
  prd_spool *s = open_ok(&o);
  CHECK(s, "open");
  CHECK(append_n(s, 0, 10, seqs) == 0, "append");
  for (k = 0; k < 10; k++)
    CHECK_CODE(prd_spool_ack(s, seqs[k], PRD_SPOOL_DELIVERED), PRD_SPOOL_OK, s);
  prd_spool_close(s);
  a = slurp(path_of(seg_name(1, ".ack")), &len);
  CHECK(a && len == 160, "10 entries: %ld bytes", len);
  a[2 * 16 + 9] ^= 1;                   /* seq 3's entry: its CRC fails */
  CHECK(spit(path_of(seg_name(1, ".ack")), a, (size_t)len) == 0, "write");
  memcpy(extra, a, 16);
  extra[0] = 0xe7;                       /* seq 999 (CRC recomputed): names no record */
  extra[1] = 3;
  {
    uint32_t c = prd_crc32c(0, extra, 12);
    extra[12] = c & 0xff; extra[13] = (c >> 8) & 0xff; extra[14] = (c >> 16) & 0xff; extra[15] = c >> 24;
    FILE *f = fopen(path_of(seg_name(1, ".ack")), "ab");
    CHECK(f && fwrite(extra, 1, 16, f) == 16 && fwrite(a, 1, 7, f) == 7, "append"); /* and a torn entry */
    fclose(f);
  }
  free(a);
  s = open_ok(&o);
  CHECK(s, "open");
  CHECK(file_size(path_of(seg_name(1, ".ack"))) == 176, "torn entry truncated: %ld",
        file_size(path_of(seg_name(1, ".ack"))));
  want[0] = seqs[2];
  wi[0] = 2;
  CHECK(replay_expect(s, want, wi, 1) == 1, "seq 3 is sent again (a duplicate, never a loss)");
  CHECK_CODE(prd_spool_ack(s, seqs[2], PRD_SPOOL_DELIVERED), PRD_SPOOL_OK, s);
  CHECK(count_files(".seg") == 1, "the old segment done and deleted");
  prd_spool_close(s);
}

/* I7, I11: .ack without .seg (a kill between the two unlinks) and *.tmp
 * deleted; what is left replayed; seqs continue */
static void t_orphans_and_kill_between_unlinks(void)
{
  prd_spool_options o = opts(0);
  uint64_t seqs[5], more[2], wi[2], next;
  unsigned char *ack;
  long len;
  prd_spool *s = open_ok(&o);
  CHECK(s, "open");
  CHECK(append_n(s, 0, 5, seqs) == 0, "append");
  for (next = 0; next < 5; next++)
    CHECK_CODE(prd_spool_ack(s, seqs[next], PRD_SPOOL_DELIVERED), PRD_SPOOL_OK, s);
  prd_spool_close(s);
  ack = slurp(path_of(seg_name(1, ".ack")), &len);
  CHECK(ack && len == 80, "acks");
  s = open_ok(&o);                      /* deletes segment 1: done, not the newest */
  CHECK(s, "open");
  CHECK(file_size(path_of(seg_name(1, ".seg"))) < 0 && file_size(path_of(seg_name(1, ".ack"))) < 0, "deleted");
  CHECK(append_n(s, 10, 2, more) == 0, "append");
  prd_spool_close(s);
  /* the state a kill between unlink(.seg) and unlink(.ack) leaves */
  CHECK(spit(path_of(seg_name(1, ".ack")), ack, (size_t)len) == 0, "orphan .ack");
  CHECK(spit(path_of("00000000000000000003.seg.tmp"), "x", 1) == 0 && spit(path_of("SPOOL.tmp"), "x", 1) == 0, "tmp");
  free(ack);
  s = open_ok(&o);
  CHECK(s, "open");
  CHECK(file_size(path_of(seg_name(1, ".ack"))) < 0, "the .ack without .seg deleted");
  CHECK(file_size(path_of("SPOOL.tmp")) < 0 && file_size(path_of("00000000000000000003.seg.tmp")) < 0, "*.tmp deleted");
  fill_seq(wi, 2, 10);
  CHECK(replay_expect(s, more, wi, 2) == 2, "the records left");
  CHECK(append_n(s, 0, 1, &next) == 0 && next > more[1], "seq %llu after %llu", (unsigned long long)next,
        (unsigned long long)more[1]);
  prd_spool_close(s);
}

/* I9: one producer per folder; the refusal names the holder's pid; the
 * lock is free once the holder is killed -9 */
static void t_lock(void)
{
  prd_spool_options o = opts(0);
  prd_spool *s = open_ok(&o), *s2 = NULL;
  char err[512], want[400];
  int up[2], hold[2];
  pid_t pid;
  prd_spool_code rc;
  CHECK(s, "open");
  rc = prd_spool_open(dir, &o, &s2, err, sizeof err);
  snprintf(want, sizeof want, "is in use by pid %ld", (long)getpid());
  CHECK(rc == PRD_SPOOL_LOCKED && !s2 && strstr(err, want), "second open: %s %s", prd_spool_code_name(rc), err);
  prd_spool_close(s);
  CHECK(pipe(up) == 0 && pipe(hold) == 0, "pipes");
  pid = fork();
  CHECK(pid >= 0, "fork");
  if (pid == 0) {
    char c;
    prd_spool *cs = NULL;
    close(up[0]);
    close(hold[1]);
    if (prd_spool_open(dir, &o, &cs, err, sizeof err) != PRD_SPOOL_OK)
      _exit(3);
    if (write(up[1], "r", 1) != 1)
      _exit(4);
    (void)!read(hold[0], &c, 1);  /* held until killed */
    _exit(0);
  }
  close(up[1]);
  close(hold[0]);
  {
    char c;
    CHECK(read(up[0], &c, 1) == 1, "the child holds the spool");
  }
  rc = prd_spool_open(dir, &o, &s2, err, sizeof err);
  snprintf(want, sizeof want, "spool %s is in use by pid %ld", dir, (long)pid);
  CHECK(rc == PRD_SPOOL_LOCKED && !strcmp(err, want), "refused: %s", err);
  kill(pid, SIGKILL);
  CHECK(waitpid(pid, NULL, 0) == pid, "reaped");
  close(up[0]);
  close(hold[1]);
  s = open_ok(&o);
  CHECK(s, "free after kill -9");
  prd_spool_close(s);
}

/* I4: max_bytes: refused with SPOOL_FULL before a byte is written,
 * nothing evicted; room again once a segment is done */
static void t_max_bytes(void)
{
  prd_spool_options o = opts(4096);
  uint64_t seqs[400], wi[400], n = 0;
  prd_spool_metrics m;
  prd_spool_code rc = PRD_SPOOL_OK;
  long before;
  prd_spool *s;
  o.max_bytes = 32768;
  s = open_ok(&o);
  CHECK(s, "open");
  while (n < 400) {
    rec_buf b;
    make_record(n, &b);
    before = disk_bytes();
    rc = prd_spool_append(s, &b.r, &seqs[n]);
    if (rc != PRD_SPOOL_OK)
      break;
    n++;
  }
  CHECK_CODE(rc, PRD_SPOOL_FULL, s);
  CHECK(strstr(prd_spool_error(s), "is full"), "message: %s", prd_spool_error(s));
  CHECK(disk_bytes() == before, "nothing written by the refusal");
  metrics(s, &m);
  CHECK(m.refused_full == 1 && m.records == n, "refused_full %llu", (unsigned long long)m.refused_full);
  CHECK(m.bytes + 16 * m.records + 48 <= o.max_bytes, "bytes %llu + the acks to come within max_bytes",
        (unsigned long long)m.bytes);
  fill_seq(wi, (size_t)n, 0);
  CHECK(replay_expect(s, seqs, wi, (size_t)n) == (long)n, "nothing evicted");
  {
    uint64_t k = 0, seq;
    rec_buf b;
    while (k < n && seqs[k] < seqs[n - 1] && prd_spool_append(s, (make_record(0, &b), &b.r), &seq) == PRD_SPOOL_FULL)
      CHECK_CODE(prd_spool_ack(s, seqs[k++], PRD_SPOOL_DELIVERED), PRD_SPOOL_OK, s);
    CHECK(k < n, "an append fits again once acked segments are deleted (after %llu acks)", (unsigned long long)k);
  }
  prd_spool_close(s);
}

/* I1, I4: RLIMIT_FSIZE with SIGXFSZ ignored: SPOOL_IO naming EFBIG and
 * no record left by the refusal: the records appended before, and only
 * they, come back, nothing torn; an append works again once the limit
 * allows it. (The active segment is preallocated: the limit is met when
 * its file must grow, not at the append that passes it by a byte.) */
static int rlimit_child(void)
{
  prd_spool_options o = opts(0);
  prd_spool *s = open_ok(&o);
  struct rlimit rl;
  rec_buf b;
  uint64_t seq, n = 3;
  uint64_t *seqs = calloc(100000, sizeof *seqs), *wi = calloc(100000, sizeof *wi);
  prd_spool_code rc = PRD_SPOOL_OK;
  prd_spool_metrics m;
  signal(SIGXFSZ, SIG_IGN);
  if (!s || !seqs || !wi || append_n(s, 0, 3, seqs) != 0)
    return 2;
  if (getrlimit(RLIMIT_FSIZE, &rl) != 0)
    return 3;
  rl.rlim_cur = (rlim_t)file_size(path_of(seg_name(1, ".seg"))) + 10;  /* the hard limit stays: raised again below */
  if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
    return 3;
  while (n < 100000) {
    make_record(n, &b);
    if ((rc = prd_spool_append(s, &b.r, &seqs[n])) != PRD_SPOOL_OK)
      break;
    n++;
  }
  metrics(s, &m);
  if (rc != PRD_SPOOL_IO || prd_spool_errno(s) != EFBIG || !strstr(prd_spool_error(s), strerror(EFBIG))) {
    fprintf(stderr, "    %s: %s\n", prd_spool_code_name(rc), prd_spool_error(s));
    return 4;
  }
  if (m.records != n || m.refused_io != 1)
    return 5;
  prd_spool_close(s);
  s = open_ok(&o);
  fill_seq(wi, (size_t)n, 0);
  if (!s || replay_expect(s, seqs, wi, (size_t)n) != (long)n)
    return 6;
  metrics(s, &m);
  if (m.cut != 0 || m.damaged != 0)
    return 7;
  rl.rlim_cur = rl.rlim_max;
  make_record(n, &b);
  if (setrlimit(RLIMIT_FSIZE, &rl) != 0 || (rc = prd_spool_append(s, &b.r, &seq)) != PRD_SPOOL_OK ||
      seq <= seqs[n - 1]) {
    fprintf(stderr, "    after the limit: %s: %s\n", prd_spool_code_name(rc), prd_spool_error(s));
    return 8;
  }
  free(seqs);
  free(wi);
  prd_spool_close(s);
  return 0;
}

static void t_rlimit_fsize(void)
{
  int st;
  pid_t pid = fork();
  CHECK(pid >= 0, "fork");
  if (pid == 0)
    _exit(rlimit_child());
  CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
}

/* I4: an unwritable folder is a clear SPOOL_IO refusal, never a crash.
 * Root ignores permissions: as root the check runs in a child that drops
 * to uid/gid 65534 (nobody); skipped only if that is impossible. */
static void t_read_only_dir(void)
{
  prd_spool_options o = opts(0);
  prd_spool *s = open_ok(&o);
  int st;
  pid_t pid;
  CHECK(s, "open");
  CHECK(append_n(s, 0, 2, NULL) == 0, "append");
  prd_spool_close(s);
  CHECK(chmod(root, 0755) == 0 && chmod(dir, 0555) == 0, "chmod");
  pid = fork();
  CHECK(pid >= 0, "fork");
  if (pid == 0) {
    char err[512], sub[300];
    prd_spool *s2 = NULL;
    prd_spool_code rc;
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
      _exit(77);
    rc = prd_spool_open(dir, &o, &s2, err, sizeof err);
    if (rc != PRD_SPOOL_IO || !strstr(err, strerror(EACCES))) {
      fprintf(stderr, "    existing spool: %s %s\n", prd_spool_code_name(rc), err);
      _exit(2);
    }
    snprintf(sub, sizeof sub, "%s/new", dir);  /* a spool folder that cannot be made */
    rc = prd_spool_open(sub, &o, &s2, err, sizeof err);
    if (rc != PRD_SPOOL_IO || !strstr(err, "cannot create") || !strstr(err, strerror(EACCES))) {
      fprintf(stderr, "    new spool: %s %s\n", prd_spool_code_name(rc), err);
      _exit(3);
    }
    _exit(0);
  }
  CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st), "child");
  chmod(dir, 0700);
  if (WEXITSTATUS(st) == 77) {
    fprintf(stderr, "    skipped: root could not drop to uid 65534, and root ignores permissions\n");
    skipped = 1;
    return;
  }
  CHECK(WEXITSTATUS(st) == 0, "child status %d", WEXITSTATUS(st));
}

static int set_version(const char *path, long at, int crc_at, int crc_len, unsigned v)
{
  long len;
  unsigned char *b = slurp(path, &len);
  uint32_t c;
  int rc;
  if (!b)
    return -1;
  b[at] = (unsigned char)v;
  b[at + 1] = 0;
  c = prd_crc32c(0, b, (size_t)crc_len);
  b[crc_at] = c & 0xff; b[crc_at + 1] = (c >> 8) & 0xff; b[crc_at + 2] = (c >> 16) & 0xff; b[crc_at + 3] = c >> 24;
  rc = spit(path, b, (size_t)len);
  free(b);
  return rc;
}

/* I11: an unknown format version (SPOOL or a segment header) refuses the
 * spool naming it; nothing is deleted, not even the orphans */
static void t_unknown_version(void)
{
  prd_spool_options o = opts(0);
  prd_spool *s = open_ok(&o), *s2 = NULL;
  char err[512];
  prd_spool_code rc;
  long segs;
  CHECK(s, "open");
  CHECK(append_n(s, 0, 3, NULL) == 0, "append");
  prd_spool_close(s);
  CHECK(spit(path_of("x.tmp"), "x", 1) == 0 && spit(path_of(seg_name(77, ".ack")), "", 0) == 0, "orphans");
  segs = count_files(".seg");
  CHECK(set_version(path_of(seg_name(1, ".seg")), 8, 60, 60, 9) == 0, "segment version 9");
  rc = prd_spool_open(dir, &o, &s2, err, sizeof err);
  CHECK(rc == PRD_SPOOL_VERSION && strstr(err, "format version 9") && strstr(err, "00000000000000000001.seg"),
        "%s %s", prd_spool_code_name(rc), err);
  CHECK(count_files(".seg") == segs && file_size(path_of("x.tmp")) == 1 &&
        file_size(path_of(seg_name(77, ".ack"))) == 0, "nothing deleted");
  CHECK(set_version(path_of(seg_name(1, ".seg")), 8, 60, 60, 1) == 0, "segment version 1 again");
  CHECK(set_version(path_of("SPOOL"), 8, 32, 32, 2) == 0, "SPOOL version 2");
  rc = prd_spool_open(dir, &o, &s2, err, sizeof err);
  CHECK(rc == PRD_SPOOL_VERSION && strstr(err, "format version 2"), "%s %s", prd_spool_code_name(rc), err);
  CHECK(count_files(".seg") == segs && file_size(path_of("x.tmp")) == 1, "nothing deleted");
  CHECK(set_version(path_of("SPOOL"), 8, 32, 32, 1) == 0, "SPOOL version 1 again");
  s = open_ok(&o);
  CHECK(s, "opens once the versions are known");
  CHECK(file_size(path_of("x.tmp")) < 0, "and then cleans up");
  prd_spool_close(s);
}

/* I16: a failed fdatasync is never retried on that file: the segment is
 * sealed, counted, the next record goes to a new segment */
static int fail_next_sync, syncs_on_failed;
static ino_t failed_ino;
static int fake_fdatasync(int fd)
{
  struct stat st;
  if (fstat(fd, &st) == 0 && failed_ino && st.st_ino == failed_ino)
    syncs_on_failed++;
  if (__atomic_exchange_n(&fail_next_sync, 0, __ATOMIC_SEQ_CST)) {
    if (fstat(fd, &st) == 0)
      failed_ino = st.st_ino;
    errno = EIO;
    return -1;
  }
  return fdatasync(fd);
}

static void t_fsync_failure_always(void)
{
  prd_spool_options o = opts(0);
  prd_spool_metrics m;
  uint64_t seqs[4], wi[4], seq;
  prd_spool *s;
  rec_buf b;
  o.fsync = PRD_SPOOL_FSYNC_ALWAYS;
  o.fdatasync_fn = fake_fdatasync;
  s = open_ok(&o);
  CHECK(s, "open");
  CHECK(append_n(s, 0, 2, seqs) == 0, "append");
  fail_next_sync = 1;
  make_record(2, &b);
  CHECK_CODE(prd_spool_append(s, &b.r, &seq), PRD_SPOOL_IO, s);
  CHECK(strstr(prd_spool_error(s), "fdatasync") && prd_spool_errno(s) == EIO, "%s", prd_spool_error(s));
  metrics(s, &m);
  CHECK(m.fsync_errors == 1 && m.refused_io == 1 && m.segments == 1, "counted");
  CHECK(append_n(s, 3, 1, seqs + 3) == 0, "the next append works");
  metrics(s, &m);
  CHECK(m.segments == 2, "in a new segment: %llu", (unsigned long long)m.segments);
  prd_spool_close(s);
  CHECK(syncs_on_failed == 0, "the failed file was synced again %d times", syncs_on_failed);
  s = open_ok(&o);
  CHECK(s, "reopen");
  seqs[2] = 3;
  fill_seq(wi, 4, 0);
  CHECK(replay_expect(s, seqs, wi, 4) == 4, "the refused record stays (documented: may be delivered)");
  prd_spool_close(s);
}

static void t_fsync_failure_interval(void)
{
  prd_spool_options o = opts(0);
  prd_spool_metrics m;
  double deadline;
  prd_spool *s;
  o.fsync = PRD_SPOOL_FSYNC_INTERVAL;
  o.fsync_interval_ms = 10;
  o.fdatasync_fn = fake_fdatasync;
  s = open_ok(&o);
  CHECK(s, "open");
  fail_next_sync = 1;
  CHECK(append_n(s, 0, 2, NULL) == 0, "append");
  deadline = now_s() + 10;
  do {
    struct timespec ts = {0, 5000000};
    metrics(s, &m);
    if (m.fsync_errors)
      break;
    nanosleep(&ts, NULL);
  } while (now_s() < deadline);
  CHECK(m.fsync_errors == 1 && m.segments == 1, "the thread's failure counted: %llu", (unsigned long long)m.fsync_errors);
  CHECK(append_n(s, 2, 1, NULL) == 0, "append");
  metrics(s, &m);
  CHECK(m.segments == 2, "sealed, a new segment: %llu", (unsigned long long)m.segments);
  prd_spool_close(s);
  CHECK(syncs_on_failed == 0, "the failed file was synced again %d times", syncs_on_failed);
}

/* I1, I7, I8, I10, I11, I15: a child appends (and acks every 3rd record)
 * in a loop, reporting each seq append returned OK for, and each ack
 * done, on a pipe; killed -9 at a random moment; the reopened spool must
 * replay every reported record not reported acked, byte for byte, oldest
 * first, and nothing else but the one record appended but not yet
 * reported. Same folder every round: recovery after recovery. */
typedef struct { uint64_t seq, i, kind; } report;

static uint64_t rng;
static uint64_t next_rand(void)
{
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static void kill_child(int fd, uint64_t base, prd_spool_options o)
{
  prd_spool *s;
  uint64_t i;
  signal(SIGPIPE, SIG_DFL);
  s = open_ok(&o);
  if (!s)
    _exit(2);
  for (i = base;; i++) {
    rec_buf b;
    report r;
    make_record(i, &b);
    if (prd_spool_append(s, &b.r, &r.seq) != PRD_SPOOL_OK)
      _exit(3);
    r.i = i;
    r.kind = 1;
    if (write(fd, &r, sizeof r) != sizeof r)
      _exit(4);
    if (i % 3 == 0) {
      if (prd_spool_ack(s, r.seq, PRD_SPOOL_DELIVERED) != PRD_SPOOL_OK)
        _exit(5);
      r.kind = 2;
      if (write(fd, &r, sizeof r) != sizeof r)
        _exit(4);
    }
  }
}

static int cmp_report(const void *a, const void *b)
{
  const report *x = a, *y = b;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void t_random_kill(void)
{
  prd_spool_options o = opts(16384);
  const char *env = getenv("PRD_SPOOL_TEST_SEED");
  uint64_t seed = env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL), base = 0;
  int round, rounds = 12;
  rng = seed * 2654435761u + 1;
  fprintf(stderr, "    seed %llu (PRD_SPOOL_TEST_SEED)\n", (unsigned long long)seed);
  for (round = 0; round < rounds; round++) {
    size_t cap = 8192, n = 0, want_n = 0, k, after = (size_t)(next_rand() % 3000) + 1;
    report *got = malloc(cap * sizeof *got), r;
    uint64_t *ws = NULL, *wi = NULL, max_seq = 0, last_i = 0;
    int p[2], st, last_maybe = 0;
    long replayed;
    pid_t pid;
    prd_spool_cursor c;
    prd_spool_record rec;
    prd_spool *s;
    CHECK(got && pipe(p) == 0, "pipe");
    pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
      close(p[0]);
      kill_child(p[1], base, o);
    }
    close(p[1]);
    while (read(p[0], &r, sizeof r) == sizeof r) {
      if (n == cap)
        got = realloc(got, (cap *= 2) * sizeof *got);
      got[n++] = r;
      if (n == after)
        kill(pid, SIGKILL);
    }
    close(p[0]);
    CHECK(waitpid(pid, &st, 0) == pid && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
          "round %d: the child died by the kill (status %d)", round, st);
    /* expected: reported appended, not reported acked */
    qsort(got, n, sizeof *got, cmp_report);
    ws = malloc((n + 1) * sizeof *ws);
    wi = malloc((n + 1) * sizeof *wi);
    for (k = 0; k < n; k++) {
      if (got[k].seq > max_seq)
        max_seq = got[k].seq;
      if (got[k].i > last_i)
        last_i = got[k].i;
    }
    for (k = 0; k < n; k++) {
      int acked = k + 1 < n && got[k + 1].seq == got[k].seq && got[k + 1].kind == 2;
      /* the last one, if due an ack: acked or not, the kill may fall between its ack and the report */
      int maybe = got[k].seq == max_seq && got[k].i % 3 == 0;
      if (got[k].kind == 1 && !acked && maybe)
        last_maybe = 1;
      if (got[k].kind == 1 && !acked && !maybe) {
        ws[want_n] = got[k].seq;
        wi[want_n++] = got[k].i;
      }
    }
    s = open_ok(&o);
    CHECK(s, "round %d: reopen", round);
    prd_spool_cursor_init(&c);
    replayed = 0;
    k = 0;
    while (prd_spool_next(s, &c, &rec) == PRD_SPOOL_OK) {
      if (rec.seq > max_seq) {              /* appended, killed before its report */
        CHECK(record_is(&rec, last_i + 1), "round %d: unreported seq %llu intact", round, (unsigned long long)rec.seq);
      } else if (k < want_n && rec.seq == ws[k]) {
        CHECK(record_is(&rec, wi[k]), "round %d: seq %llu content", round, (unsigned long long)rec.seq);
        k++;
      } else if (rec.seq == max_seq && last_maybe) { /* its ack may be written, unreported */
        CHECK(record_is(&rec, last_i), "round %d: seq %llu content", round, (unsigned long long)rec.seq);
      } else {
        CHECK(0, "round %d: seq %llu replayed, not expected", round, (unsigned long long)rec.seq);
      }
      CHECK_CODE(prd_spool_ack(s, rec.seq, PRD_SPOOL_DELIVERED), PRD_SPOOL_OK, s);
      replayed++;
    }
    prd_spool_cursor_free(&c);
    CHECK(k == want_n, "round %d: %zu of %zu reported records replayed (I1)", round, k, want_n);
    fprintf(stderr, "    round %d: killed after %zu reports, %zu waiting, %ld replayed\n", round, n, want_n, replayed);
    prd_spool_close(s);
    base = last_i + 2;
    free(got);
    free(ws);
    free(wi);
  }
}

/* the metrics add up against the files */
static void t_metrics(void)
{
  prd_spool_options o = opts(4096);
  prd_spool_metrics m;
  uint64_t seqs[40];
  prd_spool *s = open_ok(&o);
  CHECK(s, "open");
  CHECK(append_n(s, 0, 40, seqs) == 0, "append");
  CHECK_CODE(prd_spool_ack(s, seqs[5], PRD_SPOOL_DELIVERED), PRD_SPOOL_OK, s);
  metrics(s, &m);
  CHECK(m.records == 39 && (long)m.bytes == disk_bytes() && m.segments == (uint64_t)count_files(".seg"),
        "records %llu bytes %llu/%ld segments %llu", (unsigned long long)m.records, (unsigned long long)m.bytes,
        disk_bytes(), (unsigned long long)m.segments);
  CHECK(m.oldest_age_ms >= 0 && m.oldest_age_ms < 60000, "age %lld", (long long)m.oldest_age_ms);
  CHECK(m.cut == 0 && m.damaged == 0 && m.refused_full == 0 && m.refused_io == 0 && m.fsync_errors == 0, "zeros");
  prd_spool_close(s);
  s = open_ok(&o);
  CHECK(s, "reopen");
  metrics(s, &m);
  CHECK(m.records == 39 && (long)m.bytes == disk_bytes(), "after reopen: records %llu bytes %llu/%ld",
        (unsigned long long)m.records, (unsigned long long)m.bytes, disk_bytes());
  prd_spool_close(s);
}

/* misuse: a record larger than a segment, bad options */
static void t_misuse(void)
{
  prd_spool_options o = opts(4096);
  static unsigned char big[8192];
  prd_spool_record r;
  prd_spool *s = open_ok(&o), *s2 = NULL;
  uint64_t seq;
  char err[256];
  CHECK(s, "open");
  memset(&r, 0, sizeof r);
  r.topic = "t";
  r.topic_len = 1;
  r.value = big;
  r.value_len = sizeof big;
  CHECK_CODE(prd_spool_append(s, &r, &seq), PRD_SPOOL_INVALID, s);
  CHECK(strstr(prd_spool_error(s), "segment_bytes"), "%s", prd_spool_error(s));
  CHECK_CODE(prd_spool_ack(s, 1, 7), PRD_SPOOL_INVALID, s);
  prd_spool_close(s);
  o.segment_bytes = 100;
  CHECK(prd_spool_open(dir, &o, &s2, err, sizeof err) == PRD_SPOOL_INVALID && !s2 && strstr(err, "segment_bytes"),
        "%s", err);
  prd_spool_close(NULL);
}

/* I11, I12: a segment whose header is damaged still delivers its intact
 * records (counted, moved to damaged/ once done); a .seg shorter than a
 * header (a death while creating it) is deleted and counted in cut; the
 * start-up line says so (I13) */
static void t_bad_header(void)
{
  prd_spool_options o = opts(4096);
  uint64_t seqs[30], wi[30], k;
  char line[512];
  prd_spool_metrics m;
  unsigned char *b;
  long len;
  prd_spool *s = open_ok(&o);
  CHECK(s, "open");
  CHECK(append_n(s, 0, 30, seqs) == 0, "append");
  prd_spool_close(s);
  CHECK(count_files(".seg") > 2, "several segments");
  b = slurp(path_of(seg_name(1, ".seg")), &len);
  CHECK(b, "read");
  b[20] ^= 0xff;                            /* inside the spool id: the header's CRC fails */
  CHECK(spit(path_of(seg_name(1, ".seg")), b, (size_t)len) == 0, "write");
  free(b);
  CHECK(spit(path_of(seg_name(99999, ".seg")), "PRDSPSEG", 8) == 0, "a torn new segment");
  s = open_ok(&o);
  CHECK(s, "open");
  metrics(s, &m);
  CHECK(m.damaged == 1 && m.cut == 1, "damaged %llu cut %llu", (unsigned long long)m.damaged, (unsigned long long)m.cut);
  CHECK(file_size(path_of(seg_name(99999, ".seg"))) < 0, "the torn new segment deleted");
  fill_seq(wi, 30, 0);
  CHECK(replay_expect(s, seqs, wi, 30) == 30, "every record, those behind the bad header too");
  prd_spool_summary(s, line, sizeof line);
  CHECK(strstr(line, "resumed: 30 records") && strstr(line, "cut 1, damaged 1"), "%s", line);
  for (k = 0; k < 30; k++)
    CHECK_CODE(prd_spool_ack(s, seqs[k], PRD_SPOOL_DELIVERED), PRD_SPOOL_OK, s);
  CHECK(file_size(path_of("damaged/00000000000000000001.seg")) == len, "moved to damaged/");
  CHECK(count_files(".seg") == 1, "only the active segment left: %ld", count_files(".seg"));
  prd_spool_close(s);
}

/* I1, I4: ENOSPC on a small tmpfs: SPOOL_IO naming it, the segment
 * truncated back, every accepted record intact. Needs mount(2) (root);
 * skipped, and said, where it is refused. */
static void t_enospc(void)
{
#ifdef __linux__
  prd_spool_options o = opts(16384);
  uint64_t seqs[2000], wi[2000], n = 0;
  prd_spool_code rc = PRD_SPOOL_OK;
  long before = 0;
  prd_spool *s;
  char fs[128];
  snprintf(fs, sizeof fs, "%s/fs", root);
  CHECK(mkdir(fs, 0700) == 0, "mkdir");
  if (mount("tmpfs", fs, "tmpfs", 0, "size=128k") != 0) {
    fprintf(stderr, "    skipped: mount of a small tmpfs refused (%s): needs root\n", strerror(errno));
    skipped = 1;
    return;
  }
  snprintf(dir, sizeof dir, "%s/spool", fs);
  s = open_ok(&o);
  if (!s)
    goto out;
  while (n < 2000) {
    rec_buf b;
    make_record(n, &b);
    before = disk_bytes();
    if ((rc = prd_spool_append(s, &b.r, &seqs[n])) != PRD_SPOOL_OK)
      break;
    n++;
  }
  if (rc != PRD_SPOOL_IO || prd_spool_errno(s) != ENOSPC || !strstr(prd_spool_error(s), strerror(ENOSPC))) {
    fail_at(__LINE__, "ENOSPC", "%s after %llu records: %s", prd_spool_code_name(rc), (unsigned long long)n,
            prd_spool_error(s));
  } else if (disk_bytes() != before) {
    fail_at(__LINE__, "truncated back", "%ld bytes, %ld before", disk_bytes(), before);
  } else {
    uint64_t k, seq;
    rec_buf b;
    prd_spool_close(s);
    s = open_ok(&o);    /* a full disk does not stop start-up: the backlog is delivered */
    fill_seq(wi, (size_t)n, 0);
    if (!s || replay_expect(s, seqs, wi, (size_t)n) != (long)n) {
      fail_at(__LINE__, "replay", "the %llu accepted records", (unsigned long long)n);
    } else {
      make_record(0, &b);
      rc = prd_spool_append(s, &b.r, &seq);
      for (k = 0; k < n && rc == PRD_SPOOL_IO; k++) {
        (void)prd_spool_ack(s, seqs[k], PRD_SPOOL_DELIVERED); /* its .ack may not fit: ended all the same */
        rc = prd_spool_append(s, &b.r, &seq);
      }
      if (rc != PRD_SPOOL_OK)
        fail_at(__LINE__, "room again", "%s after %llu acks: %s", prd_spool_code_name(rc), (unsigned long long)k,
                prd_spool_error(s));
      else if (seq <= seqs[n - 1])
        fail_at(__LINE__, "seq", "%llu after %llu", (unsigned long long)seq, (unsigned long long)seqs[n - 1]);
    }
  }
  prd_spool_close(s);
out:
  umount2(fs, MNT_DETACH);
#else
  fprintf(stderr, "    skipped: a small tmpfs needs Linux\n");
  skipped = 1;
#endif
}

/* I8: lazy acks are held in memory until flush (one write a segment),
 * close, or 256 held; a death before loses only them (re-sent, never
 * lost); a failed flush is SPOOL_IO and takes their bytes back */
static void t_lazy_acks(void)
{
  prd_spool_options o = opts(0);
  prd_spool *s = open_ok(&o);
  uint64_t seqs[400], wi[400], k;
  prd_spool_metrics m0, m;
  const char *ack;
  int st;
  pid_t pid;
  CHECK(s && append_n(s, 0, 400, seqs) == 0, "400 appends");
  ack = path_of(seg_name(seqs[0], ".ack"));
  metrics(s, &m0);
  for (k = 0; k < 10; k++)
    CHECK_CODE(prd_spool_ack_lazy(s, seqs[k], PRD_SPOOL_DELIVERED), PRD_SPOOL_OK, s);
  metrics(s, &m);
  CHECK(file_size(ack) <= 0, "held: nothing written yet (%ld bytes)", file_size(ack));
  CHECK(m.records == 390 && m.bytes == m0.bytes + 10 * 16, "held acks end records at once and count: %llu, %llu",
        (unsigned long long)m.records, (unsigned long long)m.bytes);
  CHECK_CODE(prd_spool_ack_lazy(s, seqs[3], PRD_SPOOL_DELIVERED), PRD_SPOOL_OK, s); /* twice: a no-op */
  CHECK_CODE(prd_spool_ack_flush(s), PRD_SPOOL_OK, s);
  CHECK(file_size(ack) == 10 * 16, "flushed: %ld bytes", file_size(ack));
  CHECK_CODE(prd_spool_ack_flush(s), PRD_SPOOL_OK, s);  /* nothing held: nothing written */
  CHECK(file_size(ack) == 10 * 16, "a second flush writes nothing");
  for (k = 10; k < 10 + 256; k++)
    CHECK_CODE(prd_spool_ack_lazy(s, seqs[k], PRD_SPOOL_DELIVERED), PRD_SPOOL_OK, s);
  CHECK(file_size(ack) == 266 * 16, "256 held: written without a flush (%ld bytes)", file_size(ack));
  CHECK_CODE(prd_spool_ack_lazy(s, seqs[266], PRD_SPOOL_FAILED), PRD_SPOOL_OK, s);
  fflush(NULL);
  pid = fork();
  CHECK(pid >= 0, "fork");
  if (pid == 0)
    _exit(0);  /* the child holds what the parent held: a death writes nothing */
  CHECK(waitpid(pid, &st, 0) == pid, "child");
  CHECK(file_size(ack) == 266 * 16, "a child's death writes nothing");
  prd_spool_close(s);      /* close writes the held ack */
  s = open_ok(&o);
  CHECK(s, "reopen");
  for (k = 0; k < 133; k++) {
    seqs[k] = seqs[k + 267];
    wi[k] = k + 267;
  }
  CHECK(replay_expect(s, seqs, wi, 133) == 133, "close wrote the held ack: the 133 left replayed");
  prd_spool_close(s);
  pid = fork();     /* a death with 5 acks held: nothing of them written */
  CHECK(pid >= 0, "fork");
  if (pid == 0) {
    s = open_ok(&o);
    for (k = 0; s && k < 5; k++)
      if (prd_spool_ack_lazy(s, seqs[k], PRD_SPOOL_DELIVERED) != PRD_SPOOL_OK)
        _exit(2);
    _exit(s ? 0 : 3);
  }
  CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
  s = open_ok(&o);
  CHECK(s, "reopen after the death");
  CHECK(replay_expect(s, seqs, wi, 133) == 133, "the 5 held acks died with it: re-sent, never lost (I8)");
  CHECK(append_n(s, 1000, 1, &k) == 0, "append");
  metrics(s, &m0);       /* an .ack that cannot be opened: a directory in its place */
  CHECK(mkdir(path_of(seg_name(k, ".ack")), 0700) == 0 || errno == EEXIST, "mkdir");
  CHECK_CODE(prd_spool_ack_lazy(s, k, PRD_SPOOL_DELIVERED), PRD_SPOOL_OK, s);
  CHECK_CODE(prd_spool_ack_flush(s), PRD_SPOOL_IO, s);
  CHECK(strstr(prd_spool_error(s), "sent again") != NULL, "the refusal says so: %s", prd_spool_error(s));
  metrics(s, &m);
  CHECK(m.bytes == m0.bytes && m.records == m0.records - 1, "its bytes taken back: %llu, %llu before",
        (unsigned long long)m.bytes, (unsigned long long)m0.bytes);
  prd_spool_close(s);
  rmdir(path_of(seg_name(k, ".ack")));
}

/* ---- main ---- */

typedef struct { const char *name; void (*fn)(void); } test_case;
static const test_case cases[] = {
  {"crc32c known vectors", t_crc32c},
  {"append, reopen, replay in order; acks end records (I1 I7 I10)", t_append_reopen_replay},
  {"torn tail at every byte of the last frame (I1 I3 I11)", t_torn_tail_every_byte},
  {"zero-filled tail (I3 I11)", t_zero_tail},
  {"preallocated tail: not counted (I3 I11)", t_prealloc_tail},
  {"byte flipped in a middle record, unsealed segment (I11 I12)", t_flipped_unsealed},
  {"byte flipped in a middle record, sealed segment (I11 I12)", t_flipped_sealed},
  {"acks with a bad CRC, torn, naming no record (I8 I11)", t_bad_acks},
  {".ack without .seg, *.tmp, kill between the unlinks (I7 I11)", t_orphans_and_kill_between_unlinks},
  {"two opens of one folder, a forked holder, kill -9 frees it (I9)", t_lock},
  {"max_bytes refusal (I4)", t_max_bytes},
  {"RLIMIT_FSIZE: SPOOL_IO with EFBIG, no record left (I1 I4)", t_rlimit_fsize},
  {"ENOSPC on a small tmpfs: SPOOL_IO, truncated back (I1 I4)", t_enospc},
  {"read-only folder (I4)", t_read_only_dir},
  {"unknown version refused, nothing deleted (I11)", t_unknown_version},
  {"damaged segment header, torn new segment (I11 I12 I13)", t_bad_header},
  {"failed fdatasync under always (I16)", t_fsync_failure_always},
  {"failed fdatasync under interval (I16)", t_fsync_failure_interval},
  {"random kill -9, 12 rounds (I1 I7 I8 I10 I11)", t_random_kill},
  {"metrics add up against the files", t_metrics},
  {"misuse refused", t_misuse},
  {"lazy acks: held, flushed in one write, written at close, lost on a death (I8)", t_lazy_acks},
};

/* 0 passed, 1 failed, 2 error (crashed), 3 skipped */
static int run_case(const test_case *c)
{
  int st;
  pid_t pid;
  snprintf(root, sizeof root, "/tmp/spool_test.XXXXXX");
  if (!mkdtemp(root))
    return 2;
  snprintf(dir, sizeof dir, "%s/spool", root);
  fflush(NULL);
  pid = fork();
  if (pid == 0) {
    failed = 0;
    c->fn();
    exit(failed ? 1 : skipped ? 3 : 0);  /* exit, not _exit: LSan checks the case at exit */
  }
  if (pid < 0 || waitpid(pid, &st, 0) != pid) {
    rm_rf(root);
    return 2;
  }
  chmod(dir, 0700);
#ifdef __linux__
  {
    char fs[128];  /* t_enospc's tmpfs, if its case died before unmounting it */
    snprintf(fs, sizeof fs, "%s/fs", root);
    (void)umount2(fs, MNT_DETACH);
  }
#endif
  rm_rf(root);
  if (!WIFEXITED(st)) {
    fprintf(stderr, "    died by signal %d\n", WTERMSIG(st));
    return 2;
  }
  return WEXITSTATUS(st) > 3 ? 2 : WEXITSTATUS(st);
}

int main(int argc, char **argv)
{
  int counts[4] = {0, 0, 0, 0};
  static const char *label[4] = {"ok", "FAIL", "ERROR", "skip"};
  double t0 = now_s();
  size_t i;
  setvbuf(stdout, NULL, _IOLBF, 0);
  for (i = 0; i < sizeof cases / sizeof *cases; i++) {
    int rc;
    if (argc > 1 && !strstr(cases[i].name, argv[1]))
      continue;
    rc = run_case(&cases[i]);
    counts[rc]++;
    printf("%s - %s\n", label[rc], cases[i].name);
  }
  printf("%d successes / %d failures / %d errors / %d pending : %.6f seconds\n", counts[0], counts[1], counts[2],
         counts[3], now_s() - t0);
  return counts[1] || counts[2] ? 1 : 0;
}
