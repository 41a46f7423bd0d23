#!/usr/bin/env bash
# run.sh - one command for the producers benchmark (see bench/README.md).
#
# On the same broker and machine, one after the other:
#   (a) raw librdkafka C producer, pre-encoded bytes   (bench/raw_producer.c)
#   (n) naive C: producev + poll(0) after each message  (bench/raw_producer.c -N)
#   (b) producers library, Lua tables -> JSON           (bench/lua_producer.lua tables)
#   (c) producers library, pre-encoded Lua strings      (bench/lua_producer.lua strings)
#       (b) and (c) under Lua 5.4, then under LuaJIT (OpenResty's VM) when
#       luajit is installed
#   (d) Python confluent_kafka + json.dumps, if importable (bench/python_producer.py)
#   then the delivery latency of (b) at a fixed rate    (bench/lua_producer.lua latency)
#   and the cost of large values on the producing thread (bench/large_values.lua)
#   and float-heavy tables, the builtin encoder against lua-cjson, under Lua 5.4
#   and LuaJIT (bench/floats.lua)
# and writes the table to bench/results.md.
#
# Builds what is missing, starts a librdkafka mock cluster in its own process
# (unless -b gives a real broker) and stops it by PID on exit, even on failure.
#
# Usage: bench/run.sh [options]
#   -n COUNT        messages per throughput run        (default 1000000, env BENCH_N)
#   -b BOOTSTRAP    use this broker instead of the mock cluster (e.g. 127.0.0.1:9092)
#   -t TOPIC        topic                              (default bench)
#   -B BROKERS      mock cluster brokers               (default 3)
#   -p PARTITIONS   mock cluster partitions            (default 6)
#   -r RATE         latency mode rate, msg/s           (default 50000)
#   -l COUNT        latency mode messages, 0 skips it  (default 250000)
#   -R ROUNDS       rounds of (a)..(d); the table shows each run's median
#                   by msg/s and lists every round     (default 3)
#   -M COUNT        memory section: ROUNDS runs of (b) under Lua 5.4 with
#                   COUNT messages, each noting its peak RSS at -n
#                   messages and at the end; then as many with a local
#                   queue of 10,000 messages; 0 skips it (default 5000000)
#   -L MEGABYTES    large values: strings of 100 B to 256 KiB, MEGABYTES of
#                   each size, to a mock cluster inside the Lua process,
#                   compression off (-X does not apply); 0 skips it (default 400)
#   -F COUNT        float-heavy tables: COUNT messages a run of each shape and
#                   encoder, ROUNDS rounds, Lua 5.4 and LuaJIT; 0 skips it
#                   (default: COUNT / 50, a float-heavy message being some 20
#                   ordinary ones' work)
#   -f              the float-heavy section alone (default results file
#                   bench/results-floats.md)
#   -o FILE         results file                       (default bench/results.md)
#   -Q              issue #24's comparison alone: each round runs (a), (n)
#                   and (b) under Lua 5.4 and LuaJIT, skipping (c) and (d)
#   -X NAME=VALUE   a librdkafka property for every client, over the library's
#                   defaults (repeatable; e.g. -X compression.level=3)
# BENCH_BROKER_DESC in the environment names the broker given with -b in the
# results (e.g. "Apache Kafka 3.9.2, 1 node, same machine").
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
./scripts/install-deps.sh     # Debian packages: librdkafka, Lua, lua-system, confluent_kafka...

COUNT=${BENCH_N:-1000000}
BOOTSTRAP=""
TOPIC=bench
BROKERS=3
PARTITIONS=6
RATE=50000
LAT_COUNT=250000
RESULTS=bench/results.md
ROUNDS=3
MEM_COUNT=5000000
LARGE_MB=400
FLOAT_COUNT=""
FLOATS_ONLY=0
ONLY_B=0
BENCH_BUILD=${BENCH_BUILD_DIR:-build/bench-standalone}
LIB_BUILD=${LIB_BUILD_DIR:-build}
JIT_BUILD=${LUAJIT_BUILD_DIR:-build-luajit}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

