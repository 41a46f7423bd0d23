#!/usr/bin/env bash
# run.sh - the NATS JetStream rows of the benchmark (bench/README.md, "NATS").
#
# On one nats-server with JetStream (file storage; a stream BENCH capturing
# bench.>, made afresh before every run), one after the other in each round:
#   (a) nats.c's js_PublishMsgAsync, pre-encoded bytes  (bench/nats/raw_publisher.c)
#   (b) producers.nats, Lua tables -> JSON, on_delivery counts
#       (BENCH_BACKEND=nats bench/lua_producer.lua tables), Lua 5.4, then LuaJIT
#   (d) nats-py, publish_async + json.dumps             (bench/nats/python_publisher.py)
# every client with the key in the Producers-Key header and at most
# MAX_PENDING acks in flight; and writes the table to bench/nats/results.md.
#
# Starts the servers with scripts/nats/server.sh (its own folder and port
# offset; the benchmark uses the plain one) and stops them on exit, even on
# failure. Assumes the dependencies (scripts/install-deps.sh) and builds the
# bench program and the library when missing (build/, build-luajit/).
#
# Usage: bench/nats/run.sh [options]
#   -n COUNT        messages per run                      (default 200000, env BENCH_N)
#   -R ROUNDS       rounds; a row is the median run by msg/s (default 3)
#   -P MAX_PENDING  acks in flight at most, every client  (default 10000)
#   -s BIN          the nats-server: debian, newest, a path (default debian)
#   -o FILE         results file                           (default bench/nats/results.md)
# BENCH_NATS_DIR and BENCH_NATS_PORT_OFFSET move the servers' folder
# (default /tmp/producers-nats-bench) and port offset (default 50).
# BENCH_BASE_TREE, a second source tree with its build/ and build-luajit/
# made (a commit before a change: git archive REV | tar -x -C DIR), adds
# its (b) rows, "(b0)", run in the same rounds: before and after side by
# side on one server and one load.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

COUNT=${BENCH_N:-200000}
ROUNDS=3
PENDING=10000
SERVER=debian
RESULTS=bench/nats/results.md
SUBJECT=bench.nats
STREAM=BENCH
BENCH_BUILD=${BENCH_BUILD_DIR:-build/bench-standalone}
LIB_BUILD=${LIB_BUILD_DIR:-build}
JIT_BUILD=${LUAJIT_BUILD_DIR:-build-luajit}
export PRODUCERS_NATS_DIR=${BENCH_NATS_DIR:-/tmp/producers-nats-bench}
export PRODUCERS_NATS_PORT_OFFSET=${BENCH_NATS_PORT_OFFSET:-50}
BASE=${BENCH_BASE_TREE:-}
VENV=${PRODUCERS_NATS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/producers/venv}
PY=$VENV/bin/python

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

while getopts "n:R:P:s:o:h" opt; do
  case $opt in
    n) COUNT=$OPTARG ;;
    R) ROUNDS=$OPTARG ;;
    P) PENDING=$OPTARG ;;
    s) SERVER=$OPTARG ;;
    o) RESULTS=$OPTARG ;;
    h) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

say() { printf '==> %s\n' "$*" >&2; }

WORK=$(mktemp -d /tmp/prd-bench-nats.XXXXXX)
source bench/results.sh       # run, field, median, ratio, round_ratios, thousands, row
source bench/nats/lib.sh       # nats_cleanup_on_exit, fresh_stream
nats_cleanup_on_exit
load_start=$(cut -d ' ' -f 1-3 /proc/loadavg)

# ---------------------------------------------------------------- build ----
say "building the bench programs in $BENCH_BUILD"
if [[ ! -f $BENCH_BUILD/CMakeCache.txt ]]; then
  cmake -S bench -B "$BENCH_BUILD" -DCMAKE_BUILD_TYPE=Release >"$WORK/cmake-bench.log" 2>&1 ||
    { cat "$WORK/cmake-bench.log" >&2; exit 1; }
fi
cmake --build "$BENCH_BUILD" --target prd_bench_nats_raw >"$WORK/build-bench.log" 2>&1 ||
  { cat "$WORK/build-bench.log" >&2; say "no prd_bench_nats_raw: is libnats-dev installed?"; exit 1; }
RAW=$BENCH_BUILD/prd_bench_nats_raw

