/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * spool_bench.c: the durable spool's storage layer (src/spool/spool.h)
 * under a large backlog and at each fsync level (issue #22, I13; see
 * bench/spool/run.sh, which drives it and writes bench/spool/results.md).
 *
 *   prd_bench_spool write  DIR BYTES   append ~100-byte records until the
 *                                      spool holds BYTES, then _exit(0)
 *                                      without closing: the last segment is
 *                                      left unsealed, as a kill -9 leaves it
 *   prd_bench_spool open   DIR COUNT   in a fresh process: open (time, RSS),
 *                                      replay every record through one
 *                                      cursor (time, peak RSS), check that
 *                                      COUNT records came back in seq order,
 *                                      then ack them all (time), close
 *   prd_bench_spool append DIR LEVEL SECONDS
 *                                      append for SECONDS at fsync LEVEL
 *                                      (never, interval, always): records/s
 *
 * Each mode prints key=value lines on stdout (times in ms, sizes in KiB)
 * and exits 1 with a message on stderr when the spool refuses something.
 *
 * Caveats: RSS is VmRSS / VmHWM of /proc/self/status (Linux); the record
 * is the bench workload's message (bench/README.md), topic "bench", key
 * "user-<k>", one header, so a frame is 160-odd bytes on disk.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "spool.h"

#define VALUE_FMT "{\"event\":\"user_signup\",\"user_id\":%d,\"ts\":%lld,\"tags\":[\"a\",\"b\",\"c\"],\"ok\":true}"

static double now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* VmRSS or VmHWM of this process in KiB (-1 if unreadable) */
static long status_kib(const char *field)
{
  char line[256];
  long kib = -1;
  size_t n = strlen(field);
  FILE *f = fopen("/proc/self/status", "r");
  if (!f)
    return -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, field, n) == 0 && line[n] == ':') {
      kib = strtol(line + n + 1, NULL, 10);
      break;
    }
  fclose(f);
  return kib;
}

static void die(const char *what, prd_spool *s, prd_spool_code c)
{
  fprintf(stderr, "spool_bench: %s: %s (%s)\n", what,
          s ? prd_spool_error(s) : "", prd_spool_code_name(c));
  exit(1);
}

static prd_spool *open_spool(const char *dir, prd_spool_fsync level)
{
  prd_spool_options o;
  prd_spool *s = NULL;
  char err[512];
  prd_spool_code c;
  prd_spool_options_init(&o);
  o.max_bytes = (uint64_t)64 << 30; /* the backlog, not the bound, is measured */
  o.fsync = level;
  c = prd_spool_open(dir, &o, &s, err, sizeof err);
  if (c != PRD_SPOOL_OK) {
    fprintf(stderr, "spool_bench: open %s: %s (%s)\n", dir, err, prd_spool_code_name(c));
    exit(1);
  }
  return s;
}

/* Appends the i-th bench message to s. */
static void append_one(prd_spool *s, long i)
{
  char key[32], value[160];
  prd_spool_header h = {"trace", 5, "bench", 5};
  prd_spool_record r;
  uint64_t seq;
  prd_spool_code c;
  int k = (int)(i % 1000);
  memset(&r, 0, sizeof r);
  r.topic = "bench";
  r.topic_len = 5;
  r.partition = -1;
  r.key = key;
  r.key_len = (size_t)snprintf(key, sizeof key, "user-%d", k);
  r.value = value;
  r.value_len = (size_t)snprintf(value, sizeof value, VALUE_FMT, 10000 + k, 1700000000000LL + k);
  r.headers = &h;
  r.header_count = 1;
  r.timestamp_ms = 1700000000000LL + i;
  c = prd_spool_append(s, &r, &seq);
  if (c != PRD_SPOOL_OK)
    die("append", s, c);
}

static int mode_write(const char *dir, unsigned long long bytes)
{
  prd_spool *s = open_spool(dir, PRD_SPOOL_FSYNC_NEVER);
  prd_spool_metrics m;
  double t0 = now_ms();
  long i = 0;
  memset(&m, 0, sizeof m);
  do {
    append_one(s, i++);
    if ((i & 4095) == 0)
      prd_spool_metrics_get(s, &m);
  } while ((i & 4095) != 0 || m.bytes < bytes);
  prd_spool_metrics_get(s, &m);
  printf("records=%ld\nbytes=%llu\nsegments=%llu\nwrite_ms=%.0f\n", i,
         (unsigned long long)m.bytes, (unsigned long long)m.segments, now_ms() - t0);
  fflush(stdout);
  _exit(0); /* no close: the active segment stays unsealed (no footer) */
}