EXTRA=()      # -X NAME=VALUE, for every client

RESULTS_SET=0
while getopts "n:b:t:B:p:r:l:R:M:L:F:fo:QX:h" opt; do
  case $opt in
    n) COUNT=$OPTARG ;;
    b) BOOTSTRAP=$OPTARG ;;
    t) TOPIC=$OPTARG ;;
    B) BROKERS=$OPTARG ;;
    p) PARTITIONS=$OPTARG ;;
    r) RATE=$OPTARG ;;
    l) LAT_COUNT=$OPTARG ;;
    R) ROUNDS=$OPTARG ;;
    M) MEM_COUNT=$OPTARG ;;
    L) LARGE_MB=$OPTARG ;;
    F) FLOAT_COUNT=$OPTARG ;;
    f) FLOATS_ONLY=1 ;;
    Q) ONLY_B=1 ;;
    o) RESULTS=$OPTARG; RESULTS_SET=1 ;;
    X) [[ $OPTARG == ?*=* ]] || { echo "run.sh: -X expects NAME=VALUE" >&2; exit 2; }
       EXTRA+=("$OPTARG") ;;
    h) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

say() { printf '==> %s\n' "$*" >&2; }

FLOAT_COUNT=${FLOAT_COUNT:-$(( COUNT / 50 ))}
if [[ $FLOATS_ONLY == 1 ]]; then
  [[ $RESULTS_SET == 1 ]] || RESULTS=bench/results-floats.md
  [[ $FLOAT_COUNT -gt 0 ]] || { echo "run.sh: -f with -F 0 runs nothing" >&2; exit 2; }
fi

