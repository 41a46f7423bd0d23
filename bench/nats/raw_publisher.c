/*
 * raw_publisher.c - NATS benchmark (a): the nats.c ceiling.
 *
 * Publishes N pre-encoded JSON payloads (the workload of bench/README.md:
 * 89 bytes, keys "user-0".."user-999") to JetStream through nats.c's own
 * asynchronous publish (js_PublishMsgAsync: js_PublishAsync with a
 * message, so that the key can ride in a header as the producers library
 * sends it), with a bound on the acks in flight (jsOptions'
 * PublishAsync.MaxPending), and counts the acks in the ack handler.
 * Nothing is encoded in the timed loop: this is the cost of nats.c itself,
 * the ceiling that tables through producers.nats (b) and nats-py (d) are
 * compared against (bench/nats/run.sh).
 *
 * Usage: prd_bench_nats_raw -s URL [-t subject] [-n count] [-P max_pending]
 *                           [-H header] [-W max_wait_ms]
 *   -s  the server's URL                           (required)
 *   -t  subject, captured by a stream               (default "bench.nats")
 *   -n  number of messages                          (default 200000)
 *   -P  acks in flight at most (MaxPending)         (default 10000)
 *   -H  the key's header name, "" for none          (default "Producers-Key")
 *   -W  an ack timeout a message (jsPubOptions.MaxWait, as producers.nats
 *       sets its ack_timeout), 0 for none            (default 0)
 *
 * Prints one machine-readable line on stdout (parsed by bench/nats/run.sh):
 *   RESULT bench=nats-raw sent=.. delivered=.. failed=.. seconds=.. rate=..
 *          rss_kb=.. cpu_main_us=.. cpu_other_us=..
 * where delivered counts acks, rate = delivered / (time when
 * js_PublishAsyncComplete returned after the last ack - time of the first
 * publish), cpu_*_us the CPU time of the main thread and of nats.c's
 * threads (the socket reader that runs the ack handler, the flusher) in
 * µs per message acked. An untimed warm-up of 1,000 messages comes first.
 *
 * Caveats: the ack handler runs on a nats.c thread: the counters are
 * atomic. A publish refused while MaxPending acks are in flight (nats.c
 * waits StallWait, then says NATS_TIMEOUT and leaves the message to us)
 * is retried, and counted as a stall.
 */
#define _POSIX_C_SOURCE 200809L

#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../bench_common.h"

/* Counters the ack handler updates (on nats.c's thread). */
struct ack_stats {
        long acked;
        long failed;
        char first_error[256];
};

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae,
                   void *closure) {
        struct ack_stats *st = closure;
        (void)js;
        if (pa != NULL) {
                __atomic_fetch_add(&st->acked, 1, __ATOMIC_RELAXED);
        } else if (__atomic_fetch_add(&st->failed, 1, __ATOMIC_RELAXED) == 0 &&
                   pae != NULL) {
                snprintf(st->first_error, sizeof(st->first_error),
                         "%s (code %d%s%s)", natsStatus_GetText(pae->Err),
                         (int)pae->ErrCode, pae->ErrText ? ": " : "",
                         pae->ErrText ? pae->ErrText : "");
        }
        natsMsg_Destroy(msg);
}

static void die_status(const char *what, natsStatus s) {
        fprintf(stderr, "raw_publisher: %s: %s\n", what, natsStatus_GetText(s));
        exit(1);
}

/* Publishes message k; retries while MaxPending acks are in flight.
 * Returns NATS_OK or the first other failure; *stalls counts the waits. */
static natsStatus publish_one(jsCtx *js, const char *subject,
                              const char *header, jsPubOptions *po,
                              const struct bench_workload *w, int k,
                              long *stalls) {
        natsMsg *msg = NULL;
        natsStatus s = natsMsg_Create(&msg, subject, NULL, w->payloads[k],
                                      (int)w->payload_len[k]);
        if (s == NATS_OK && header[0] != '\0')
                s = natsMsgHeader_Set(msg, header, w->keys[k]);
        while (s == NATS_OK) {
                s = js_PublishMsgAsync(js, &msg, po);
                if (s != NATS_TIMEOUT)
                        break;
                (*stalls)++;   /* still ours: try again */
                s = NATS_OK;
        }
        natsMsg_Destroy(msg);  /* NULL once published */
        return s;
}

/* Waits until every ack is in (bounded: 300 s). */
static void wait_acks(jsCtx *js) {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = 300 * 1000;
        natsStatus s = js_PublishAsyncComplete(js, &po);
        if (s != NATS_OK)
                fprintf(stderr, "raw_publisher: waiting for the acks: %s\n",
                        natsStatus_GetText(s));
}

