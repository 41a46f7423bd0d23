/*
 * raw_producer.c - benchmark (a): the librdkafka ceiling.
 *
 * Produces N pre-encoded JSON payloads (about 100 bytes each, keys from a
 * pool of 1,000 "user-0".."user-999") straight through librdkafka's C API,
 * with the same configuration as the producers library's defaults, and
 * counts successful deliveries in a delivery-report callback.  Nothing is
 * encoded in the timed loop: this is the cost of librdkafka itself (plus
 * gzip), the ceiling that the Lua library (b, c) and Python (d) are
 * compared against.
 *
 * With -N it is the naive C producer instead, the row issue #24 compares
 * (b) with: what a C programmer writes first from librdkafka's examples,
 * at the same settings: rd_kafka_producev (its argument list parsed each
 * call) and rd_kafka_poll(rk, 0) after every message, where (a) calls
 * rd_kafka_produce on a topic handle and polls once every 1,024.
 *
 * Usage: prd_bench_raw -B bootstrap [-t topic] [-n count] [-N] [-X prop=value]...
 *   -B  bootstrap.servers                       (required)
 *   -t  topic                                   (default "bench")
 *   -n  number of messages                      (default 1000000)
 *   -N  naive: producev and poll(0) after each message
 *   -X  extra librdkafka property over the defaults, repeatable
 *
 * Prints one machine-readable line on stdout (parsed by bench/run.sh):
 *   RESULT bench=raw|raw-naive sent=.. delivered=.. failed=.. seconds=.. rate=.. rss_kb=..
 *          cpu_main_us=.. cpu_other_us=..
 * where rate = delivered / (time when the last report was served - time of
 * the first produce call), rss_kb is getrusage()'s ru_maxrss, and cpu_*_us
 * the CPU time (user + system, from /proc) of the main thread and of all
 * other threads (librdkafka's) during the timed part, in µs per message
 * delivered.  An
 * untimed warm-up of 1,000 messages (one per key) comes first, as in the
 * other benchmarks.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "bench_common.h"

/* Mirrors the producers library's defaults (see the issue / lua docs). */
static const char *default_conf[][2] = {
    {"compression.type", "gzip"},
    {"linger.ms", "10"},
    {"batch.num.messages", "10000"},
    {"batch.size", "1000000"},
    {"queue.buffering.max.messages", "100000"},
    {"queue.buffering.max.kbytes", "1048576"},
    {"acks", "all"},
    {"enable.idempotence", "true"},
    {"client.id", "emulator-producer"},
};

/* Counters updated by the delivery-report callback (runs inside poll). */
struct dr_stats {
        long delivered;
        long failed;
        char first_error[256];
};

static void dr_msg_cb(rd_kafka_t *rk,
                      const rd_kafka_message_t *msg,
                      void *opaque) {
        struct dr_stats *st = opaque;
        (void)rk;
        if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                st->delivered++;
        } else {
                if (st->failed == 0)
                        snprintf(st->first_error, sizeof(st->first_error),
                                 "%s", rd_kafka_err2str(msg->err));
                st->failed++;
        }
}

static void set_conf(rd_kafka_conf_t *conf, const char *name,
                     const char *value) {
        char errstr[512];
        if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
                fprintf(stderr, "raw_producer: %s=%s: %s\n", name, value,
                        errstr);
                exit(2);
        }
}

static void usage(const char *prog) {
        fprintf(stderr,
                "Usage: %s -B bootstrap [-t topic] [-n count] [-N] "
                "[-X prop=value]...\n",
                prog);
}

/* Queues message k: on the topic handle (a), or through producev with the
 * topic's name (-N, naive). 0 or librdkafka's error. */
static rd_kafka_resp_err_t produce_one(rd_kafka_t *rk, rd_kafka_topic_t *rkt,
                                       const char *topic, int naive,
                                       const char *payload, size_t payload_len,
                                       const char *key, size_t key_len) {
        if (naive)
                return rd_kafka_producev(
                    rk, RD_KAFKA_V_TOPIC(topic),
                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                    RD_KAFKA_V_VALUE((void *)payload, payload_len),
                    RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_END);
        if (rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY,
                             (void *)payload, payload_len, key, key_len,
                             NULL) == 0)
                return RD_KAFKA_RESP_ERR_NO_ERROR;
        return rd_kafka_last_error();
}