WORK=$(mktemp -d /tmp/prd-bench.XXXXXX)
source bench/mock_cluster.sh
source bench/results.sh       # run, field, median, ratio, round_ratios, thousands
cleanup() {
  mock_stop
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- build ----
say "building bench programs in $BENCH_BUILD"
if [[ ! -f $BENCH_BUILD/CMakeCache.txt ]]; then
  cmake -S bench -B "$BENCH_BUILD" -DCMAKE_BUILD_TYPE=Release >"$WORK/cmake-bench.log" 2>&1 ||
    { cat "$WORK/cmake-bench.log" >&2; exit 1; }
fi
cmake --build "$BENCH_BUILD" >"$WORK/build-bench.log" 2>&1 ||
  { cat "$WORK/build-bench.log" >&2; exit 1; }
RAW=$BENCH_BUILD/prd_bench_raw
MOCK=$BENCH_BUILD/prd_bench_mock_cluster

# The Lua library: lua/producers/init.lua + $LIB_BUILD/producers/core.so.
HAVE_LIB=0
LIB_NOTE=""
if [[ -f lua/producers/init.lua && -f CMakeLists.txt ]]; then
  if [[ ! -f $LIB_BUILD/CMakeCache.txt ]]; then
    say "configuring the library in $LIB_BUILD (Release)"
    cmake -S . -B "$LIB_BUILD" -DCMAKE_BUILD_TYPE=Release >"$WORK/cmake-lib.log" 2>&1 ||
      cat "$WORK/cmake-lib.log" >&2
  fi
  if [[ -f $LIB_BUILD/CMakeCache.txt ]]; then
    say "building the library in $LIB_BUILD"
    cmake --build "$LIB_BUILD" >"$WORK/build-lib.log" 2>&1 ||
      { tail -n 30 "$WORK/build-lib.log" >&2; say "library build failed"; }
    build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$LIB_BUILD/CMakeCache.txt")
    if [[ $build_type == Debug ]]; then
      LIB_NOTE="library built with CMAKE_BUILD_TYPE=Debug: (b)/(c) are pessimistic"
      say "WARNING: $LIB_NOTE"
    fi
  fi
  [[ -f $LIB_BUILD/producers/core.so ]] && HAVE_LIB=1
fi
if [[ $HAVE_LIB == 0 ]]; then
  say "SKIPPING (b), (c) and latency: the Lua library is missing" \
      "(need lua/producers/init.lua and $LIB_BUILD/producers/core.so)"
fi
# -X properties: BENCH_CONFIG for the Lua and Python clients, -X for C.
BENCH_CONFIG=$(IFS=,; echo "${EXTRA[*]}")
RAW_X=()
for x in "${EXTRA[@]}"; do RAW_X+=(-X "$x"); done
LUA_ENV=(env "LUA_PATH=lua/?.lua;lua/?/init.lua;;" "LUA_CPATH=$LIB_BUILD/?.so;;" "BENCH_CONFIG=$BENCH_CONFIG")

# The same library built for LuaJIT, for (b) and (c) under LuaJIT.
HAVE_JIT=0
if [[ $HAVE_LIB == 1 ]] && command -v luajit >/dev/null 2>&1; then
  say "building the library for LuaJIT in $JIT_BUILD"
  if [[ ! -f $JIT_BUILD/CMakeCache.txt ]]; then
    cmake -S . -B "$JIT_BUILD" -DCMAKE_BUILD_TYPE=Release -DPRODUCERS_LUA=luajit \
      -DPRODUCERS_BENCH=OFF >"$WORK/cmake-jit.log" 2>&1 || cat "$WORK/cmake-jit.log" >&2
  fi
  cmake --build "$JIT_BUILD" >"$WORK/build-jit.log" 2>&1 ||
    { tail -n 30 "$WORK/build-jit.log" >&2; say "LuaJIT library build failed"; }
  [[ -f $JIT_BUILD/producers/core.so ]] && HAVE_JIT=1
fi
[[ $HAVE_JIT == 0 ]] && say "SKIPPING (b) and (c) under LuaJIT: no luajit, or its build failed"
JIT_ENV=(env "LUA_PATH=lua/?.lua;lua/?/init.lua;;" "LUA_CPATH=$JIT_BUILD/?.so;;" "BENCH_CONFIG=$BENCH_CONFIG")

# Python with confluent_kafka: $PYTHON, python3 on PATH, then Debian's.
PYTHON_BIN=""
for py in ${PYTHON:-} python3 /usr/bin/python3; do
  if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import confluent_kafka' 2>/dev/null; then
    PYTHON_BIN=$py
    break
  fi
done
[[ -z $PYTHON_BIN ]] && say "SKIPPING (d): no python3 can import confluent_kafka"

# --------------------------------------------------------------- broker ----
if [[ -z $BOOTSTRAP ]]; then
  mock_start "$MOCK" "$BROKERS" "$TOPIC" "$PARTITIONS" "$WORK" ||
    { say "the mock cluster failed or printed no address"; exit 1; }
  BROKER_DESC="librdkafka mock cluster in a separate process: $BROKERS broker(s), topic '$TOPIC' with $PARTITIONS partitions"
else
  BROKER_DESC="${BENCH_BROKER_DESC:-broker} at $BOOTSTRAP, topic '$TOPIC'"
fi
say "broker: $BROKER_DESC ($BOOTSTRAP)"

# ----------------------------------------------------------------- runs ----
# Rounds interleave the runs, so that a burst of other work on the machine
# hits one round rather than all runs of one client.
for round in $( [[ $FLOATS_ONLY == 1 ]] || seq "$ROUNDS"); do
  say "round $round of $ROUNDS"
  run "a.$round" "$RAW" "${RAW_X[@]}" -B "$BOOTSTRAP" -t "$TOPIC" -n "$COUNT"
  run "n.$round" "$RAW" "${RAW_X[@]}" -N -B "$BOOTSTRAP" -t "$TOPIC" -n "$COUNT"
  if [[ $HAVE_LIB == 1 ]]; then
    run "b.$round" "${LUA_ENV[@]}" lua5.4 bench/lua_producer.lua tables "$BOOTSTRAP" "$COUNT" "$TOPIC"
    [[ $ONLY_B == 1 ]] ||
      run "c.$round" "${LUA_ENV[@]}" lua5.4 bench/lua_producer.lua strings "$BOOTSTRAP" "$COUNT" "$TOPIC"
  fi
  if [[ $HAVE_JIT == 1 ]]; then
    run "bj.$round" "${JIT_ENV[@]}" luajit bench/lua_producer.lua tables "$BOOTSTRAP" "$COUNT" "$TOPIC"
    [[ $ONLY_B == 1 ]] ||
      run "cj.$round" "${JIT_ENV[@]}" luajit bench/lua_producer.lua strings "$BOOTSTRAP" "$COUNT" "$TOPIC"
  fi
  if [[ -n $PYTHON_BIN && $ONLY_B == 0 ]]; then
    run "d.$round" env "BENCH_CONFIG=$BENCH_CONFIG" "$PYTHON_BIN" bench/python_producer.py \
      "$BOOTSTRAP" "$COUNT" "$TOPIC"
  fi
done
# Peak RSS of (b) against the number of messages: runs of MEM_COUNT messages
# that also note their peak once COUNT have been produced, with the default
# local queue and then with a small one.
SMALL_QUEUE=10000
RSS_AT=$(( COUNT < MEM_COUNT ? COUNT : MEM_COUNT ))   # where each run reads its first peak
if [[ $HAVE_LIB == 1 && $MEM_COUNT -gt 0 && $FLOATS_ONLY == 0 ]]; then
  for round in $(seq "$ROUNDS"); do
    run "m.$round" "${LUA_ENV[@]}" BENCH_RSS_AT="$RSS_AT" \
      lua5.4 bench/lua_producer.lua tables "$BOOTSTRAP" "$MEM_COUNT" "$TOPIC"
  done
  for round in $(seq "$ROUNDS"); do
    run "q.$round" "${LUA_ENV[@]}" BENCH_RSS_AT="$RSS_AT" \
      BENCH_CONFIG="${BENCH_CONFIG:+$BENCH_CONFIG,}queue.buffering.max.messages=$SMALL_QUEUE" \
      lua5.4 bench/lua_producer.lua tables "$BOOTSTRAP" "$MEM_COUNT" "$TOPIC"
  done
fi
if [[ $HAVE_LIB == 1 && $LAT_COUNT -gt 0 && $FLOATS_ONLY == 0 ]]; then
  run lat "${LUA_ENV[@]}" lua5.4 bench/lua_producer.lua latency "$BOOTSTRAP" "$LAT_COUNT" "$TOPIC" "$RATE"
fi
# Large values: a table of its own (not a RESULT line).
if [[ $HAVE_LIB == 1 && $LARGE_MB -gt 0 && $FLOATS_ONLY == 0 ]]; then
  say "large values: bench/large_values.lua $LARGE_MB"
  "${LUA_ENV[@]}" lua5.4 bench/large_values.lua "$LARGE_MB" >"$WORK/large.out" ||
    { say "large values exited with status $?"; : >"$WORK/large.out"; }
  cat "$WORK/large.out" >&2
fi
# Float-heavy tables: the builtin encoder and lua-cjson side by side, each
# VM in one process (its rounds interleave shapes and encoders), against
# the same broker.
if [[ $HAVE_LIB == 1 && $FLOAT_COUNT -gt 0 ]]; then
  say "float-heavy tables: bench/floats.lua $FLOAT_COUNT messages a run, $ROUNDS rounds"
  "${LUA_ENV[@]}" lua5.4 bench/floats.lua "$BOOTSTRAP" "$FLOAT_COUNT" "$ROUNDS" "$TOPIC" \
    >"$WORK/floats.out" || { say "floats.lua (Lua 5.4) exited with status $?"; : >"$WORK/floats.out"; }
  if [[ $HAVE_JIT == 1 ]]; then
    "${JIT_ENV[@]}" luajit bench/floats.lua "$BOOTSTRAP" "$FLOAT_COUNT" "$ROUNDS" "$TOPIC" \
      >"$WORK/floats-jit.out" || { say "floats.lua (LuaJIT) exited with status $?"; : >"$WORK/floats-jit.out"; }
  fi
  cat "$WORK/floats.out" "$WORK/floats-jit.out" 2>/dev/null >&2
fi

# -------------------------------------------------------------- results ----
for name in a n b c bj cj d; do median "$name"; done

# rss_row MESSAGES QUEUE NAME: peak RSS (MiB) of the runs NAME.1.. and their largest.
# rss_list NAME: the peak RSS of runs NAME.1..NAME.R in MiB, comma-separated.
rss_list() {
  local f run list=""
  for f in "$WORK/$1".[0-9]*.result; do
    [[ -s $f ]] || continue
    run=${f##*/}; run=${run%.result}
    list+="${list:+, }$(awk -v k="$(field "$run" rss_kb)" 'BEGIN { printf "%.1f", k / 1024 }')"
  done
  echo "$list"
}

# rss_rows QUEUE NAME: one row per run NAME.N: its peak RSS once COUNT
# messages were produced, at the end, and the change between the two.
rss_rows() {
  local queue=$1 name=$2 f run at end most
  for f in "$WORK/$name".[0-9]*.result; do
    [[ -s $f ]] || continue
    run=${f##*/}; run=${run%.result}
    at=$(field "$run" rss_at_kb)
    end=$(field "$run" rss_kb)
    most=$(field "$run" max_queue)
    [[ -n $at && -n $end ]] || continue
    awk -v q="$(thousands "$queue")" -v n="${run##*.}" -v a="$at" -v e="$end" -v m="$(thousands "$most")" \
      'BEGIN { printf "| %s | %s | %.1f | %.1f | %+.1f%% | %s |\n", q, n, a / 1024, e / 1024, (e - a) * 100 / a, m }'
  done
}

cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
rdkafka_version=$(pkg-config --modversion rdkafka 2>/dev/null || echo unknown)

# The float-heavy section: floats.lua's tables, then builtin against lua-cjson.
floats_section() {
  [[ -s $WORK/floats.out || -s $WORK/floats-jit.out ]] || return 0
  echo "Float-heavy tables (bench/floats.lua): the builtin encoder (shortest round-trip digits)"
  echo "against lua-cjson (json = \"lua-cjson\", %.14g), side by side: each VM runs every shape with"
  echo "each encoder in turn, $ROUNDS rounds, $(thousands "$FLOAT_COUNT") messages a run, to the broker above with the"
  echo "library's defaults (gzip level 6). Shapes: doubles100, an array of 100 random doubles of 15"
  echo "to 17 digits; nested2k, a ~2 KB document of 78 computed floats in 14 objects; prices100, 100"
  echo "decimals like 19.99. Encode: core.encode_value alone, the main thread's CPU a table and a"
  echo "float. Produce: p:produce of the table, msg/s delivered, and CPU µs a message of the main"
  echo "thread (script, encoding, produce) and of the others (librdkafka's: gzip, mostly). Medians"
  echo "of the rounds."
  echo
  local f
  for f in "$WORK/floats.out" "$WORK/floats-jit.out"; do
    [[ -s $f ]] || continue
    grep '^|' "$f"
    echo
  done
  echo "Builtin against lua-cjson (> 1: the builtin is faster; medians):"
  echo
  echo "| shape | VM | encoding alone | produce msg/s | produce, main thread CPU |"
  echo "| --- | --- | --- | --- | --- |"
  cat "$WORK/floats.out" "$WORK/floats-jit.out" 2>/dev/null | sed -n 's/^RESULT //p' |
    awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
           gsub("_", " ", v["vm"]);
           printf "| %s | %s | %s | %s | %s |\n", v["shape"], v["vm"], v["encode"], v["rate"], v["main_cpu"] }'
}

{
  echo "# producers benchmark results"
  echo
  echo "Indicative numbers: one run on a small shared machine (other work may have been running)."
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "- CPU: ${cpu_model:-unknown}, $(nproc) cores; load average at the end: $(cut -d ' ' -f 1-3 /proc/loadavg)"
  echo "- kernel: $(uname -sr); librdkafka $rdkafka_version; $(lua5.4 -v 2>&1 | awk '{ print $1, $2; exit }')" \
       "$([[ $HAVE_JIT == 1 ]] && luajit -v 2>&1 | awk '{ print "and", $1, $2; exit }')"
  [[ -n $PYTHON_BIN ]] && echo "- Python: $("$PYTHON_BIN" -c 'import sys, confluent_kafka as c; print(sys.version.split()[0], "confluent_kafka", c.version()[0], "on librdkafka", c.libversion()[0])')"
  echo "- broker: $BROKER_DESC"
  if [[ $FLOATS_ONLY == 1 ]]; then
    echo "- the float-heavy section alone (bench/run.sh -f); over the library's defaults (-X): ${BENCH_CONFIG:-none}"
    echo
    floats_section
  else    # the whole benchmark (not indented: the same lines as before -f)
  echo "- workload: $(thousands "$COUNT") messages per run, keys user-0..user-999, value" \
       "{event, user_id, ts, tags[3], ok} as JSON (89 bytes; 100 with json.dumps' spaces);" \
       "gzip, linger.ms=10, batch.num.messages=10000, acks=all, enable.idempotence=true (the library's defaults)"
  [[ -n $BENCH_CONFIG ]] && echo "- over the defaults, for every client (-X): ${BENCH_CONFIG//,/, }"
  [[ -n $LIB_NOTE ]] && echo "- NOTE: $LIB_NOTE"
  echo
  echo "Median run of $ROUNDS (by msg/s); the last column lists every round's msg/s. CPU: user + system"
  echo "time from /proc during the timed part, per message delivered, of the producing process's main"
  echo "thread (the script and the library's calls) and of its other threads (librdkafka's: batching,"
  echo "gzip, network)."
  echo
  echo "| run | delivered / sent | seconds | msg/s (delivered) | peak RSS (MiB) | CPU µs/msg, main thread | CPU µs/msg, librdkafka threads | msg/s of each round |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
  row a "(a) librdkafka C, pre-encoded bytes"
  row n "(n) naive librdkafka C: producev, poll(0) each message"
  row b "(b) producers (Lua 5.4), tables -> JSON"
  row c "(c) producers (Lua 5.4), pre-encoded strings"
  row bj "(b) producers (LuaJIT), tables -> JSON"
  row cj "(c) producers (LuaJIT), pre-encoded strings"
  row d "(d) Python confluent_kafka + json.dumps"
  echo
  echo "Ratios of msg/s: of the median runs, of the fastest runs (other load only ever slows a"
  echo "run down, and (a), which keeps both cores busy, suffers most from it), and within each"
  echo "round (its runs follow each other within seconds, so a slow spell of the machine weighs on"
  echo "both sides of a round's ratio):"
  echo
  echo "| ratio | median runs | fastest runs | each round |"
  echo "| --- | --- | --- | --- |"
  echo "| (b)/(a), Lua 5.4 | $(ratio b a) | $(ratio b.best a.best) | $(round_ratios b a) |"
  echo "| (b)/(n), Lua 5.4: issue #24's goal >= 1.2 | $(ratio b n) | $(ratio b.best n.best) | $(round_ratios b n) |"
  echo "| (c)/(a), Lua 5.4 | $(ratio c a) | $(ratio c.best a.best) | $(round_ratios c a) |"
  echo "| (b)/(d), Lua 5.4 | $(ratio b d) | $(ratio b.best d.best) | $(round_ratios b d) |"
  echo "| (b)/(a), LuaJIT | $(ratio bj a) | $(ratio bj.best a.best) | $(round_ratios bj a) |"
  echo "| (b)/(n), LuaJIT | $(ratio bj n) | $(ratio bj.best n.best) | $(round_ratios bj n) |"
  echo "| (c)/(a), LuaJIT | $(ratio cj a) | $(ratio cj.best a.best) | $(round_ratios cj a) |"
  echo "| (b)/(d), LuaJIT | $(ratio bj d) | $(ratio bj.best d.best) | $(round_ratios bj d) |"
  echo
  if [[ -s $WORK/m.1.result ]]; then
    echo "Peak RSS of (b) under Lua 5.4 (VmHWM) against the number of messages: each run produces"
    echo "$(thousands "$MEM_COUNT") messages and notes its peak once $(thousands "$RSS_AT") have been produced, so the"
    echo "two figures of a row differ by the run's length only. The local queue"
    echo "(queue.buffering.max.messages) bounds the messages held at once; a run's peak is the largest"
    echo "backlog in flight it meets, which with the default queue (100,000) varies from run to run"
    echo "(the rounds' $(thousands "$COUNT")-message runs of (b) above: $(rss_list b) MiB)."
    echo
    echo "| queue.buffering.max.messages | run | peak RSS at $(thousands "$RSS_AT") (MiB) | at $(thousands "$MEM_COUNT") (MiB) | change | largest queue_length() seen |"
    echo "| --- | --- | --- | --- | --- | --- |"
    rss_rows 100000 m
    rss_rows "$SMALL_QUEUE" q
    echo
  fi
  if [[ -s $WORK/lat.result ]]; then
    echo "Delivery latency of (b): tables at a fixed rate, linger.ms=5 (other settings as above);"
    echo "the script produces what is due, then polls with a 1 ms timeout, so a report waits <= ~1 ms to be served."
    echo
    echo "- target $(thousands "$(field lat target_rate)") msg/s, achieved $(thousands "$(field lat achieved_rate)") msg/s;" \
         "delivered $(thousands "$(field lat delivered)") / $(thousands "$(field lat sent)")"
    echo
    echo "| measured as | p50 ms | p99 ms | p99.9 ms | max ms |"
    echo "| --- | --- | --- | --- | --- |"
    echo "| script: monotonic clock before p:produce() to on_delivery |" \
         "$(field lat p50_ms) | $(field lat p99_ms) | $(field lat p999_ms) | $(field lat max_ms) |"
    if [[ -n $(field lat rdk_p50_ms) ]]; then
      echo "| library: report.latency (rd_kafka_message_latency, taken when the report is served) |" \
           "$(field lat rdk_p50_ms) | $(field lat rdk_p99_ms) | $(field lat rdk_p999_ms) | $(field lat rdk_max_ms) |"
    fi
  else
    echo "Delivery latency of (b): not measured (library missing, -l 0, or the run failed)."
  fi
  if [[ -s $WORK/large.out ]]; then
    echo
    echo "Large values under Lua 5.4: pre-encoded strings, $LARGE_MB MB of each size (at most 300,000 messages),"
    echo "to librdkafka's mock cluster inside the process, compression off; CPU of the producing thread"
    echo "per message. From 1 KiB a string is lent to librdkafka instead of copied."
    echo
    cat "$WORK/large.out"
  fi
  if [[ -s $WORK/floats.out || -s $WORK/floats-jit.out ]]; then
    echo
    floats_section
  fi
  fi      # the whole benchmark
} >"$WORK/results.md"

publish_results "$WORK/results.md" "$RESULTS"
