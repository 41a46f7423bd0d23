#!/usr/bin/env python3
"""python_publisher.py - NATS benchmark (d): a Python JetStream publisher.

nats-py (asyncio) publishing with JetStreamContext.publish_async, at most
MAX_PENDING acks in flight (its publish_async_max_pending: publish_async
waits for room), values encoded with json.dumps per message, the key in
the header the producers library sends it in, acks counted in a done
callback per message. The workload of bench/README.md: message i uses
slot k = i % 1000, key "user-<k>", value
{"event": "user_signup", "user_id": 10000+k, "ts": 1700000000000+k,
 "tags": ["a", "b", "c"], "ok": true}. An untimed warm-up of 1,000
messages comes first, as in the other benchmarks.

Usage: python bench/nats/python_publisher.py URL [COUNT] [SUBJECT] [MAX_PENDING] [HEADER]
(the venv's python: ~/.cache/producers/venv/bin/python, which has nats-py)

Prints one machine-readable line on stdout, parsed by bench/nats/run.sh:
  RESULT bench=nats-python sent=.. delivered=.. failed=.. seconds=.. rate=..
         rss_kb=.. cpu_main_us=.. cpu_other_us=..
delivered counts acks; rate = delivered / (time when the last ack was in -
time of the first publish); cpu_main_us is the main thread's CPU time a
message (time.thread_time: asyncio runs everything there), cpu_other_us the
rest of the process's.
"""
import argparse
import asyncio
import importlib.metadata
import json
import resource
import sys
import time

import nats

KEY_POOL = 1000
BASE_TS = 1700000000000


class Acks:
    """Counts the acks (futures done) and keeps the first failure."""

    def __init__(self):
        self.delivered = 0
        self.failed = 0
        self.first_error = None

    def done(self, future):
        exc = future.exception()
        if exc is None:
            self.delivered += 1
            return
        if self.first_error is None:
            self.first_error = repr(exc)
        self.failed += 1


async def publish_all(js, subject, header, values, count, acks):
    """Publishes count messages (values(i) gives i's key and bytes), then
    waits until every ack is in. Returns how many publishes were taken."""
    sent = 0
    for i in range(count):
        key, value = values(i)
        future = await js.publish_async(subject, value, headers={header: key} if header else None)
        future.add_done_callback(acks.done)
        sent += 1
    await js.publish_async_completed()
    return sent


async def run(url, count, subject, max_pending, header):
    nc = await nats.connect(url)
    js = nc.jetstream(publish_async_max_pending=max_pending)
    keys = ["user-%d" % k for k in range(KEY_POOL)]

    def warm(i):
        return keys[i], json.dumps({"event": "warmup"}).encode()

    def value(i):
        k = i % KEY_POOL
        return keys[k], json.dumps({"event": "user_signup", "user_id": 10000 + k,
                                    "ts": BASE_TS + k, "tags": ["a", "b", "c"],
                                    "ok": True}).encode()

    acks = Acks()
    await publish_all(js, subject, header, warm, KEY_POOL, acks)
    if acks.delivered != KEY_POOL:
        sys.stderr.write("python_publisher: warm-up: %d of %d acked: %s\n"
                         % (acks.delivered, KEY_POOL, acks.first_error))
    acks = Acks()
    cpu_main0, cpu_all0 = time.thread_time(), time.process_time()
    t0 = time.monotonic()
    sent = await publish_all(js, subject, header, value, count, acks)
    t_end = time.monotonic()  # after the last ack
    cpu_main1, cpu_all1 = time.thread_time(), time.process_time()
    await nc.close()

    seconds = t_end - t0 if acks.delivered > 0 else 0.0
    per_msg = 1e6 / acks.delivered if acks.delivered else 0.0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    sys.stderr.write("python_publisher: nats-py %s, %d messages to %s @ %s, "
                     "max pending %d, key header %s\n"
                     % (importlib.metadata.version("nats-py"), count, subject, url, max_pending, header or "none"))
    if acks.failed:
        sys.stderr.write("python_publisher: %d failed acks, first: %s\n"
                         % (acks.failed, acks.first_error))
    print("RESULT bench=nats-python sent=%d delivered=%d failed=%d seconds=%.3f "
          "rate=%.0f rss_kb=%d cpu_main_us=%.3f cpu_other_us=%.3f"
          % (sent, acks.delivered, acks.failed, seconds,
             acks.delivered / seconds if seconds > 0 else 0.0, ru.ru_maxrss,
             (cpu_main1 - cpu_main0) * per_msg,
             max(0.0, (cpu_all1 - cpu_main1) - (cpu_all0 - cpu_main0)) * per_msg),
          flush=True)
    return 0 if acks.delivered == count else 1


def main():
    parser = argparse.ArgumentParser(description="NATS benchmark (d): nats-py publish_async")
    parser.add_argument("url")
    parser.add_argument("count", nargs="?", type=int, default=200000)
    parser.add_argument("subject", nargs="?", default="bench.nats")
    parser.add_argument("max_pending", nargs="?", type=int, default=10000)
    parser.add_argument("header", nargs="?", default="Producers-Key")
    a = parser.parse_args()
    return asyncio.run(run(a.url, a.count, a.subject, a.max_pending, a.header))


if __name__ == "__main__":
    sys.exit(main())
