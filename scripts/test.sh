#!/usr/bin/env bash
# The README's second command: installs what the tests need, builds, runs
# every spec through CTest (Lua 5.4, LuaJIT, Lua 5.4 under ASan/UBSan),
# checks that Lua 5.1, 5.2 and 5.3 builds succeed, runs the integration
# specs, then a second leg against a current librdkafka (Debian 13's
# 2.8.0, built once into ~/.cache/producers by scripts/librdkafka.sh):
# the unit suite under Lua 5.4 and the Kafka 4.x integration specs. Ends
# with "N passed, N failed" counting test cases (and builds).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0

CTEST_ARGS=()
run_suite() {   # run_suite BUILD_DIR [cmake options...]; ctest gets CTEST_ARGS
  local dir=$1
  shift
  echo "== build $dir $*"
  BUILD_DIR=$dir ./scripts/build.sh -DPRODUCERS_WERROR=ON "$@"
  echo "== ctest $dir ${CTEST_ARGS[*]}"
  (cd "$dir" && ctest -V "${CTEST_ARGS[@]}") 2>&1 | tee -a "$log" || status=1
}

build_failures=0
# spec/10 installs the LuaJIT build beside the 5.4 one: build it first
echo "== build build-luajit (for spec/10)"
BUILD_DIR=build-luajit ./scripts/build.sh -DPRODUCERS_WERROR=ON -DPRODUCERS_LUA=luajit -DPRODUCERS_BENCH=OFF
export PRODUCERS_LUAJIT_BUILD_DIR=$PWD/build-luajit
# spec/11's RDKAFKA_DIR case uses the librdkafka 2.8 build (made once, cached)
rdkafka28=
if rdkafka28=$(./scripts/librdkafka.sh); then
  export PRODUCERS_RDKAFKA_DIR=$rdkafka28
else
  echo "librdkafka 2.8.0 build: FAILED"
  rdkafka28=
  build_failures=$((build_failures + 1))
  status=1
fi
run_suite build -DPRODUCERS_LUA=5.4
run_suite build-luajit -DPRODUCERS_LUA=luajit -DPRODUCERS_BENCH=OFF
run_suite build-sanitize -DPRODUCERS_LUA=5.4 -DPRODUCERS_SANITIZE=ON -DPRODUCERS_BENCH=OFF
for v in 5.1 5.2 5.3; do
  echo "== build build-lua$v (build only)"
  if BUILD_DIR=build-lua$v ./scripts/build.sh -DPRODUCERS_LUA=$v -DPRODUCERS_WERROR=ON \
       -DPRODUCERS_TESTS=OFF -DPRODUCERS_BENCH=OFF >/dev/null; then
    echo "build for Lua $v: ok"
  else
    echo "build for Lua $v: FAILED"
    build_failures=$((build_failures + 1))
    status=1
  fi
done

# Integration specs against a real Kafka broker that the script starts
# and stops (scripts/kafka/broker.sh); they use the Lua 5.4 build.
echo "== integration"
PRODUCERS_BUILD_DIR=$PWD/build PRODUCERS_LUA=lua5.4 ./scripts/integration.sh 2>&1 | tee -a "$log" || status=1

# The second leg: librdkafka 2.8.0 (Debian 13) instead of the system's
# 2.0.2: the unit specs of the producer's life with librdkafka (module,
# config, produce, delivery, lifecycle, read-back, memory backend, memory
# safety with valgrind, event_fd, reliability, event loops, statistics,
# errors as values, transactions, purge and poll's bound), then the Kafka
# 4.x integration specs, where SCRAM works from librdkafka 2.6.1 on, with
# OAUTHBEARER against the real broker (spec/25's unit cases take 50 s
# under 2.8, whose destroy takes about a second a producer: left to the
# first leg).
# Left to the first leg: packaging, JSON, nginx and benchmark specs
# (librdkafka plays no part), and spec/16 and spec/17, whose leaderless
# partitions crash 2.8's mock cluster (SIGSEGV in
# rd_kafka_mock_Produce_reply_tags_partition_write, librdkafka's thread).
suites_expected=3
if [ -n "$rdkafka28" ]; then
  t_leg=$(date +%s)
  CTEST_ARGS=(-R '^(01|02|03|04|05|06|07|08|13|18|19|22|23|24|26)-')
  run_suite build-rdkafka2.8 -DPRODUCERS_LUA=5.4 -DPRODUCERS_BENCH=OFF -DCMAKE_PREFIX_PATH="$rdkafka28"
  CTEST_ARGS=()
  suites_expected=4
  linked=$(LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build-rdkafka2.8/?.so;;" \
             lua5.4 -e 'io.write(require("producers").librdkafka_version)' 2>&1 || true)
  echo "== build-rdkafka2.8 runs librdkafka $linked"
  if [ "$linked" != "2.8.0" ]; then
    echo "librdkafka 2.8 leg: the module runs librdkafka '$linked', not 2.8.0: FAILED"
    build_failures=$((build_failures + 1))
    status=1
  fi
  # kcat reads the messages back over SCRAM too: it runs on 2.8 as well
  # (librdkafka.so.1 keeps its ABI; Debian's kcat on 2.0.2 fails the login)
  echo "== integration (librdkafka $linked)"
  LD_LIBRARY_PATH="$rdkafka28/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  PRODUCERS_BUILD_DIR=$PWD/build-rdkafka2.8 PRODUCERS_LUA=lua5.4 ./scripts/integration.sh kafka4 2>&1 \
    | sed 's/^Kafka 4\.x: /Kafka 4.x, librdkafka 2.8: /' | tee -a "$log" || status=1
  echo "== librdkafka 2.8 leg: $(($(date +%s) - t_leg)) s"
fi

# Sum busted's summaries ("N successes / N failures / N errors"), as ctest
# -V prints them ("7: ...") and as integration.sh repeats them ("label:
# ..."), so the closing line counts test cases; a spec file that crashed
# before its summary counts through ctest's own tally.
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
  failed=1     # a step failed outside any counted test (a build, a broker start)
fi
echo "$passed passed, $failed failed"
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
