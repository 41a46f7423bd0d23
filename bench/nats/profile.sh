#!/usr/bin/env bash
# profile.sh - where the NATS rows' instructions go (bench/README.md,
# "NATS JetStream"): (a) nats.c's js_PublishMsgAsync (bench/nats/
# raw_publisher.c) and (b) producers.nats (bench/lua_producer.lua tables,
# BENCH_BACKEND=nats) under callgrind --separate-threads=yes, against one
# nats-server with JetStream (the stream made afresh before each run).
#
# Usage: bench/nats/profile.sh [-n COUNT] [-V LIST] [-o DIR] [-s]
#   -n COUNT  messages a run                      (default 20000)
#   -V LIST   runs, space separated: raw 5.4 luajit (default), and rawwait:
#             (a) with producers.nats' per-message ack timeout (-W 30000)
#   -o DIR    keep the callgrind files in DIR (default: a temporary
#             directory, removed at the end)
#   -s        also count the system calls of one run of each (strace -f -c,
#             without valgrind): futex wake-ups and the socket's writes
#
# Prints, a run, in instructions a message (start-up and warm-up
# included): the main thread's total and the inclusive cost of the
# functions that matter (nats.c's publish and message building, the JSON
# encoding, serving the reports, the on_delivery call), then every other
# thread (nats.c's: the reader that runs the ack handler, the flusher,
# timers) with its own total and the ack handler's share. Callgrind's
# counts do not depend on the machine's load.
#
# Builds the module RelWithDebInfo in build-profile/ and
# build-profile-luajit/, prd_bench_nats_raw in build-bench/; starts
# nats-server with scripts/nats/server.sh (BENCH_NATS_DIR, default
# /tmp/producers-nats-profile; BENCH_NATS_PORT_OFFSET, default 60) and
# stops it on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

COUNT=20000
VMS="raw 5.4 luajit"
KEEP=""
STRACE=0
while getopts "n:V:o:sh" opt; do
  case $opt in
    n) COUNT=$OPTARG ;;
    V) VMS=$OPTARG ;;
    o) KEEP=$OPTARG ;;
    s) STRACE=1 ;;
    h) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) exit 2 ;;
  esac
done
command -v valgrind >/dev/null || { echo "profile.sh: valgrind is missing" >&2; exit 1; }

export PRODUCERS_NATS_DIR=${BENCH_NATS_DIR:-/tmp/producers-nats-profile}
export PRODUCERS_NATS_PORT_OFFSET=${BENCH_NATS_PORT_OFFSET:-60}
VENV=${PRODUCERS_NATS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/producers/venv}
PY=$VENV/bin/python
WORK=$(mktemp -d /tmp/prd-nats-profile.XXXXXX)
OUT=${KEEP:-$WORK/out}
mkdir -p "$OUT"
source bench/nats/lib.sh       # nats_cleanup_on_exit, fresh_stream
nats_cleanup_on_exit

say() { printf '==> %s\n' "$*" >&2; }

# build DIR LUA: the module, RelWithDebInfo, nothing else.
build() {
  say "building the module for Lua $2 in $1"
  cmake -S "$ROOT" -B "$1" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPRODUCERS_LUA="$2" \
    -DPRODUCERS_TESTS=OFF -DPRODUCERS_BENCH=OFF >"$WORK/cmake.log" 2>&1 &&
    cmake --build "$1" -j "$(nproc)" >"$WORK/build.log" 2>&1 ||
    { tail -n 30 "$WORK/cmake.log" "$WORK/build.log" >&2; exit 1; }
}
cmake -S bench -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench --target prd_bench_nats_raw >/dev/null

scripts/nats/server.sh start >"$WORK/server.log" 2>&1 ||
  { cat "$WORK/server.log" >&2; exit 1; }
URL=$(sed -n 's/^NATS_URL=//p' "$PRODUCERS_NATS_DIR/env.sh")

