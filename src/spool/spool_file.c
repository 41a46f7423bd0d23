/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * spool_file.c: the spool's small I/O helpers, the directory lock (I9)
 * and the SPOOL file (format version and the random spool id).
 *
 * The lock is flock(LOCK_EX | LOCK_NB) on dir/LOCK, held by an open file
 * description for the spool's life: the kernel drops it on any death,
 * kill -9 and OOM included. LOCK holds "pid host" for the refusal text;
 * its content is informative only (a stale pid in it means nothing).
 * flock needs a local filesystem (not NFS).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "crc32c.h"
#include "spool_int.h"

int64_t prd_spool_now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Keeps the message (and errno e, appended as its text when not 0) for
 * prd_spool_error; returns c. */
prd_spool_code prd_spool_fail(prd_spool *s, prd_spool_code c, int e, const char *fmt, ...)
{
  va_list ap;
  size_t n;
  va_start(ap, fmt);
  vsnprintf(s->err, sizeof s->err, fmt, ap);
  va_end(ap);
  n = strlen(s->err);
  if (e && n < sizeof s->err)
    snprintf(s->err + n, sizeof s->err - n, ": %s", strerror(e));
  s->err_errno = e;
  return c;
}

char *prd_spool_path(const prd_spool *s, uint64_t first, const char *ext)
{
  size_t n = strlen(s->dir) + 40;
  char *p = malloc(n);
  if (p)
    snprintf(p, n, "%s/%020llu%s", s->dir, (unsigned long long)first, ext);
  return p;
}

int prd_spool_fsync_dir(const char *dir)
{
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc, e;
  if (fd < 0)
    return -1;
  rc = fsync(fd);
  e = errno;
  close(fd);
  errno = e;
  return rc;
}

int prd_spool_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
  unsigned char *p = buf;
  while (len) {
    ssize_t n = pread(fd, p, len, (off_t)off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      if (n == 0)
        errno = 0;
      return -1;
    }
    p += n;
    off += (uint64_t)n;
    len -= (size_t)n;
  }
  return 0;
}

/* Writes everything or fails with errno set: a short write is followed by
 * another write of the rest, which then says why (EFBIG, ENOSPC...). */
int prd_spool_write_full(int fd, const void *buf, size_t len)
{
  const unsigned char *p = buf;
  while (len) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -1;
    if (n == 0) {
      errno = EIO;
      return -1;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

int prd_spool_datasync(prd_spool *s, int fd)
{
  if (s->o.fdatasync_fn)
    return s->o.fdatasync_fn(fd);
  return fdatasync(fd);
}

static void lock_holder(int fd, char *pid, size_t len)
{
  ssize_t n = pread(fd, pid, len - 1, 0);
  size_t i;
  if (n <= 0) {
    snprintf(pid, len, "?");
    return;
  }
  pid[n] = 0;
  for (i = 0; pid[i] >= '0' && pid[i] <= '9'; i++)
    ;
  pid[i ? i : 1] = 0;
  if (!i)
    pid[0] = '?';
}

prd_spool_code prd_spool_lock(prd_spool *s)
{
  char path[4096], text[300], host[256];
  int fd;
  snprintf(path, sizeof path, "%s/LOCK", s->dir);
  fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0)
    return prd_spool_fail(s, PRD_SPOOL_IO, errno, "spool %s: cannot open LOCK", s->dir);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    char pid[32];
    lock_holder(fd, pid, sizeof pid);
    close(fd);
    if (e == EWOULDBLOCK)
      return prd_spool_fail(s, PRD_SPOOL_LOCKED, 0, "spool %s is in use by pid %s", s->dir, pid);
    return prd_spool_fail(s, PRD_SPOOL_IO, e, "spool %s: cannot lock LOCK", s->dir);
  }
  if (gethostname(host, sizeof host) != 0)
    host[0] = 0;
  host[sizeof host - 1] = 0;
  snprintf(text, sizeof text, "%ld %s\n", (long)getpid(), host);
  if (ftruncate(fd, 0) != 0 || pwrite(fd, text, strlen(text), 0) < 0) {
    int e = errno;
    close(fd);
    return prd_spool_fail(s, PRD_SPOOL_IO, e, "spool %s: cannot write LOCK", s->dir);
  }
  s->lock_fd = fd;
  return PRD_SPOOL_OK;
}

static void random_id(unsigned char id[16])
{
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC), i;
  if (fd >= 0 && prd_spool_pread_full(fd, id, 16, 0) == 0) {
    close(fd);
    return;
  }
  if (fd >= 0)
    close(fd);
  {
    /* no /dev/urandom (a chroot): time, pid and an address mixed */
    uint64_t x = (uint64_t)prd_spool_now_ms() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)id;
    for (i = 0; i < 16; i++) {
      x ^= x << 13; x ^= x >> 7; x ^= x << 17;
      id[i] = (unsigned char)x;
    }
  }
}

static prd_spool_code write_id_file(prd_spool *s, const char *path)
{
  unsigned char b[SPOOL_FILE_LEN];
  char tmp[4096];
  int fd;
  memset(b, 0, sizeof b);
  memcpy(b, SPOOL_MAGIC, 8);
  prd_put16(b + 8, SPOOL_VERSION);
  random_id(s->id);
  memcpy(b + 16, s->id, 16);
  prd_put32(b + 32, prd_crc32c(0, b, 32));
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return prd_spool_fail(s, PRD_SPOOL_IO, errno, "spool %s: cannot create SPOOL", s->dir);
  if (prd_spool_write_full(fd, b, sizeof b) != 0 || fsync(fd) != 0) {
    int e = errno;
    close(fd);
    unlink(tmp);
    return prd_spool_fail(s, PRD_SPOOL_IO, e, "spool %s: cannot write SPOOL", s->dir);
  }
  close(fd);
  if (rename(tmp, path) != 0 || prd_spool_fsync_dir(s->dir) != 0) {
    int e = errno;
    unlink(tmp);
    return prd_spool_fail(s, PRD_SPOOL_IO, e, "spool %s: cannot install SPOOL", s->dir);
  }
  return PRD_SPOOL_OK;
}

/* Reads dir/SPOOL, or writes it when missing. An unknown version refuses
 * the spool (nothing deleted); a damaged SPOOL is written anew with a new
 * id (the records keep their segments' ids), counted in damaged. */
prd_spool_code prd_spool_id_file(prd_spool *s)
{
  char path[4096];
  unsigned char b[SPOOL_FILE_LEN];
  int fd, rc;
  snprintf(path, sizeof path, "%s/SPOOL", s->dir);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT)
    return write_id_file(s, path);
  if (fd < 0)
    return prd_spool_fail(s, PRD_SPOOL_IO, errno, "spool %s: cannot open SPOOL", s->dir);
  rc = prd_spool_pread_full(fd, b, sizeof b, 0);
  close(fd);
  if (rc == 0 && memcmp(b, SPOOL_MAGIC, 8) == 0 && prd_get32(b + 32) == prd_crc32c(0, b, 32)) {
    if (prd_get16(b + 8) != SPOOL_VERSION)
      return prd_spool_fail(s, PRD_SPOOL_VERSION, 0,
                            "spool %s has format version %u, this build reads version %u",
                            s->dir, (unsigned)prd_get16(b + 8), SPOOL_VERSION);
    memcpy(s->id, b + 16, 16);
    return PRD_SPOOL_OK;
  }
  s->m.damaged++;
  return write_id_file(s, path);
}

void prd_spool_header_encode(unsigned char *h, const unsigned char id[16], uint64_t first, int64_t created,
                             unsigned flags)
{
  memset(h, 0, SEG_HDR_LEN);
  memcpy(h, SEG_MAGIC, 8);
  prd_put16(h + 8, SPOOL_VERSION);
  prd_put16(h + 10, (uint16_t)flags);
  prd_put32(h + 12, SEG_HDR_LEN);
  memcpy(h + 16, id, 16);
  prd_put64(h + 32, first);
  prd_put64(h + 40, (uint64_t)created);
  prd_put32(h + 60, prd_crc32c(0, h, 60));
}

int prd_spool_header_decode(const unsigned char *h, prd_seg *g)
{
  if (memcmp(h, SEG_MAGIC, 8) != 0 || prd_get32(h + 60) != prd_crc32c(0, h, 60))
    return -1;
  if (prd_get16(h + 8) != SPOOL_VERSION)
    return prd_get16(h + 8) ? prd_get16(h + 8) : -1;
  if (prd_get32(h + 12) != SEG_HDR_LEN)
    return -1;
  memcpy(g->spool_id, h + 16, 16);
  g->prealloc = (prd_get16(h + 10) & SEG_FLAG_PREALLOC) != 0;
  g->first = prd_get64(h + 32);
  g->last = g->first - 1;
  g->created_ms = (int64_t)prd_get64(h + 40);
  return 0;
}