# (b) needs producers.nats in a build: VM NAME, its build folder
has_nats() { # LUA BUILD
  [[ -f $2/CMakeCache.txt ]] && cmake --build "$2" >"$WORK/build-$1.log" 2>&1
  env "LUA_PATH=lua/?.lua;lua/?/init.lua;;" "LUA_CPATH=$2/?.so;;" "$1" \
    -e 'os.exit(require("producers").nats.available and 0 or 1)' 2>/dev/null
}
HAVE_LIB=0 HAVE_JIT=0
has_nats lua5.4 "$LIB_BUILD" && HAVE_LIB=1 || say "SKIPPING (b) under Lua 5.4: no producers.nats in $LIB_BUILD"
has_nats luajit "$JIT_BUILD" && HAVE_JIT=1 || say "SKIPPING (b) under LuaJIT: no producers.nats in $JIT_BUILD"
HAVE_PY=0
"$PY" -c 'import nats' 2>/dev/null && HAVE_PY=1 || say "SKIPPING (d): no nats-py in $VENV (scripts/install-deps.sh)"

# --------------------------------------------------------------- server ----
say "starting nats-server ($SERVER) in $PRODUCERS_NATS_DIR"
scripts/nats/server.sh start --server "$SERVER" >"$WORK/server.log" 2>&1 ||
  { cat "$WORK/server.log" >&2; exit 1; }
URL=$(sed -n 's/^NATS_URL=//p' "$PRODUCERS_NATS_DIR/env.sh")
BASE_LABEL="producers.nats of $BASE"
[[ -z $BASE ]] || BASE_LABEL="producers.nats of ${BENCH_BASE_LABEL:-$BASE}"
SERVER_VERSION=$(sed -n 's/^NATS_SERVER_VERSION=//p' "$PRODUCERS_NATS_DIR/env.sh")


# ----------------------------------------------------------------- runs ----
LUA_ENV=(env "LUA_PATH=lua/?.lua;lua/?/init.lua;;" "LUA_CPATH=$LIB_BUILD/?.so;;" BENCH_BACKEND=nats)
JIT_ENV=(env "LUA_PATH=lua/?.lua;lua/?/init.lua;;" "LUA_CPATH=$JIT_BUILD/?.so;;" BENCH_BACKEND=nats)
BASE_ENV=(env "LUA_PATH=$BASE/lua/?.lua;$BASE/lua/?/init.lua;;" BENCH_BACKEND=nats)
# Rounds interleave the clients, so that a burst of other work on the
# machine hits one round rather than all runs of one client.
for round in $(seq "$ROUNDS"); do
  say "round $round of $ROUNDS"
  fresh_stream "$URL"
  run "a.$round" "$RAW" -s "$URL" -t "$SUBJECT" -n "$COUNT" -P "$PENDING"
  if [[ $HAVE_LIB == 1 ]]; then
    fresh_stream "$URL"
    run "b.$round" "${LUA_ENV[@]}" lua5.4 bench/lua_producer.lua tables "$URL" "$COUNT" "$SUBJECT"
  fi
  if [[ $HAVE_JIT == 1 ]]; then
    fresh_stream "$URL"
    run "bj.$round" "${JIT_ENV[@]}" luajit bench/lua_producer.lua tables "$URL" "$COUNT" "$SUBJECT"
  fi
  if [[ -n $BASE ]]; then
    fresh_stream "$URL"
    run "b0.$round" "${BASE_ENV[@]}" "LUA_CPATH=$BASE/build/?.so;;" lua5.4 bench/lua_producer.lua tables "$URL" "$COUNT" "$SUBJECT"
    fresh_stream "$URL"
    run "bj0.$round" "${BASE_ENV[@]}" "LUA_CPATH=$BASE/build-luajit/?.so;;" luajit bench/lua_producer.lua tables "$URL" "$COUNT" "$SUBJECT"
  fi
  if [[ $HAVE_PY == 1 ]]; then
    fresh_stream "$URL"
    run "d.$round" "$PY" bench/nats/python_publisher.py "$URL" "$COUNT" "$SUBJECT" "$PENDING"
  fi
done
for name in a b bj b0 bj0 d; do median "$name"; done

# -------------------------------------------------------------- results ----
# cpu_share NAME: (a)'s main-thread CPU a message over NAME's, of the
# median runs ("x.xx" or "n/a"): the server bounds msg/s, not this
cpu_share() {
  local mine=$(field "$1" cpu_main_us) raw=$(field a cpu_main_us)
  if [[ -n $mine && -n $raw && $mine != 0.000 ]]; then
    awk -v a="$raw" -v b="$mine" 'BEGIN { printf "%.2f", a / b }'
  else
    echo "n/a"
  fi
}

cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
{
  echo "# producers benchmark results: NATS JetStream"
  echo
  echo "Indicative numbers: one run on a small shared machine (other work may have been running)."
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "- CPU: ${cpu_model:-unknown}, $(nproc) cores; load average at the start: $load_start; at the end: $(cut -d ' ' -f 1-3 /proc/loadavg)"
  echo "- nats-server $SERVER_VERSION on the same machine (JetStream, file storage, stream '$STREAM' on 'bench.>', made afresh before each run)"
  echo "- nats.c $(pkg-config --modversion libnats 2>/dev/null || echo unknown); $(lua5.4 -v 2>&1 | awk '{ print $1, $2; exit }')" \
       "$([[ $HAVE_JIT == 1 ]] && luajit -v 2>&1 | awk '{ print "and", $1, $2; exit }');" \
       "nats-py $("$PY" -c 'import importlib.metadata as m; print(m.version("nats-py"))' 2>/dev/null || echo missing)"
  echo "- workload: $(thousands "$COUNT") messages per run to '$SUBJECT', keys user-0..user-999 in the Producers-Key header, value" \
       "{event, user_id, ts, tags[3], ok} as JSON (89 bytes; 100 with json.dumps' spaces); at most $(thousands "$PENDING") acks in flight"
  echo
  echo "Median run of $ROUNDS (by msg/s: acks received from the first publish to the last ack); the last column"
  echo "lists every round's msg/s. CPU: user + system time from /proc during the timed part, per message"
  echo "acked, of the publishing process's main thread (the script and the library's calls; all of nats-py's"
  echo "work) and of its other threads (nats.c's: the socket reader that runs the ack handler, the flusher)."
  echo "The server shares the machine's 2 cores: every client's rate is bounded by it."
  echo
  echo "| run | acked / sent | seconds | msg/s (acked) | peak RSS (MiB) | CPU µs/msg, main thread | CPU µs/msg, nats.c threads | msg/s of each round |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
  row a "(a) nats.c js_PublishMsgAsync, pre-encoded bytes"
  row b "(b) producers.nats (Lua 5.4), tables -> JSON"
  row bj "(b) producers.nats (LuaJIT), tables -> JSON"
  if [[ -n $BASE ]]; then
    row b0 "(b0) $BASE_LABEL (Lua 5.4), tables -> JSON"
    row bj0 "(b0) $BASE_LABEL (LuaJIT), tables -> JSON"
  fi
  row d "(d) Python nats-py publish_async + json.dumps"
  echo
  echo "Ratios of msg/s: of the median runs, of the fastest runs, and within each round:"
  echo
  echo "| ratio | median runs | fastest runs | each round |"
  echo "| --- | --- | --- | --- |"
  echo "| (b)/(a), Lua 5.4 | $(ratio b a) | $(ratio b.best a.best) | $(round_ratios b a) |"
  echo "| (b)/(a), LuaJIT: issue #23's goal >= 0.7 | $(ratio bj a) | $(ratio bj.best a.best) | $(round_ratios bj a) |"
  if [[ -n $BASE ]]; then
    echo "| (b0)/(a), Lua 5.4 | $(ratio b0 a) | $(ratio b0.best a.best) | $(round_ratios b0 a) |"
    echo "| (b0)/(a), LuaJIT | $(ratio bj0 a) | $(ratio bj0.best a.best) | $(round_ratios bj0 a) |"
    echo "| (b)/(b0), Lua 5.4 | $(ratio b b0) | $(ratio b.best b0.best) | $(round_ratios b b0) |"
    echo "| (b)/(b0), LuaJIT | $(ratio bj bj0) | $(ratio bj.best bj0.best) | $(round_ratios bj bj0) |"
  fi
  echo "| (b)/(d), Lua 5.4 | $(ratio b d) | $(ratio b.best d.best) | $(round_ratios b d) |"
  echo "| (b)/(d), LuaJIT | $(ratio bj d) | $(ratio bj.best d.best) | $(round_ratios bj d) |"
  echo
  echo "The server, on the same 2 cores, bounds every client's msg/s; the publishing thread's own cost"
  echo "is the main-thread CPU a message. (a)'s over the others' (median runs; 1 = as cheap as nats.c):"
  echo
  echo "| run | (a)'s main-thread CPU / this run's |"
  echo "| --- | --- |"
  echo "| (b) Lua 5.4 | $(cpu_share b) |"
  echo "| (b) LuaJIT | $(cpu_share bj) |"
  if [[ -n $BASE ]]; then
    echo "| (b0) Lua 5.4 | $(cpu_share b0) |"
    echo "| (b0) LuaJIT | $(cpu_share bj0) |"
  fi
  echo "| (d) Python | $(cpu_share d) |"
} >"$WORK/results.md"

publish_results "$WORK/results.md" "$RESULTS"
