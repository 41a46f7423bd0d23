#!/usr/bin/env bash
# The README's second command: installs what the tests need, builds, runs
# every spec, and ends with "N passed, N failed" counting test cases (and
# builds), the failed spec files and cases listed just before that line.
#
# What runs where (docs/testing.md tells more):
#   builds, one after another (each uses every core): build-luajit,
#     librdkafka 2.8.0 (built once into ~/.cache/producers by
#     scripts/librdkafka.sh), build (Lua 5.4), build-sanitize (5.4 under
#     ASan/UBSan), build-rdkafka2.8 (5.4 on librdkafka 2.8.0), and Lua 5.1,
#     5.2, 5.3 (build only);
#   the integration lane, in the background from the moment build and
#     build-luajit exist (it mostly waits on brokers): scripts/integration.sh
#     on librdkafka 2.0.2 (a Kafka 3.9 node: the integration specs and
#     nginx under LuaJIT; a 3-node cluster: failover; a Kafka 4.x node),
#     then its Kafka 4.x run again on librdkafka 2.8.0;
#   the unit legs, one after another beside it, each spec file one CTest
#     test, $PRODUCERS_TEST_JOBS (default 4) at a time (they mostly wait on
#     timeouts of the mock cluster; each makes its own temporary folders,
#     ports and brokers): every spec under Lua 5.4, LuaJIT and 5.4 under
#     ASan/UBSan (valgrind in the first two), then the specs of the
#     producer's life with librdkafka on librdkafka 2.8.0 (see the leg).
# Each leg writes its own log, printed whole when the leg ends (a CTest
# leg's lines grouped by spec file), so legs that run side by side do not
# mix their lines; "== started: LEG" marks when each began.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh

JOBS=${PRODUCERS_TEST_JOBS:-4}
logs=$(mktemp -d)
lane_pid=
on_exit() {
  local rc=$?
  if [ -n "$lane_pid" ]; then kill -TERM -- "-$lane_pid" 2>/dev/null || true; wait "$lane_pid" 2>/dev/null || true; fi
  rm -rf "$logs"
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
t_start=$(date +%s)
build_failures=0
failed_steps=()  # builds that failed, named in the closing list
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

# step_failed WHAT: a build or a check outside any spec failed: counted
step_failed() {
  say "$1: FAILED"
  failed_steps+=("$1")
  build_failures=$((build_failures + 1))
}

# build BUILD_DIR [cmake options...]: a leg; a failed build is counted;
# a good one is remembered in built_BUILD_DIR (dashes and dots as _)
build() {
  local dir=$1
  shift
  if leg "build $dir" env BUILD_DIR="$dir" ./scripts/build.sh -DPRODUCERS_WERROR=ON "$@"; then
    printf -v "built_${dir//[-.]/_}" 1
    return 0
  fi
  step_failed "build $dir"
  return 1
}
built() { local v="built_${1//[-.]/_}"; [ "${!v:-0}" = 1 ]; }

# unit LEG BUILD_DIR [ctest args...]: a CTest leg, counted
unit() {
  local name=$1
  shift
  legs+=("$name")
  leg "$name" ctest_leg "$@" || true
}

# spec/10 installs the LuaJIT build beside the 5.4 one: build it first
build build-luajit -DPRODUCERS_LUA=luajit -DPRODUCERS_BENCH=OFF || true
export PRODUCERS_LUAJIT_BUILD_DIR=$PWD/build-luajit
build build -DPRODUCERS_LUA=5.4 || true

# The integration lane (scripts/integration.sh: brokers it starts and
# stops), in the background, in a process group of its own (ended with
# the script): the 2.0.2 runs on build and build-luajit, then, once the
# foreground says whether build-rdkafka2.8 is good, the Kafka 4.x run on
# librdkafka 2.8.0. kcat reads back over SCRAM on 2.8 too (librdkafka.so.1
# keeps its ABI; Debian's kcat on 2.0.2 fails the login).
integration_lane() {
  leg "integration" env PRODUCERS_BUILD_DIR="$PWD/build" PRODUCERS_LUA=lua5.4 ./scripts/integration.sh || true
  while [ ! -e "$logs/rdkafka2.8.state" ]; do sleep 1; done
  [ "$(cat "$logs/rdkafka2.8.state")" = ok ] || return 0
  local rdkafka28
  rdkafka28=$(cat "$logs/rdkafka2.8.prefix")
  leg "integration (librdkafka 2.8)" bash -c 'LD_LIBRARY_PATH="$1/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
      PRODUCERS_BUILD_DIR=$PWD/build-rdkafka2.8 PRODUCERS_LUA=lua5.4 ./scripts/integration.sh kafka4 2>&1 \
      | sed "s/^Kafka 4\.x: /Kafka 4.x, librdkafka 2.8: /"; exit "${PIPESTATUS[0]}"' _ "$rdkafka28" || true
}
legs+=("integration" "integration (librdkafka 2.8)")
rdkafka28=
set -m
integration_lane &
lane_pid=$!
set +m

# spec/11's RDKAFKA_DIR case and the last leg use librdkafka 2.8 (cached)
if rdkafka28=$(./scripts/librdkafka.sh 2>"$logs/.librdkafka.err"); then
  export PRODUCERS_RDKAFKA_DIR=$rdkafka28
else
  cat "$logs/.librdkafka.err"
  rdkafka28=
  step_failed "librdkafka 2.8.0 build (scripts/librdkafka.sh)"
fi
build build-sanitize -DPRODUCERS_LUA=5.4 -DPRODUCERS_SANITIZE=ON -DPRODUCERS_BENCH=OFF || true
state=failed
if [ -n "$rdkafka28" ] && build build-rdkafka2.8 -DPRODUCERS_LUA=5.4 -DPRODUCERS_BENCH=OFF -DCMAKE_PREFIX_PATH="$rdkafka28"; then
  linked=$(LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build-rdkafka2.8/?.so;;" \
             lua5.4 -e 'io.write(require("producers").librdkafka_version)' 2>&1 || true)
  say "== build-rdkafka2.8 runs librdkafka $linked"
  if [ "$linked" = "2.8.0" ]; then
    state=ok
  else
    step_failed "build-rdkafka2.8 runs librdkafka '$linked', not 2.8.0"
  fi
fi
# the lane was forked before: it learns by file whether 2.8 is good
echo "$rdkafka28" >"$logs/rdkafka2.8.prefix"
echo "$state" >"$logs/rdkafka2.8.state"
for v in 5.1 5.2 5.3; do
  build build-lua$v -DPRODUCERS_LUA=$v -DPRODUCERS_TESTS=OFF -DPRODUCERS_BENCH=OFF || true
done

if built build; then unit "unit specs, Lua 5.4" build; fi
if built build-luajit; then unit "unit specs, LuaJIT" build-luajit; fi
if built build-sanitize; then unit "unit specs, Lua 5.4 under ASan and UBSan" build-sanitize; fi

# The last leg: librdkafka 2.8.0 (Debian 13) instead of the system's
# 2.0.2: the unit specs of the producer's life with librdkafka (module,
# config, produce, delivery, lifecycle, read-back, memory backend, memory
# safety with valgrind, event_fd, reliability, event loops, statistics,
# errors as values, transactions, purge and poll's bound); the lane runs
# the Kafka 4.x integration specs on it, where SCRAM works from librdkafka
# 2.6.1 on, with OAUTHBEARER against the real broker (spec/25's unit
# cases take 50 s under 2.8, whose destroy takes about a second a
# producer: left to the first legs).
# Left to the first legs: packaging, JSON, nginx and benchmark specs
# (librdkafka plays no part), and spec/16 and spec/17, whose leaderless
# partitions crash 2.8's mock cluster (SIGSEGV in
# rd_kafka_mock_Produce_reply_tags_partition_write, librdkafka's thread).
suites_expected=3
if [ "$state" = ok ]; then
  suites_expected=4
  unit "unit specs, librdkafka 2.8" build-rdkafka2.8 -R '^(01|02|03|04|05|06|07|08|13|18|19|22|23|24|26)-'
fi

if [ -n "$lane_pid" ]; then
  say "== waiting for the integration lane"
  wait "$lane_pid" || true
  lane_pid=
fi

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