# The functions whose inclusive cost a message is shown (main thread).
MAIN_FUNCS='js_PublishMsgAsync|natsMsg_Create|natsMsgHeader_Set|natsMsg_Destroy|prd_nats_track|prd_encode_value|prd_queue_serve|serve_reports|lua_callk|prd_nats_next_event|prd_nats_next_report|prd_nats_count|prd_nats_report_call|nats_send|prd_produce|malloc|free|calloc'
THREAD_FUNCS='prd_nats_on_ack|natsMsg_Destroy|malloc|free|pthread_cond_broadcast|pthread_mutex_lock|prd_wake_signal'

# per_msg FILE REGEX: "name: inclusive instructions a message" for each
# matching function, and the file's total.
per_msg() {
  callgrind_annotate --inclusive=yes --threshold=100 "$1" 2>/dev/null |
    awk -v n="$COUNT" -v re="^($2)\$" '
      /PROGRAM TOTALS|Ir .*PROGRAM TOTALS/ { gsub(",", "", $1); printf "    total %.0f\n", $1 / n }
      /^ *[0-9,]+ .*[:]/ {
        ir = $1; gsub(",", "", ir); fn = ""
        for (i = 2; i <= NF; i++) if ($i ~ /:/) { fn = $i; break }
        sub(/^.*:/, "", fn)
        if (fn ~ re && !(fn in seen)) { seen[fn] = 1; printf "    %s %.0f\n", fn, ir / n }
      }'
}

for vm in $VMS; do
  case $vm in
    raw) cmd=(build-bench/prd_bench_nats_raw -s "$URL" -t bench.nats -n "$COUNT" -P 10000) ;;
    rawwait) cmd=(build-bench/prd_bench_nats_raw -s "$URL" -t bench.nats -n "$COUNT" -P 10000 -W 30000) ;;
    5.4) build build-profile 5.4
         cmd=(lua5.4 bench/lua_producer.lua tables "$URL" "$COUNT" bench.nats) ;;
    luajit) build build-profile-luajit luajit
         cmd=(luajit bench/lua_producer.lua tables "$URL" "$COUNT" bench.nats) ;;
    *) echo "profile.sh: -V takes raw, rawwait, 5.4, luajit" >&2; exit 2 ;;
  esac
  dir=build-profile; [[ $vm == luajit ]] && dir=build-profile-luajit
  export LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$ROOT/$dir/?.so;;" BENCH_BACKEND=nats
  fresh_stream "$URL"
  say "$vm: callgrind, $COUNT messages"
  valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$OUT/$vm.%p" \
    "${cmd[@]}" >"$WORK/$vm.log" 2>&1 || { tail -n 20 "$WORK/$vm.log" >&2; exit 1; }
  echo "$vm ($COUNT messages), instructions a message:"
  for f in "$OUT/$vm".*-[0-9][0-9]; do
    [[ -e $f ]] || continue
    t=${f##*-}
    if [[ $t == 01 ]]; then
      echo "  main thread:"; per_msg "$f" "$MAIN_FUNCS"
    else
      echo "  thread $t:"; per_msg "$f" "$THREAD_FUNCS"
    fi
  done
  if [[ $STRACE == 1 ]]; then
    fresh_stream "$URL"
    say "$vm: strace -f -c, $COUNT messages"
    strace -f -c -o "$OUT/$vm.strace" "${cmd[@]}" >"$WORK/strace.log" 2>&1 ||
      { tail -n 20 "$WORK/strace.log" >&2; exit 1; }
    echo "  system calls (strace -f -c, every thread; calls a message):"
    awk -v n="$COUNT" '$1 ~ /^[0-9.]+$/ && NF >= 5 && $4 + 0 > 0 {
        printf "    %-16s %8d  %.3f\n", $NF, $4, $4 / n }' "$OUT/$vm.strace" | sort -k2 -nr | head -n 8
  fi
done
