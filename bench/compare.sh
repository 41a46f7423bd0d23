#!/usr/bin/env bash
# compare.sh - (b), Lua tables with a callback, of this tree against another
# revision, side by side in one run: the check that a change does not slow
# (b) by more than 5% (bench/README.md).
#
# Usage: bench/compare.sh REV [ROUNDS] [COUNT]
#   REV     a git revision (e.g. HEAD~3, a tag): built in a temporary worktree
#   ROUNDS  rounds; each runs old and new in turn, under Lua 5.4 and LuaJIT
#           (default 5)
#   COUNT   messages per run (default 1000000)
# BENCH_CONFIG (NAME=VALUE,...) applies librdkafka properties to both.
#
# Both run the current tree's bench/lua_producer.lua against one librdkafka
# mock cluster in a process of its own; each uses its own revision's lua/
# and module. Prints each run's msg/s, the medians and new/old.
set -euo pipefail
cd "$(dirname "$0")/.."
REV=${1:?usage: bench/compare.sh REV [ROUNDS] [COUNT]}
ROUNDS=${2:-5}
COUNT=${3:-1000000}
BENCH_BUILD=${BENCH_BUILD:-build-bench}

WORK=$(mktemp -d /tmp/prd-compare.XXXXXX)
source bench/mock_cluster.sh
cleanup() {
  mock_stop
  git worktree remove --force "$WORK/old" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

say() { printf '==> %s\n' "$*" >&2; }

# build SOURCE DIR LUA: the module, Release, nothing else.
build() {
  cmake -S "$1" -B "$2" -DCMAKE_BUILD_TYPE=Release -DPRODUCERS_LUA="$3" \
    -DPRODUCERS_TESTS=OFF -DPRODUCERS_BENCH=OFF >"$WORK/cmake.log" 2>&1 &&
    cmake --build "$2" -j "$(nproc)" >"$WORK/build.log" 2>&1 ||
    { tail -n 30 "$WORK/cmake.log" "$WORK/build.log" >&2; exit 1; }
}

say "building $REV in a worktree, and this tree"
git worktree add --detach "$WORK/old" "$REV" >/dev/null 2>&1
for lua in 5.4 luajit; do
  build "$WORK/old" "$WORK/old-$lua" "$lua"
  build . "$WORK/new-$lua" "$lua"
done
cmake -S bench -B "$BENCH_BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BENCH_BUILD" >/dev/null
mock_start "$BENCH_BUILD/prd_bench_mock_cluster" 3 bench 6 "$WORK" ||
  { say "the mock cluster did not start"; exit 1; }

# rate TREE LUA: msg/s of one (b) run of TREE (old or new) under LUA.
rate() {
  local src=. interp=lua5.4
  [[ $1 == old ]] && src=$WORK/old
  [[ $2 == luajit ]] && interp=luajit
  env "LUA_PATH=$src/lua/?.lua;$src/lua/?/init.lua;;" "LUA_CPATH=$WORK/$1-$2/?.so;;" \
    "BENCH_CONFIG=${BENCH_CONFIG:-}" "$interp" bench/lua_producer.lua tables "$BOOTSTRAP" \
    "$COUNT" bench | tr ' ' '\n' | sed -n 's/^rate=//p'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

declare -A runs
printf '%-6s %14s %14s %14s %14s\n' round "old 5.4" "new 5.4" "old LuaJIT" "new LuaJIT"
for round in $(seq "$ROUNDS"); do
  line=()
  for lua in 5.4 luajit; do
    for tree in old new; do
      r=$(rate "$tree" "$lua")
      runs[$tree-$lua]+="$r "
      line+=("$r")
    done
  done
  printf '%-6s %14s %14s %14s %14s\n' "$round" "${line[@]}"
done
echo
echo "median msg/s over $ROUNDS rounds of $COUNT messages ($REV = old; this tree = new):"
for lua in 5.4 luajit; do
  old=$(tr ' ' '\n' <<<"${runs[old-$lua]}" | grep . | median)
  new=$(tr ' ' '\n' <<<"${runs[new-$lua]}" | grep . | median)
  awk -v l="$lua" -v o="$old" -v n="$new" \
    'BEGIN { printf "  Lua %-7s old %9.0f  new %9.0f  new/old %.3f\n", l, o, n, n / o }'
done
