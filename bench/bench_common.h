/*
 * bench_common.h - what the C benchmarks share (raw_producer.c,
 * nats/raw_publisher.c): the workload, pre-encoded (README.md: message i
 * uses slot k = i % 1000, key "user-<k>", the 89-byte JSON document with
 * user_id 10000+k and ts 1700000000000+k, exactly as the Lua and Python
 * benchmarks build it), a monotonic clock, and the CPU time of the main
 * thread and of the whole process from /proc (user + system), so that a
 * client's own work and its library's threads are told apart.
 * Header-only (static functions): each benchmark is one translation unit.
 * Caveat: Linux only (/proc/self/task/<pid>/stat).
 */
#ifndef PRD_BENCH_COMMON_H
#define PRD_BENCH_COMMON_H

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KEY_POOL 1000

/* The KEY_POOL keys and values, encoded before anything is timed. */
struct bench_workload {
        char keys[KEY_POOL][16];
        char payloads[KEY_POOL][160];
        size_t key_len[KEY_POOL], payload_len[KEY_POOL];
};

static void bench_workload_init(struct bench_workload *w) {
        long long base_ts = 1700000000000LL;
        for (int i = 0; i < KEY_POOL; i++) {
                w->key_len[i] = (size_t)snprintf(w->keys[i], sizeof(w->keys[i]),
                                                 "user-%d", i);
                w->payload_len[i] = (size_t)snprintf(
                    w->payloads[i], sizeof(w->payloads[i]),
                    "{\"event\":\"user_signup\",\"user_id\":%d,"
                    "\"ts\":%lld,\"tags\":[\"a\",\"b\",\"c\"],"
                    "\"ok\":true}",
                    10000 + i, base_ts + i);
        }
}

/* utime + stime in clock ticks from a /proc stat file (fields 14, 15). */
static long long stat_ticks(const char *path) {
        char buf[1024], *p;
        long long utime = 0, stime = 0;
        FILE *f = fopen(path, "r");

        if (!f)
                return 0;
        p = fgets(buf, sizeof(buf), f);
        fclose(f);
        if (!p || !(p = strrchr(buf, ')')))   /* after "(comm)" */
                return 0;
        if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld",
                   &utime, &stime) != 2)
                return 0;
        return utime + stime;
}

/* CPU seconds used so far by the main thread and by the whole process. */
static void cpu_seconds(double *main_thread, double *process) {
        char path[64];
        double hz = (double)sysconf(_SC_CLK_TCK);

        snprintf(path, sizeof(path), "/proc/self/task/%ld/stat", (long)getpid());
        *main_thread = (double)stat_ticks(path) / hz;
        *process = (double)stat_ticks("/proc/self/stat") / hz;
}

static double now_monotonic(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif
