#!/usr/bin/env bash
# The README's second command: installs what the tests need, builds, runs
# every spec, and ends with "N passed, N failed" counting test cases (and
# builds), the failed spec files and cases listed just before that line.
#
# What runs where (docs/testing.md tells more), on 2 cores:
#   1. build-luajit, then build (Lua 5.4): one after the other, each with
#      every core.
#   2. Then four lanes side by side:
#      - two integration lanes (background; they mostly wait on brokers),
#        scripts/integration.sh on brokers of their own: Kafka 3.9 (a
#        node: the integration specs, then nginx under LuaJIT; a 3-node
#        cluster: failover and outages), and NATS JetStream, then Kafka
#        4.x (on librdkafka 2.0.2, then on 2.8.0);
#      - the builds lane (background, niced): build-sanitize (5.4 under
#        ASan/UBSan), librdkafka 2.8.0 (scripts/librdkafka.sh builds it
#        once into ~/.cache/producers: about 5 minutes on a fresh
#        machine), build-rdkafka2.8 (5.4 on it), Lua 5.1, 5.2, 5.3 (build
#        only);
#      - the unit legs (foreground), one after another as their builds
#        are ready, each spec file one CTest test, $PRODUCERS_TEST_JOBS
#        (default 3) at a time (they mostly wait on the mock cluster's
#        timeouts; each makes its own temporary folders, ports and mock
#        cluster): every spec under LuaJIT, under 5.4 with ASan/UBSan,
#        under 5.4 (valgrind in LuaJIT's and 5.4's; spec/packaging/luarocks_spec.lua needs
#        librdkafka 2.8.0), then the specs of the producer's life with
#        librdkafka on 2.8.0 (see that leg).
# Each leg writes its own log, printed whole when the leg ends (a CTest
# leg's lines grouped by spec file), so legs that run side by side do not
# mix their lines; "== started: LEG" marks when each began.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh

JOBS=${PRODUCERS_TEST_JOBS:-3}
logs=$(mktemp -d)
lane_pids=()     # the background lanes (bg)
on_exit() {
  local rc=$? pid
  for pid in "${lane_pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for pid in "${lane_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$logs"
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
t_start=$(date +%s)
legs=()          # the legs in the order their logs are summed up

# say TEXT: one line to the terminal, never inside a leg's printed log
say() { (flock 9; echo "$*") 9>"$logs/.print"; }

# leg NAME COMMAND...: runs COMMAND with its output in NAME's log (NAME
# names files: no slash), then
# prints that log whole (under the lock say takes); the status in NAME.rc
leg() {
  local name=$1 t0 rc=0
  shift
  t0=$(date +%s)
  echo "$name" >>"$logs/.order"
  say "== started: $name"
  "$@" >"$logs/$name.log" 2>&1 </dev/null || rc=$?
  echo "$rc" >"$logs/$name.rc"
  echo "$(($(date +%s) - t0))" >"$logs/$name.time"
  (flock 9; echo "== $name"; cat "$logs/$name.log"; echo "== $name: $(cat "$logs/$name.time") s, status $rc") \
    9>"$logs/.print"
  return "$rc"
}

# CTest -V -j prints the lines of the tests running at once interleaved,
# each "N: ..."; this groups them by test, in test order, with the
# "Start N" and "Test #N" lines of each, the rest before and after.
regroup() {
  awk '
    function take(n) { if (!(n in block)) ids[++k] = n; block[n] = block[n] $0 "\n"; seen = 1 }
    match($0, /^[0-9]+: /) { take(substr($0, 1, RLENGTH - 2) + 0); next }
    match($0, /Test +#[0-9]+:/) || match($0, /^ *Start +[0-9]+:/) {
      s = substr($0, RSTART, RLENGTH); gsub(/[^0-9]/, "", s); take(s + 0); next
    }
    /^test [0-9]+$/ { take($2 + 0); next }
    { if (seen) foot = foot $0 "\n"; else head = head $0 "\n" }
    END {
      for (i = 2; i <= k; i++) for (j = i; j > 1 && ids[j] < ids[j - 1]; j--) { t = ids[j]; ids[j] = ids[j - 1]; ids[j - 1] = t }
      printf "%s", head
      for (i = 1; i <= k; i++) printf "%s", block[ids[i]]
      printf "%s", foot
    }'
}

# ctest_leg BUILD_DIR [ctest args...]: its specs, JOBS at a time
ctest_leg() {
  local dir=$1 rc=0
  shift
  (cd "$dir" && ctest -V -j "$JOBS" "$@") >"$logs/.ctest-$dir" 2>&1 || rc=$?
  regroup <"$logs/.ctest-$dir"
  return "$rc"
}

# put FILE TEXT: FILE holds TEXT, whole, once it exists (lanes wait for it)
put() { echo "$2" >"$1.tmp" && mv "$1.tmp" "$1"; }
# await FILE: waits for put's FILE, prints what it holds
await() { while [ ! -e "$1" ]; do sleep 1; done; cat "$1"; }

# step_failed WHAT: a build or a check outside any spec failed (from any
# lane): named in the closing list, counted in the last line
step_failed() {
  say "$1: FAILED"
  (flock 9; echo "$1" >>"$logs/.failed-steps") 9>"$logs/.print"
}

# build BUILD_DIR [cmake options...]: a leg; its verdict in
# $logs/built.BUILD_DIR (ok or failed), a failure counted
build() {
  local dir=$1
  shift
  if leg "build $dir" env BUILD_DIR="$dir" $BUILD_NICE ./scripts/build.sh -DPRODUCERS_WERROR=ON "$@"; then
    put "$logs/built.$dir" ok
    return 0
  fi
  step_failed "build $dir"
  put "$logs/built.$dir" failed
  return 1
}
# built BUILD_DIR: waits for the build's verdict; true when it built
built() { [ "$(await "$logs/built.$1")" = ok ]; }
BUILD_NICE=

# unit LEG BUILD_DIR [ctest args...]: a CTest leg, counted
unit() {
  local name=$1
  shift
  legs+=("$name")
  leg "$name" ctest_leg "$@" || true
}

# bg FUNCTION: runs it in the background, in a process group of its own
# (ended with the script: integration.sh then stops its brokers)
bg() {
  set -m
  "$1" &
  lane_pids+=($!)
  set +m
}

# spec/packaging/embed_spec.lua installs the LuaJIT build beside the 5.4 one: build it first
build build-luajit -DPRODUCERS_LUA=luajit -DPRODUCERS_BENCH=OFF || true
export PRODUCERS_LUAJIT_BUILD_DIR=$PWD/build-luajit
build build -DPRODUCERS_LUA=5.4 || true

# The integration lanes (scripts/integration.sh starts and stops its
# brokers), two side by side on brokers of their own: Kafka 3.9 (a node:
# the integration specs, then nginx under LuaJIT; then a 3-node cluster),
# and Kafka 4.x on $PRODUCERS_KAFKA_DIR-4 at a port offset 500 higher
# (librdkafka 2.0.2, then, once the builds lane says whether
# build-rdkafka2.8 is good, 2.8.0). kcat reads back over SCRAM on 2.8 too
# (librdkafka.so.1 keeps its ABI; Debian's kcat on 2.0.2 fails the login).
integration() { env PRODUCERS_BUILD_DIR="$PWD/build" PRODUCERS_LUA=lua5.4 ./scripts/integration.sh "$@"; }
kafka3_lane() {
  leg "integration, Kafka 3.9" integration single || true
  leg "integration, Kafka 3.9, 3 nodes" integration failover || true
}
kafka4_lane() {
  # NATS JetStream first (issue #23; about 90 s: Debian's nats-server, then the newest; its own servers: scripts/nats/README.md);
  # its servers sit 200 ports above the unit legs' (spec/nats runs in both, at once: the
  # unit legs' base is PRODUCERS_NATS_PORT_OFFSET, else a tenth of PRODUCERS_KAFKA_PORT_OFFSET,
  # spec/support/nats.lua's N.own; the folders follow the ports), so a run beside another
  # one (PRODUCERS_KAFKA_PORT_OFFSET, PRODUCERS_KAFKA_DIR) moves it too
  export PRODUCERS_NATS_PORT_OFFSET=$((${PRODUCERS_NATS_PORT_OFFSET:-$((${PRODUCERS_KAFKA_PORT_OFFSET:-0} / 10))} + 200))
  [ -z "${PRODUCERS_KAFKA_DIR:-}" ] || export PRODUCERS_NATS_DIR=${PRODUCERS_NATS_DIR:-$PRODUCERS_KAFKA_DIR-nats}
  leg "integration, NATS" integration nats || true
  export PRODUCERS_KAFKA_DIR=${PRODUCERS_KAFKA_DIR:-/tmp/producers-kafka}-4
  export PRODUCERS_KAFKA_PORT_OFFSET=$((${PRODUCERS_KAFKA_PORT_OFFSET:-0} + 500))
  leg "integration, Kafka 4.x" integration kafka4 || true
  [ "$(await "$logs/rdkafka2.8.state")" = ok ] || return 0
  leg "integration, Kafka 4.x, librdkafka 2.8" bash -c 'LD_LIBRARY_PATH="$1/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
      PRODUCERS_BUILD_DIR=$PWD/build-rdkafka2.8 PRODUCERS_LUA=lua5.4 ./scripts/integration.sh kafka4 2>&1 \
      | sed "s/^Kafka 4\.x: /Kafka 4.x, librdkafka 2.8: /"; exit "${PIPESTATUS[0]}"' _ "$(await "$logs/rdkafka2.8.prefix")" \
    || true
}
legs+=("integration, Kafka 3.9" "integration, Kafka 3.9, 3 nodes" "integration, NATS" "integration, Kafka 4.x"
       "integration, Kafka 4.x, librdkafka 2.8")

if built build && built build-luajit; then bg kafka3_lane; bg kafka4_lane; fi

# The builds lane, niced, beside the unit legs (whose specs mostly wait):
# ASan; librdkafka 2.8.0 (scripts/librdkafka.sh: made once, cached; about
# 5 minutes on a fresh machine), which spec/packaging/luarocks_spec.lua's RDKAFKA_DIR case and the
# last legs use; 5.4 on it; Lua 5.1, 5.2, 5.3 (build only).
builds_lane() {
  BUILD_NICE="nice -n 10"
  build build-sanitize -DPRODUCERS_LUA=5.4 -DPRODUCERS_SANITIZE=ON -DPRODUCERS_BENCH=OFF || true
  local rdkafka28 state=failed linked
  local t0
  t0=$(date +%s)
  echo "librdkafka 2.8.0" >>"$logs/.order"
  if ! rdkafka28=$(nice -n 10 ./scripts/librdkafka.sh 2>"$logs/.librdkafka.err"); then
    (flock 9; cat "$logs/.librdkafka.err") 9>"$logs/.print"
    rdkafka28=
    step_failed "librdkafka 2.8.0 build (scripts/librdkafka.sh)"
  fi
  echo "$(($(date +%s) - t0))" >"$logs/librdkafka 2.8.0.time"
  put "$logs/rdkafka2.8.prefix" "$rdkafka28"
  if [ -n "$rdkafka28" ] &&
     build build-rdkafka2.8 -DPRODUCERS_LUA=5.4 -DPRODUCERS_BENCH=OFF -DCMAKE_PREFIX_PATH="$rdkafka28"; then
    linked=$(LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build-rdkafka2.8/?.so;;" \
               lua5.4 -e 'io.write(require("producers").librdkafka_version)' 2>&1 || true)
    say "== build-rdkafka2.8 runs librdkafka $linked"
    if [ "$linked" = "2.8.0" ]; then
      state=ok
    else
      step_failed "build-rdkafka2.8 runs librdkafka '$linked', not 2.8.0"
    fi
  fi
  put "$logs/rdkafka2.8.state" "$state"
  for v in 5.1 5.2 5.3; do
    build build-lua$v -DPRODUCERS_LUA=$v -DPRODUCERS_TESTS=OFF -DPRODUCERS_BENCH=OFF || true
  done
}
bg builds_lane

# The unit legs, in the order their builds are ready (LuaJIT needs nothing
# more; 5.4 waits for librdkafka 2.8.0, for spec/packaging/luarocks_spec.lua).
if built build-luajit; then unit "unit specs, LuaJIT" build-luajit; fi
if built build-sanitize; then unit "unit specs, Lua 5.4 under ASan and UBSan" build-sanitize; fi
rdkafka28=$(await "$logs/rdkafka2.8.prefix")
if [ -n "$rdkafka28" ]; then export PRODUCERS_RDKAFKA_DIR=$rdkafka28; fi
if built build; then unit "unit specs, Lua 5.4" build; fi

# The last leg: librdkafka 2.8.0 (Debian 13) instead of the system's
# 2.0.2: the unit specs of the producer's life with librdkafka (core/,
# kafka/, memory/ and ngx/operations); the lane runs the Kafka 4.x
# integration specs on it, where SCRAM works from librdkafka 2.6.1 on,
# with OAUTHBEARER against the real broker. Left to the first legs:
# packaging, JSON, nginx and benchmark specs (librdkafka plays no part);
# kafka/oauthbearer's unit cases (50 s under 2.8, whose destroy takes
# about a second a producer); kafka/faults and core/random, whose
# leaderless partitions crash 2.8's mock cluster (SIGSEGV in
# rd_kafka_mock_Produce_reply_tags_partition_write, librdkafka's thread);
# core/collector (LuaJIT's collector) and core/promises.
suites_expected=3
if [ "$(await "$logs/rdkafka2.8.state")" = ok ]; then
  suites_expected=4
  unit "unit specs, librdkafka 2.8" build-rdkafka2.8 \
    -R '^(core|kafka|memory)/|^ngx/operations' -E '/(faults|random|collector|oauthbearer|promises)_spec'
fi

say "== waiting for the background lanes"
for pid in "${lane_pids[@]}"; do wait "$pid" || true; done
lane_pids=()
failed_steps=()
[ ! -f "$logs/.failed-steps" ] || mapfile -t failed_steps <"$logs/.failed-steps"
build_failures=${#failed_steps[@]}

# Sum busted's summaries ("N successes / N failures / N errors"), as ctest
# -V prints them ("7: ...") and as integration.sh repeats them ("label:
# ..."), so the closing line counts test cases; a spec file that crashed
# before its summary counts through ctest's own tally.
log=$logs/.all
: >"$log"
for name in "${legs[@]}"; do [ ! -f "$logs/$name.log" ] || cat "$logs/$name.log" >>"$log"; done
status=0
for name in "${legs[@]}"; do
  if [ -f "$logs/$name.rc" ] && [ "$(cat "$logs/$name.rc")" != 0 ]; then status=1; fi
done
[ "$build_failures" -eq 0 ] || status=1
read -r passed failed < <(awk '
  /: [0-9]+ success(es)? \/ [0-9]+ failures? \/ [0-9]+ errors?/ {
    for (i = 1; i < NF; i++) {
      w = $(i+1)
      if (w == "success" || w == "successes") p += $i
      if (w == "failure" || w == "failures" || w == "error" || w == "errors") f += $i
    }
  }
  END { print p + 0, f + 0 }' "$log")
read -r suites ctest_failed < <(awk '
  /tests? failed out of/ { n++; for (i = 1; i < NF; i++) if ($(i+1) == "tests" || $(i+1) == "test") if ($(i+2) == "failed") f += $i }
  END { print n + 0, f + 0 }' "$log")
failed=$((failed + build_failures))
if [ "$suites" -lt "$suites_expected" ]; then
  echo "test.sh: a ctest run printed no summary"
  status=1
fi
if [ "$failed" -lt "$((ctest_failed + build_failures))" ]; then
  failed=$((ctest_failed + build_failures))
fi
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1     # a step failed outside any counted test (a broker start)
fi

echo
echo "== times (legs in the order they started)"
while read -r name; do
  [ -f "$logs/$name.time" ] && printf '%5s s  %s\n' "$(cat "$logs/$name.time")" "$name"
done <"$logs/.order"
echo "total $(($(date +%s) - t_start)) s ($(nproc) cores; load average at the end: $(cut -d ' ' -f 1-3 /proc/loadavg))"

# What failed, by leg: busted's "Failure → FILE @ LINE" (or "Error →") and
# the case's name on the line after it; CTest's failed tests (a spec file
# that crashed or timed out has no busted line); integration.sh's failed
# runs and broker starts; failed builds.
failures=$(for name in "${legs[@]}"; do
  f=$logs/$name.log
  [ -f "$f" ] || continue
    awk -v leg="$name" '
      { sub(/^[0-9]+: /, "") }
      want { printf "  %s: %s:%s: %s\n", leg, file, line, $0; want = 0; next }
      /^(Failure|Error) → [^ ]+ @ [0-9]+$/ { file = $3; line = $5; want = 1; next }
      /^The following tests FAILED:/ { listing = 1; next }
      listing && /^[ \t]+[0-9]+ - / { sub(/^[ \t]+[0-9]+ - /, ""); printf "  %s: spec/%s\n", leg, $0; next }
      { listing = 0 }
      /^integration\.sh: .*(failed|no LuaJIT build)/ { printf "  %s: %s\n", leg, $0 }
    ' "$f"
done | awk '!seen[$0]++')
if [ "$failed" -gt 0 ] || [ -n "$failures" ]; then
  echo
  echo "== failed"
  [ -n "$failures" ] && echo "$failures"
  for name in "${legs[@]}"; do
    if [ -f "$logs/$name.rc" ] && [ "$(cat "$logs/$name.rc")" != 0 ]; then echo "  leg failed: $name"; fi
  done
  for step in "${failed_steps[@]}"; do echo "  $step"; done
fi
echo "$passed passed, $failed failed"
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
