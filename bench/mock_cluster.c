/*
 * mock_cluster.c - standalone librdkafka mock Kafka cluster for the benchmarks.
 *
 * The benchmarks (bench/run.sh) need a broker that lives in ANOTHER process
 * than the producer being measured, so that the broker's CPU and memory are
 * not charged to the producer (peak RSS is read per process).  This program
 * creates an in-memory librdkafka mock cluster (rd_kafka_mock_cluster_new on
 * a dummy producer handle), creates the bench topic, prints the cluster's
 * bootstrap address as a single flushed line on stdout and then serves
 * requests until it receives SIGTERM or SIGINT.
 *
 * Usage: prd_bench_mock_cluster [-b brokers] [-t topic] [-p partitions]
 *   -b  number of mock brokers            (default 3)
 *   -t  topic to create                   (default "bench")
 *   -p  partitions of that topic          (default 6)
 *
 * The mock cluster is an experimental librdkafka API (rdkafka_mock.h); it is
 * good enough for throughput comparisons between clients, but it is not a
 * real broker: it does no disk I/O and no replication.
 */
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static volatile sig_atomic_t stop_requested = 0;

static void on_signal(int sig) {
        (void)sig;
        stop_requested = 1;
}

static void usage(const char *prog) {
        fprintf(stderr,
                "Usage: %s [-b brokers] [-t topic] [-p partitions]\n",
                prog);
}

/* Parses a positive int option value, exits with a message otherwise. */
static int parse_positive(const char *what, const char *s) {
        char *end = NULL;
        long v    = strtol(s, &end, 10);
        if (end == s || *end != '\0' || v <= 0 || v > 100000) {
                fprintf(stderr, "mock_cluster: invalid %s: %s\n", what, s);
                exit(2);
        }
        return (int)v;
}

int main(int argc, char **argv) {
        int brokers       = 3;
        int partitions    = 6;
        const char *topic = "bench";
        int opt;
        char errstr[512];

        while ((opt = getopt(argc, argv, "b:t:p:h")) != -1) {
                switch (opt) {
                case 'b':
                        brokers = parse_positive("broker count", optarg);
                        break;
                case 't':
                        topic = optarg;
                        break;
                case 'p':
                        partitions = parse_positive("partition count", optarg);
                        break;
                default:
                        usage(argv[0]);
                        return opt == 'h' ? 0 : 2;
                }
        }

        /* The mock cluster needs an rd_kafka_t for its bookkeeping; a producer
         * with no bootstrap servers never connects anywhere by itself. */
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        /* log_level 4 (warning) hides the notice that this handle has no
         * bootstrap.servers: that is intended. The mock brokers' sockets
         * take this handle's socket settings: without TCP_NODELAY (which a
         * Kafka broker sets) a response could wait ~40 ms for the client's
         * delayed ACK, stalling every client alike. */
        if (rd_kafka_conf_set(conf, "client.id", "prd-bench-mock-cluster",
                              errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
            rd_kafka_conf_set(conf, "log_level", "4", errstr,
                              sizeof(errstr)) != RD_KAFKA_CONF_OK ||
            rd_kafka_conf_set(conf, "socket.nagle.disable", "true", errstr,
                              sizeof(errstr)) != RD_KAFKA_CONF_OK) {
                fprintf(stderr, "mock_cluster: %s\n", errstr);
                return 1;
        }
        rd_kafka_t *rk =
            rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (!rk) {
                fprintf(stderr, "mock_cluster: rd_kafka_new failed: %s\n",
                        errstr);
                return 1;
        }

        rd_kafka_mock_cluster_t *mcluster =
            rd_kafka_mock_cluster_new(rk, brokers);
        if (!mcluster) {
                fprintf(stderr, "mock_cluster: could not create mock cluster\n");
                rd_kafka_destroy(rk);
                return 1;
        }

        int replication = brokers < 3 ? brokers : 3;
        rd_kafka_resp_err_t err =
            rd_kafka_mock_topic_create(mcluster, topic, partitions, replication);
        if (err) {
                fprintf(stderr, "mock_cluster: topic create failed: %s\n",
                        rd_kafka_err2str(err));
                rd_kafka_mock_cluster_destroy(mcluster);
                rd_kafka_destroy(rk);
                return 1;
        }

        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);

        /* One line, flushed: the caller reads it to learn where to connect. */
        printf("%s\n", rd_kafka_mock_cluster_bootstraps(mcluster));
        fflush(stdout);
        fprintf(stderr,
                "mock_cluster: %d broker(s), topic \"%s\" with %d partition(s), "
                "pid %ld\n",
                brokers, topic, partitions, (long)getpid());

        /* The mock brokers run on librdkafka's own threads; just wait. */
        while (!stop_requested) {
                struct timespec ts = {0, 100 * 1000 * 1000};
                nanosleep(&ts, NULL);
        }

        fprintf(stderr, "mock_cluster: shutting down\n");
        rd_kafka_mock_cluster_destroy(mcluster);
        rd_kafka_destroy(rk);
        return 0;
}
