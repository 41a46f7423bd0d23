#!/usr/bin/env python3
# profile.py - splits the main thread of a callgrind profile of (b) into
# phases (bench/profile.sh runs it; bench/README.md, "Where (b)'s
# instructions go").
#
# Usage: bench/profile.py SRC COUNT FILE...
#        bench/profile.py --threads COUNT FILE...
#   SRC    the source tree the profiled module was built from (its src/ is
#          read to find the statistics' source lines, wherever the files are)
#   COUNT  messages the run produced (the per-message figures divide by it)
#   FILE   callgrind outputs of the main thread (callgrind.out.PID-01), one
#          a run; each prints one row
#
# Phases, in instructions a message (start-up and the 1,000-message
# warm-up included, as in every callgrind figure of bench/README.md):
#   script     the Lua VM outside every call of a Lua-facing function of the
#              module (prd_*, luaopen_*) and outside the loading of code: the
#              loop, the table constructor, the collector (where it runs while
#              the script allocates)
#   checks     produce's own code: the producer's and the arguments' checks,
#              the topic cache, the opaque; what else produce calls (its
#              own allocations, error paths) but the phases below
#   encode     prd_encode_value, called by produce
#   rdkafka    rd_kafka_produce / rd_kafka_producev (and topic handles)
#   serving    serving the main queue (from produce, poll and flush): taking
#              events, the batch's protected call, the report table if
#              any, the err string, the opaque's release
#   callback   the Lua on_delivery callback (lua_call[k] from the serving)
#   stats      statistics and latency bookkeeping: the functions
#              prd_latency_record / prd_latency_tick (and their callers'
#              lines calling them) and every line counting bytes
#   other      the rest: start-up (loading Lua code, luaopen_*, new), poll
#              and flush outside their serving, close
# With --threads, FILEs are the other threads' outputs (NAME.tNN.callgrind,
# bench/profile.sh -o): one row a run (NAME), its threads' instructions a
# message split by the object that ran them (zlib: gzip; librdkafka; libc:
# malloc, memset, locks; other), and their total. Debian's librdkafka has
# no symbols for its own functions, so the split is by object.
# A function inlined into another is counted by its source lines, which
# callgrind keeps (positions: line), so the split does not depend on what
# the compiler inlined.
import os
import re
import sys

NAME_RE = re.compile(r"^\((\d+)\)(?: (.*))?$")
RECURSION_RE = re.compile(r"'\d+$")


class Names:
    """callgrind's compressed names: "(id) name" defines, "(id)" refers."""

    def __init__(self):
        self.by_id = {}

    def get(self, text):
        m = NAME_RE.match(text)
        if not m:
            return text
        if m.group(2) is not None:
            self.by_id[m.group(1)] = m.group(2)
            return m.group(2)
        return self.by_id.get(m.group(1), "(" + m.group(1) + ")")


def base(fn):
    """A function's name without callgrind's recursion level ('2)."""
    return RECURSION_RE.sub("", fn)


def parse(path):
    """Self costs by (object, function, file, line) and call edges
    (caller object, caller function, caller file, caller line, callee
    object, callee function, inclusive cost)."""
    files, fns, obs = Names(), Names(), Names()
    self_cost, edges, total = {}, [], None
    ob = fl = fi = fn = None
    cob = cfn = None
    last = 0
    pending_call = False

    def position(tok):
        nonlocal last
        if tok == "*":
            return last
        if tok[0] in "+-":
            last += int(tok)
        else:
            last = int(tok)
        return last

    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                pos = position(parts[0])
                cost = int(parts[1]) if len(parts) > 1 else 0
                if pending_call:
                    edges.append((ob, fn, fi, pos, cob, cfn, cost))
                    pending_call = False
                    cob = ob        # cob= names the callee's object of one call
                else:
                    key = (ob, fn, fi, pos)
                    self_cost[key] = self_cost.get(key, 0) + cost
                continue
            key, _, value = line.partition("=")
            if key == "ob":
                ob = obs.get(value)
            elif key == "fl":
                fl = fi = files.get(value)
            elif key in ("fi", "fe"):
                fi = files.get(value)
            elif key == "fn":
                fn = base(fns.get(value))
                fi = fl
                cob = ob
            elif key == "cob":
                cob = obs.get(value)
            elif key in ("cfi", "cfl"):
                files.get(value)
            elif key == "cfn":
                cfn = base(fns.get(value))
            elif key == "calls":
                pending_call = True
            elif key == "totals" or line.startswith("summary:"):
                total = int(line.split(":")[1]) if ":" in line else int(value)
            elif line.startswith("totals:"):
                total = int(line.split(":")[1])
        if total is None:
            total = sum(self_cost.values())
    return self_cost, edges, total


