#!/usr/bin/env python3
"""python_producer.py - benchmark (d): the original stack.

Python confluent_kafka (over the same librdkafka), values encoded with
json.dumps per message, deliveries counted in a per-message delivery callback.
Same workload and producer configuration as raw_producer.c and
lua_producer.lua: message i uses slot k = i % 1000, key "user-<k>", value
{"event": "user_signup", "user_id": 10000+k, "ts": 1700000000000+k,
 "tags": ["a", "b", "c"], "ok": true}.  When the local queue is full
(BufferError) it polls and retries.  An untimed warm-up of 1,000 messages
(one per key) comes first, as in the other benchmarks.

Usage: python3 bench/python_producer.py BOOTSTRAP [COUNT] [TOPIC]

Prints one machine-readable line on stdout, parsed by bench/run.sh:
  RESULT bench=python sent=.. delivered=.. failed=.. seconds=.. rate=.. rss_kb=..
         cpu_main_us=.. cpu_other_us=..
rate counts successful deliveries only, over the time from the first
produce() until flush has served the last report; rss_kb is resource.getrusage's
ru_maxrss (peak RSS, KiB on Linux); cpu_*_us the CPU time of the main thread
and of all other threads (librdkafka's) during the timed part, per message.
"""
import json
import os
import resource
import sys
import time

import confluent_kafka
from confluent_kafka import Producer

KEY_POOL = 1000
BASE_TS = 1700000000000

# Mirrors the producers library's defaults.
CONFIG = {
    "compression.type": "gzip",
    "linger.ms": 10,
    "batch.num.messages": 10000,
    "batch.size": 1000000,
    "queue.buffering.max.messages": 100000,
    "queue.buffering.max.kbytes": 1048576,
    "acks": "all",
    "enable.idempotence": True,
    "client.id": "emulator-producer",
}


def cpu_seconds():
    """CPU seconds (user + system, from /proc) of the main thread and of the
    whole process so far."""
    hz = os.sysconf("SC_CLK_TCK")

    def ticks(path):
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    return (ticks("/proc/self/task/%d/stat" % os.getpid()) / hz,
            ticks("/proc/self/stat") / hz)


def main():
    if len(sys.argv) < 2:
        sys.stderr.write("usage: python_producer.py BOOTSTRAP [COUNT] [TOPIC]\n")
        return 2
    bootstrap = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 1000000
    topic = sys.argv[3] if len(sys.argv) > 3 else "bench"

    stats = {"delivered": 0, "failed": 0, "first_error": None}

    def on_delivery(err, msg):
        if err is None:
            stats["delivered"] += 1
        else:
            if stats["first_error"] is None:
                stats["first_error"] = str(err)
            stats["failed"] += 1

    config = dict(CONFIG, **{"bootstrap.servers": bootstrap})
    # BENCH_CONFIG="name=value,...": properties over the defaults (run.sh -X)
    for item in filter(None, os.environ.get("BENCH_CONFIG", "").split(",")):
        name, _, value = item.partition("=")
        config[name] = value
    producer = Producer(config)
    keys = ["user-%d" % k for k in range(KEY_POOL)]

    # Untimed warm-up: one message per key (so every partition), waited for,
    # so that connections and metadata are in place before measuring.
    for k in range(KEY_POOL):
        producer.produce(topic, value=json.dumps({"event": "warmup"}),
                         key=keys[k], on_delivery=on_delivery)
    producer.flush(30)
    stats.update(delivered=0, failed=0, first_error=None)

    sent = 0
    errors = 0
    queue_full_waits = 0
    cpu_main0, cpu_all0 = cpu_seconds()
    t0 = time.monotonic()
    for i in range(count):
        k = i % KEY_POOL
        value = json.dumps({"event": "user_signup", "user_id": 10000 + k,
                            "ts": BASE_TS + k, "tags": ["a", "b", "c"],
                            "ok": True})
        while True:
            try:
                producer.produce(topic, value=value, key=keys[k],
                                 on_delivery=on_delivery)
                sent += 1
                break
            except BufferError:
                # Local queue full: serve delivery reports, then retry.
                queue_full_waits += 1
                producer.poll(0.1)
            except Exception as exc:  # noqa: BLE001 - count and go on
                if errors == 0:
                    sys.stderr.write("python_producer: produce: %s\n" % exc)
                errors += 1
                break
        if i & 1023 == 0:
            producer.poll(0)

    deadline = time.monotonic() + 300
    while len(producer) > 0 and time.monotonic() < deadline:
        producer.flush(1)
    t_end = time.monotonic()  # after the last report
    cpu_main1, cpu_all1 = cpu_seconds()

    seconds = t_end - t0 if stats["delivered"] > 0 else 0.0
    rate = stats["delivered"] / seconds if seconds > 0 else 0.0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    sys.stderr.write("python_producer: confluent_kafka %s, librdkafka %s, "
                     "queue-full waits %d, still queued %d, "
                     "user CPU %.2fs, system CPU %.2fs\n"
                     % (confluent_kafka.version()[0],
                        confluent_kafka.libversion()[0],
                        queue_full_waits, len(producer),
                        ru.ru_utime, ru.ru_stime))
    if stats["failed"]:
        sys.stderr.write("python_producer: %d failed deliveries, first: %s\n"
                         % (stats["failed"], stats["first_error"]))
    per_msg = 1e6 / stats["delivered"] if stats["delivered"] else 0.0
    print("RESULT bench=python sent=%d delivered=%d failed=%d seconds=%.3f "
          "rate=%.0f rss_kb=%d cpu_main_us=%.3f cpu_other_us=%.3f"
          % (sent, stats["delivered"], stats["failed"] + errors, seconds, rate,
             ru.ru_maxrss, (cpu_main1 - cpu_main0) * per_msg,
             ((cpu_all1 - cpu_main1) - (cpu_all0 - cpu_main0)) * per_msg),
          flush=True)
    return 0 if stats["delivered"] == count else 1


if __name__ == "__main__":
    sys.exit(main())