int main(int argc, char **argv) {
        const char *bootstrap = NULL;
        const char *topic     = "bench";
        long count            = 1000000;
        int naive             = 0;
        char errstr[512];
        int opt;

        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        for (size_t i = 0; i < sizeof(default_conf) / sizeof(default_conf[0]);
             i++)
                set_conf(conf, default_conf[i][0], default_conf[i][1]);

        while ((opt = getopt(argc, argv, "B:t:n:NX:h")) != -1) {
                switch (opt) {
                case 'B':
                        bootstrap = optarg;
                        break;
                case 't':
                        topic = optarg;
                        break;
                case 'n':
                        count = strtol(optarg, NULL, 10);
                        break;
                case 'N':
                        naive = 1;
                        break;
                case 'X': {
                        char *eq = strchr(optarg, '=');
                        if (!eq) {
                                fprintf(stderr,
                                        "raw_producer: -X expects prop=value\n");
                                return 2;
                        }
                        *eq = '\0';
                        set_conf(conf, optarg, eq + 1);
                        break;
                }
                default:
                        usage(argv[0]);
                        return opt == 'h' ? 0 : 2;
                }
        }
        if (!bootstrap || count <= 0) {
                usage(argv[0]);
                return 2;
        }
        set_conf(conf, "bootstrap.servers", bootstrap);

        struct dr_stats st;
        memset(&st, 0, sizeof(st));
        rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
        rd_kafka_conf_set_opaque(conf, &st);

        /* Pre-encode the payloads and keys before timing anything. */
        static struct bench_workload w;
        bench_workload_init(&w);

        rd_kafka_t *rk =
            rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (!rk) {
                fprintf(stderr, "raw_producer: rd_kafka_new: %s\n", errstr);
                return 1;
        }
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        if (!rkt) {
                fprintf(stderr, "raw_producer: topic %s: %s\n", topic,
                        rd_kafka_err2str(rd_kafka_last_error()));
                rd_kafka_destroy(rk);
                return 1;
        }

        fprintf(stderr,
                "raw_producer: %ld messages of ~%zu bytes to %s @ %s "
                "(librdkafka %s%s)\n",
                count, w.payload_len[0], topic, bootstrap, rd_kafka_version_str(),
                naive ? "; naive: producev, poll(0) after each" : "");

        /* Warm up, untimed: one message per key (so every partition) and
         * wait for them, so connections and metadata are in place.  Without
         * this a run sometimes stalls ~1 s at start (seen with librdkafka
         * 2.0.2 and the mock cluster, in every client). */
        for (int k = 0; k < KEY_POOL; k++)
                rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY,
                                 w.payloads[k], w.payload_len[k], w.keys[k],
                                 w.key_len[k], NULL);
        rd_kafka_flush(rk, 30 * 1000);
        if (st.delivered != KEY_POOL)
                fprintf(stderr, "raw_producer: warm-up: %ld of %d delivered\n",
                        st.delivered, KEY_POOL);
        memset(&st, 0, sizeof(st));

        long sent = 0, produce_errors = 0, queue_full_waits = 0;
        double cpu_main0, cpu_all0, cpu_main1, cpu_all1;
        cpu_seconds(&cpu_main0, &cpu_all0);
        double t0 = now_monotonic();
        for (long i = 0; i < count; i++) {
                int k = (int)(i % KEY_POOL);
                for (;;) {
                        rd_kafka_resp_err_t err = produce_one(
                            rk, rkt, topic, naive, w.payloads[k], w.payload_len[k],
                            w.keys[k], w.key_len[k]);
                        if (!err) {
                                sent++;
                                break;
                        }
                        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                                /* Local queue full: serve delivery reports
                                 * (which frees room), then retry. */
                                queue_full_waits++;
                                rd_kafka_poll(rk, 100);
                                continue;
                        }
                        if (produce_errors++ == 0)
                                fprintf(stderr, "raw_producer: produce: %s\n",
                                        rd_kafka_err2str(err));
                        break;
                }
                /* Serve delivery reports without blocking: regularly (a),
                 * after each message (naive). */
                if (naive || (i & 1023) == 0)
                        rd_kafka_poll(rk, 0);
        }

        /* Wait for every outstanding delivery (bounded). */
        double deadline = now_monotonic() + 300.0;
        while (rd_kafka_outq_len(rk) > 0 && now_monotonic() < deadline)
                rd_kafka_flush(rk, 1000);
        double t_end = now_monotonic();   /* after the last report */
        cpu_seconds(&cpu_main1, &cpu_all1);

        double seconds = st.delivered > 0 ? t_end - t0 : 0.0;
        double rate    = seconds > 0 ? (double)st.delivered / seconds : 0.0;
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);

        fprintf(stderr,
                "raw_producer: produce errors %ld, queue-full waits %ld, "
                "still queued %d, user CPU %.2fs, system CPU %.2fs\n",
                produce_errors, queue_full_waits, rd_kafka_outq_len(rk),
                (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
                (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
        if (st.failed)
                fprintf(stderr, "raw_producer: %ld failed deliveries, first: %s\n",
                        st.failed, st.first_error);

        double per_msg = st.delivered > 0 ? 1e6 / (double)st.delivered : 0.0;
        printf("RESULT bench=%s sent=%ld delivered=%ld failed=%ld "
               "seconds=%.3f rate=%.0f rss_kb=%ld cpu_main_us=%.3f cpu_other_us=%.3f\n",
               naive ? "raw-naive" : "raw", sent, st.delivered,
               st.failed + produce_errors, seconds, rate,
               ru.ru_maxrss, (cpu_main1 - cpu_main0) * per_msg,
               ((cpu_all1 - cpu_main1) - (cpu_all0 - cpu_main0)) * per_msg);
        fflush(stdout);

        rd_kafka_topic_destroy(rkt);
        rd_kafka_destroy(rk);
        return st.delivered == count ? 0 : 1;
}