def function_lines(src, names):
    """{(basename, line)} of the bodies of the C functions named, found in
    the .c and .h files under src/ (a definition: the name and '(' at the
    start of a line or after its return type, then a body to the first
    '}' in column 0)."""
    out = set()
    pattern = re.compile(r"^[A-Za-z].*\b(" + "|".join(names) + r")\(")
    for root, _, filenames in os.walk(src):
        for name in filenames:
            if not name.endswith((".c", ".h")):
                continue
            with open(os.path.join(root, name), encoding="utf-8", errors="replace") as f:
                text = f.read().split("\n")
            i = 0
            while i < len(text):
                if pattern.match(text[i]) and not text[i].rstrip().endswith(";"):
                    j = i
                    while j < len(text) and text[j] != "}":
                        out.add((name, j + 1))
                        j += 1
                    i = j
                i += 1
    return out


def matching_lines(src, regex):
    """{(basename, line)} of the lines under src/ that match regex."""
    out = set()
    pattern = re.compile(regex)
    for root, _, filenames in os.walk(src):
        for name in filenames:
            if not name.endswith((".c", ".h")):
                continue
            with open(os.path.join(root, name), encoding="utf-8", errors="replace") as f:
                for n, text in enumerate(f, 1):
                    if pattern.search(text):
                        out.add((name, n))
    return out


# The module's functions Lua calls (prd_<type>_<method>, producer_<method>
# in core/, luaopen_*): its
# static functions that Lua calls back (serve_reports, through the batch's
# lua_pcall) run inside one of them, whose cost holds theirs.
LUA_FACING = re.compile(r"^(prd_|luaopen_|producer_|signals_)")
MODULE_OB = re.compile(r"/producers/core\.so$|/core\.so$")
LOADERS = {"luaL_loadfilex", "luaL_loadbufferx", "luaL_loadstring", "lua_load",
           "luaL_loadfile", "luaL_loadbuffer", "dlopen", "dlopen@@GLIBC_2.34",
           "_dl_catch_error", "luaL_openlibs", "luaL_newstate"}
PRODUCE = {"prd_producer_produce", "producer_produce"}
# Names before and after issue #21's restructure (src/core/, src/kafka/).
ENCODE = {"prd_encode_value", "prd_json_encode_value", "prd_json_encode_table"}
RDKAFKA = {"rd_kafka_produce", "rd_kafka_producev", "rd_kafka_topic_new"}
SEND = {"send_message", "topic_handle", "prd_kafka_send", "kafka_send", "send"}
SERVE = {"prd_serve", "prd_serve_max", "prd_take_reports", "prd_drain_silently",
         "prd_report_serve", "prd_report_take", "prd_report_drain",
         "prd_report_drain_silently", "prd_queue_serve", "prd_queue_take",
         "prd_queue_drain", "prd_queue_drain_silently"}
SERVE_INNER = SERVE | {"serve_reports", "report", "serve_batch", "serve_events", "serve",
                       "collect_reports", "prd_report_call"}
CALLS = {"lua_call", "lua_callk"}
STATS_FUNCTIONS = ["prd_latency_record", "prd_latency_tick"]
STATS_LINES = r"prd_latency_record|prd_latency_tick|_bytes \+=|->(delivered|failures|outstanding|queued)(\+\+|--)"