/* One forward pass: counts records, checks seqs rise; acks each if ack. */
static long pass(prd_spool *s, int ack)
{
  prd_spool_cursor cur;
  prd_spool_record r;
  prd_spool_code c;
  uint64_t prev = 0;
  long n = 0;
  prd_spool_cursor_init(&cur);
  while ((c = prd_spool_next(s, &cur, &r)) == PRD_SPOOL_OK) {
    if (r.seq <= prev || r.value_len < 80) {
      fprintf(stderr, "spool_bench: record %ld: seq %llu after %llu, value %zu bytes\n",
              n, (unsigned long long)r.seq, (unsigned long long)prev, r.value_len);
      exit(1);
    }
    prev = r.seq;
    n++;
    if (ack && (c = prd_spool_ack(s, r.seq, PRD_SPOOL_DELIVERED)) != PRD_SPOOL_OK)
      die("ack", s, c);
  }
  if (c != PRD_SPOOL_END)
    die("next", s, c);
  prd_spool_cursor_free(&cur);
  return n;
}

static int mode_open(const char *dir, long expect)
{
  prd_spool *s;
  prd_spool_metrics m;
  char line[512];
  long n;
  double t0 = now_ms(), t1, t2;
  s = open_spool(dir, PRD_SPOOL_FSYNC_NEVER);
  t1 = now_ms();
  prd_spool_metrics_get(s, &m);
  prd_spool_summary(s, line, sizeof line);
  printf("summary=%s\nopen_ms=%.0f\nopen_rss_kib=%ld\nopen_records=%llu\nopen_cut=%llu\n",
         line, t1 - t0, status_kib("VmRSS"), (unsigned long long)m.records,
         (unsigned long long)m.cut);
  fflush(stdout);
  n = pass(s, 0);
  t2 = now_ms();
  printf("replay_records=%ld\nreplay_ms=%.0f\nreplay_rss_kib=%ld\nreplay_peak_rss_kib=%ld\n",
         n, t2 - t1, status_kib("VmRSS"), status_kib("VmHWM"));
  fflush(stdout);
  if (n != expect) {
    fprintf(stderr, "spool_bench: replayed %ld records, %ld were written\n", n, expect);
    return 1;
  }
  n = pass(s, 1);
  prd_spool_metrics_get(s, &m);
  printf("ack_records=%ld\nack_ms=%.0f\nleft_records=%llu\nleft_segments=%llu\npeak_rss_kib=%ld\n",
         n, now_ms() - t2, (unsigned long long)m.records, (unsigned long long)m.segments,
         status_kib("VmHWM"));
  prd_spool_close(s);
  return n == expect && m.records == 0 ? 0 : 1;
}

static int mode_append(const char *dir, const char *level, double seconds)
{
  prd_spool_fsync f = strcmp(level, "always") == 0     ? PRD_SPOOL_FSYNC_ALWAYS
                      : strcmp(level, "interval") == 0 ? PRD_SPOOL_FSYNC_INTERVAL
                                                       : PRD_SPOOL_FSYNC_NEVER;
  prd_spool *s = open_spool(dir, f);
  double t0 = now_ms(), t;
  long i = 0;
  do {
    append_one(s, i++);
    t = now_ms();
  } while (t - t0 < seconds * 1e3);
  printf("level=%s\nappended=%ld\nappend_ms=%.0f\nappend_per_s=%.0f\n", level, i, t - t0,
         i / ((t - t0) / 1e3));
  prd_spool_close(s);
  return 0;
}

int main(int argc, char **argv)
{
  if (argc == 4 && strcmp(argv[1], "write") == 0)
    return mode_write(argv[2], strtoull(argv[3], NULL, 10));
  if (argc == 4 && strcmp(argv[1], "open") == 0)
    return mode_open(argv[2], strtol(argv[3], NULL, 10));
  if (argc == 5 && strcmp(argv[1], "append") == 0)
    return mode_append(argv[2], argv[3], strtod(argv[4], NULL));
  fprintf(stderr, "usage: %s write DIR BYTES | open DIR COUNT | append DIR never|interval|always SECONDS\n",
          argv[0]);
  return 2;
}