static void usage(const char *prog) {
        fprintf(stderr,
                "Usage: %s -s URL [-t subject] [-n count] [-P max_pending] "
                "[-H header] [-W max_wait_ms]\n",
                prog);
}

int main(int argc, char **argv) {
        const char *url = NULL, *subject = "bench.nats";
        const char *header = "Producers-Key";
        long count = 200000, max_pending = 10000, max_wait = 0;
        int opt;

        while ((opt = getopt(argc, argv, "s:t:n:P:H:W:h")) != -1) {
                switch (opt) {
                case 's': url = optarg; break;
                case 't': subject = optarg; break;
                case 'n': count = strtol(optarg, NULL, 10); break;
                case 'P': max_pending = strtol(optarg, NULL, 10); break;
                case 'H': header = optarg; break;
                case 'W': max_wait = strtol(optarg, NULL, 10); break;
                default:
                        usage(argv[0]);
                        return opt == 'h' ? 0 : 2;
                }
        }
        if (!url || count <= 0 || max_pending <= 0) {
                usage(argv[0]);
                return 2;
        }

        static struct bench_workload w;
        bench_workload_init(&w);
        jsPubOptions po, *pop = NULL;
        if (max_wait > 0) {
                jsPubOptions_Init(&po);
                po.MaxWait = max_wait;
                pop = &po;
        }

        struct ack_stats st;
        memset(&st, 0, sizeof(st));
        natsConnection *nc = NULL;
        jsCtx *js = NULL;
        natsStatus s = natsConnection_ConnectTo(&nc, url);
        if (s != NATS_OK)
                die_status(url, s);
        jsOptions jo;
        jsOptions_Init(&jo);
        jo.PublishAsync.AckHandler = on_ack;
        jo.PublishAsync.AckHandlerClosure = &st;
        jo.PublishAsync.MaxPending = max_pending;
        if ((s = natsConnection_JetStream(&js, nc, &jo)) != NATS_OK)
                die_status("JetStream context", s);

        fprintf(stderr,
                "raw_publisher: %ld messages of ~%zu bytes to %s @ %s "
                "(nats.c %s, MaxPending %ld, key header %s)\n",
                count, w.payload_len[0], subject, url, nats_GetVersion(),
                max_pending, header[0] ? header : "none");

        /* Warm up, untimed: one message per key, every ack in. */
        long stalls = 0, errors = 0;
        for (int k = 0; k < KEY_POOL; k++)
                if (publish_one(js, subject, header, pop, &w, k, &stalls) != NATS_OK)
                        errors++;
        wait_acks(js);
        if (st.acked != KEY_POOL || errors)
                fprintf(stderr, "raw_publisher: warm-up: %ld of %d acked: %s\n",
                        st.acked, KEY_POOL, st.first_error);
        memset(&st, 0, sizeof(st));
        stalls = errors = 0;

        long sent = 0;
        double cpu_main0, cpu_all0, cpu_main1, cpu_all1;
        cpu_seconds(&cpu_main0, &cpu_all0);
        double t0 = now_monotonic();
        for (long i = 0; i < count; i++) {
                s = publish_one(js, subject, header, pop, &w, (int)(i % KEY_POOL),
                                &stalls);
                if (s == NATS_OK)
                        sent++;
                else if (errors++ == 0)
                        fprintf(stderr, "raw_publisher: publish: %s\n",
                                natsStatus_GetText(s));
        }
        wait_acks(js);
        double t_end = now_monotonic();   /* after the last ack */
        cpu_seconds(&cpu_main1, &cpu_all1);

        long acked = __atomic_load_n(&st.acked, __ATOMIC_RELAXED);
        long failed = __atomic_load_n(&st.failed, __ATOMIC_RELAXED);
        double seconds = acked > 0 ? t_end - t0 : 0.0;
        double per_msg = acked > 0 ? 1e6 / (double)acked : 0.0;
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        fprintf(stderr, "raw_publisher: publish errors %ld, stalls %ld\n",
                errors, stalls);
        if (failed)
                fprintf(stderr, "raw_publisher: %ld failed acks, first: %s\n",
                        failed, st.first_error);
        printf("RESULT bench=nats-raw sent=%ld delivered=%ld failed=%ld "
               "seconds=%.3f rate=%.0f rss_kb=%ld cpu_main_us=%.3f "
               "cpu_other_us=%.3f\n",
               sent, acked, failed + errors, seconds,
               seconds > 0 ? (double)acked / seconds : 0.0, ru.ru_maxrss,
               (cpu_main1 - cpu_main0) * per_msg,
               ((cpu_all1 - cpu_main1) - (cpu_all0 - cpu_main0)) * per_msg);
        fflush(stdout);

        jsCtx_Destroy(js);
        natsConnection_Destroy(nc);
        nats_Close();
        return acked == count ? 0 : 1;
}