def phases(path, src):
    self_cost, edges, total = parse(path)
    stats_at = function_lines(src, STATS_FUNCTIONS) | matching_lines(src, STATS_LINES)

    def at_stats(fi, line):
        return fi is not None and (os.path.basename(fi), line) in stats_at

    def into(callees, callers=None):
        """The inclusive cost of the calls into callees from outside them
        (from callers only, when given)."""
        return sum(cost for (_, fn, _, _, _, cfn, cost) in edges
                   if cfn in callees and fn not in callees
                   and (callers is None or fn in callers))

    produce = into(PRODUCE)
    encode = into(ENCODE, PRODUCE)
    rdkafka = into(RDKAFKA, PRODUCE | SEND)
    serving = into(SERVE)
    callback = into(CALLS, SERVE_INNER)
    # stats: the lines (self, and the calls made from them) in our code
    stats = sum(c for (ob, fn, fi, line), c in self_cost.items()
                if ob and MODULE_OB.search(ob) and at_stats(fi, line))
    stats += sum(cost for (ob, fn, fi, line, _, cfn, cost) in edges
                 if ob and MODULE_OB.search(ob) and at_stats(fi, line))
    stats_produce = sum(c for (ob, fn, fi, line), c in self_cost.items()
                        if fn in PRODUCE and at_stats(fi, line))
    stats_produce += sum(cost for (ob, fn, fi, line, _, cfn, cost) in edges
                         if fn in PRODUCE and at_stats(fi, line))
    serve_in_produce = into(SERVE, PRODUCE)
    checks = produce - encode - rdkafka - serve_in_produce - stats_produce
    serving_own = serving - callback - (stats - stats_produce)
    # script: what the VM ran outside the module and the loaders
    module = sum(cost for (ob, fn, _, _, cob, cfn, cost) in edges
                 if cob and MODULE_OB.search(cob) and not (ob and MODULE_OB.search(ob))
                 and LUA_FACING.match(cfn))
    loaders = into(LOADERS)
    script = total - module - loaders
    known = script + checks + encode + rdkafka + serving_own + callback + stats
    return {"total": total, "script": script, "checks": checks, "encode": encode,
            "rdkafka": rdkafka, "serving": serving_own, "callback": callback,
            "stats": stats, "other": total - known}


THREAD_OBJECTS = [("zlib", re.compile(r"/libz\.so")),
                  ("librdkafka", re.compile(r"/librdkafka\.so")),
                  ("libc", re.compile(r"/libc\.so|/ld-linux"))]


def threads(count, paths):
    """One row a run: its other threads' instructions a message, split by
    the object that ran them (self costs: zlib is gzip, libc holds
    malloc, memset and the locks)."""
    runs, groups = {}, [g for g, _ in THREAD_OBJECTS] + ["other"]
    for path in paths:
        run = re.sub(r"\.t\d+\.callgrind$", "", os.path.basename(path))
        row = runs.setdefault(run, {"threads": 0})
        row["threads"] += 1
        self_cost, _, _ = parse(path)
        for (ob, _, _, _), cost in self_cost.items():
            group = next((g for g, r in THREAD_OBJECTS if ob and r.search(ob)), "other")
            row[group] = row.get(group, 0) + cost
    print("| run | threads | " + " | ".join(groups) + " | total |")
    print("| --- | --- |" + " --- |" * (len(groups) + 1))
    for run, row in runs.items():
        cells = ["{:,}".format(round(row.get(g, 0) / count)) for g in groups]
        cells.append("{:,}".format(round(sum(row.get(g, 0) for g in groups) / count)))
        print("| %s | %d | %s |" % (run, row["threads"], " | ".join(cells)))


COLUMNS = ["total", "script", "checks", "encode", "rdkafka", "serving", "callback",
           "stats", "other"]


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "--threads":
        threads(int(sys.argv[2]), sys.argv[3:])
        return
    if len(sys.argv) < 4:
        sys.stderr.write("usage: profile.py SRC COUNT CALLGRIND_FILE...\n"
                         "       profile.py --threads COUNT CALLGRIND_FILE...\n")
        sys.exit(2)
    src, count = sys.argv[1], int(sys.argv[2])
    print("| run | " + " | ".join(COLUMNS) + " |")
    print("| --- |" + " --- |" * len(COLUMNS))
    for path in sys.argv[3:]:
        p = phases(path, src)
        # a run without the module (bench/raw_producer.c): its total only
        cells = ["{:,}".format(round(p[c] / count)) if c == "total" or p["encode"] else ""
                 for c in COLUMNS]
        print("| %s | %s |" % (re.sub(r"\.callgrind$", "", os.path.basename(path)),
              " | ".join(cells)))


if __name__ == "__main__":
    main()
