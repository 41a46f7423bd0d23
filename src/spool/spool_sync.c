/*
 * producers - a Kafka producer for Lua over librdkafka.
 * SPDX-License-Identifier: MIT
 *
 * spool_sync.c: fsync = "interval": a thread of ours calls fdatasync on
 * the active segment every fsync_interval_ms when something was written
 * since the last one, so an append costs one write() and never waits for
 * the disk (an nginx worker's event loop included).
 *
 * The thread holds the lock only to dup() the active descriptor (a roll
 * may close the original meanwhile; the dup keeps the same open file)
 * and to record a failure. A failure is never retried on that file
 * (I16): it is counted, and the next append seals the segment and starts
 * a new one if it is still the active one (failed_gen names it).
 */
#include <errno.h>
#include <time.h>
#include <unistd.h>
#include "spool_int.h"

void prd_spool_fsync_error(prd_spool *s)
{
  pthread_mutex_lock(&s->mu);
  s->m.fsync_errors++;
  pthread_mutex_unlock(&s->mu);
}

static void deadline(struct timespec *ts, unsigned ms)
{
  clock_gettime(CLOCK_REALTIME, ts);
  ts->tv_sec += ms / 1000;
  ts->tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

static void *sync_main(void *arg)
{
  prd_spool *s = arg;
  struct timespec ts;
  pthread_mutex_lock(&s->mu);
  while (!s->stop) {
    deadline(&ts, s->o.fsync_interval_ms);
    while (!s->stop && pthread_cond_timedwait(&s->cv, &s->mu, &ts) != ETIMEDOUT)
      ;
    if (!s->stop && s->dirty && s->active_fd >= 0 && s->failed_gen != s->gen + 1) {
      unsigned gen = s->gen;
      int fd = dup(s->active_fd), rc;
      s->dirty = 0;
      pthread_mutex_unlock(&s->mu);
      rc = fd >= 0 ? prd_spool_datasync(s, fd) : -1;
      if (fd >= 0)
        close(fd);
      pthread_mutex_lock(&s->mu);
      if (rc != 0) {
        s->m.fsync_errors++;
        s->failed_gen = gen + 1;
      }
    }
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

int prd_spool_sync_start(prd_spool *s)
{
  int rc = pthread_create(&s->thread, NULL, sync_main, s);
  if (rc != 0) {
    errno = rc;
    return -1;
  }
  s->thread_on = 1;
  return 0;
}

void prd_spool_sync_stop(prd_spool *s)
{
  if (!s->thread_on)
    return;
  pthread_mutex_lock(&s->mu);
  s->stop = 1;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
  pthread_join(s->thread, NULL);
  s->thread_on = 0;
}

void prd_spool_sync_dirty(prd_spool *s)
{
  pthread_mutex_lock(&s->mu);
  s->dirty = 1;
  pthread_mutex_unlock(&s->mu);
}

int prd_spool_sync_failed(prd_spool *s)
{
  int failed;
  pthread_mutex_lock(&s->mu);
  failed = s->failed_gen == s->gen + 1;
  pthread_mutex_unlock(&s->mu);
  return failed;
}
