#!/usr/bin/env bash
# The README's second command: installs what the tests need, builds, runs
# every spec through CTest (Lua 5.4, LuaJIT, Lua 5.4 under ASan/UBSan),
# checks that Lua 5.1, 5.2 and 5.3 builds succeed, and ends with
# "N passed, N failed" counting test cases (and builds).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0

run_suite() {   # run_suite BUILD_DIR [cmake options...]
  local dir=$1
  shift
  echo "== build $dir $*"
  BUILD_DIR=$dir ./scripts/build.sh -DPRODUCERS_WERROR=ON "$@"
  echo "== ctest $dir"
  (cd "$dir" && ctest -V) 2>&1 | tee -a "$log" || status=1
}

build_failures=0
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
if [ "$suites" -lt 3 ]; then
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
