#!/usr/bin/env python3
"""gzip_levels.py - what each gzip level costs and saves on JSON events.

librdkafka compresses each batch with zlib (compression.type=gzip); its
compression.level picks zlib's level, 6 by default.  This compresses
batches of two kinds of JSON messages with the same zlib, at levels 1, 3,
6 and 9, and prints a Markdown table: the compression ratio, the size
against level 6 and the CPU time per message (best of 5).

  benchmark  the benchmark's message (bench/raw_producer.c): 1,000
             distinct values that repeat, so every level finds the repeats.
  varied     events with a random session id, IP address, user id, price
             and search words: more like a real stream, where the levels
             differ.

Usage: python3 bench/gzip_levels.py [BATCH ...]   (default: 1000 10000)
"""
import json
import random
import string
import sys
import time
import zlib

LEVELS = (1, 3, 6, 9)
EVENTS = ("user_signup", "page_view", "purchase", "logout", "add_to_cart", "search")
AGENTS = ("Mozilla/5.0 (X11; Linux x86_64)",
          "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)", "curl/8.1")
WORDS = ("red", "shoes", "cheap", "laptop", "kafka", "book", "lua", "phone")


def compact(obj):
    return json.dumps(obj, separators=(",", ":"))


def benchmark_message(i, _rng):
    k = i % 1000
    return compact({"event": "user_signup", "user_id": 10000 + k,
                    "ts": 1700000000000 + k, "tags": ["a", "b", "c"], "ok": True})


def varied_message(i, rng):
    return compact({
        "event": rng.choice(EVENTS),
        "user_id": rng.randint(1, 10**7),
        "ts": 1700000000000 + 7 * i + rng.randint(0, 999),
        "session": "".join(rng.choices("0123456789abcdef", k=32)),
        "ip": ".".join(str(rng.randint(1, 254)) for _ in range(4)),
        "price": round(rng.random() * 500, 2),
        "ua": rng.choice(AGENTS),
        "query": " ".join(rng.choices(WORDS, k=rng.randint(0, 4))),
        "ok": rng.random() < 0.9,
    })


def best_seconds(data, level, tries=5):
    best = float("inf")
    for _ in range(tries):
        start = time.perf_counter()
        compressed = zlib.compress(data, level)
        best = min(best, time.perf_counter() - start)
    return len(compressed), best


def main():
    batches = [int(a) for a in sys.argv[1:]] or [1000, 10000]
    print(f"zlib {zlib.ZLIB_RUNTIME_VERSION}; sizes and times of one batch, best of 5\n")
    print("| messages | batch | level | ratio | size vs level 6 | CPU µs/msg |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, message in (("benchmark", benchmark_message), ("varied", varied_message)):
        for batch in batches:
            rng = random.Random(7)
            data = "".join(message(i, rng) for i in range(batch)).encode()
            rows = {level: best_seconds(data, level) for level in LEVELS}
            size6 = rows[6][0]
            for level, (size, seconds) in rows.items():
                print(f"| {name} | {batch:,} | {level} | {len(data) / size:.1f} "
                      f"| {100 * size / size6:.0f}% | {seconds * 1e6 / batch:.2f} |")


if __name__ == "__main__":
    main()
