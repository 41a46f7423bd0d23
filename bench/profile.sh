#!/usr/bin/env bash
# profile.sh - where (b)'s instructions go: (b) (bench/lua_producer.lua
# tables) under callgrind, its main thread split into phases by
# bench/profile.py, in instructions a message (bench/README.md).
#
# Usage: bench/profile.sh [-n COUNT] [-r RUNS] [-V 5.4|luajit|both|naive] [-R REV] [-o DIR]
#   -n COUNT  messages a run                          (default 100000)
#   -r RUNS   runs of each runtime, one after another (default 2)
#   -V LUA    5.4, luajit or both                     (default both); naive:
#             the naive C producer instead (bench/raw_producer.c -N), its
#             main thread's total only
#   -R REV    profile a git revision instead of this tree: built in a
#             temporary worktree (a branch, a commit, a tag)
#   -o DIR    keep the main threads' callgrind files in DIR (default: a
#             temporary directory, removed at the end)
#
# Builds the module (RelWithDebInfo: -O2 with symbols and lines, which the
# split needs) in build-profile/ and build-profile-luajit/ of the tree
# profiled, the mock cluster in build-bench/ of this tree; runs this
# tree's bench/lua_producer.lua against the mock cluster (in a process of
# its own, stopped by its PID) with the profiled tree's lua/ and module:
#   valgrind --tool=callgrind --separate-threads=yes lua5.4 bench/lua_producer.lua tables ...
# and prints one row a run. Callgrind's counts do not depend on the
# machine's load (a run under valgrind takes about a minute a runtime).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

COUNT=100000
RUNS=2
VMS=both
REV=""
KEEP=""
while getopts "n:r:V:R:o:h" opt; do
  case $opt in
    n) COUNT=$OPTARG ;;
    r) RUNS=$OPTARG ;;
    V) VMS=$OPTARG ;;
    R) REV=$OPTARG ;;
    o) KEEP=$OPTARG ;;
    h) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) exit 2 ;;
  esac
done
case $VMS in
  5.4) VMS="5.4" ;;
  luajit) VMS="luajit" ;;
  both) VMS="5.4 luajit" ;;
  naive) VMS="naive" ;;
  *) echo "profile.sh: -V expects 5.4, luajit, both or naive" >&2; exit 2 ;;
esac
command -v valgrind >/dev/null || { echo "profile.sh: valgrind is missing" >&2; exit 1; }

WORK=$(mktemp -d /tmp/prd-profile.XXXXXX)
OUT=${KEEP:-$WORK/out}
mkdir -p "$OUT"
source bench/mock_cluster.sh
cleanup() {
  mock_stop
  [[ -z $REV ]] || git worktree remove --force "$WORK/tree" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { printf '==> %s\n' "$*" >&2; }

TREE=$ROOT
LABEL=this
if [[ -n $REV ]]; then
  TREE=$WORK/tree
  LABEL=$(git rev-parse --short "$REV")
  say "checking out $REV ($LABEL) in a temporary worktree"
  git worktree add --detach "$TREE" "$REV" >/dev/null 2>&1
fi

# build DIR LUA: the module of TREE, RelWithDebInfo, nothing else.
build() {
  say "building $TREE for Lua $2 in $1"
  cmake -S "$TREE" -B "$1" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPRODUCERS_LUA="$2" \
    -DPRODUCERS_TESTS=OFF -DPRODUCERS_BENCH=OFF >"$WORK/cmake.log" 2>&1 &&
    cmake --build "$1" -j "$(nproc)" >"$WORK/build.log" 2>&1 ||
    { tail -n 30 "$WORK/cmake.log" "$WORK/build.log" >&2; exit 1; }
}
cmake -S bench -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench >/dev/null
mock_start build-bench/prd_bench_mock_cluster 3 bench 6 "$WORK" ||
  { say "the mock cluster did not start"; exit 1; }

FILES=()
for vm in $VMS; do
  dir=$TREE/build-profile
  cmd=(lua5.4 bench/lua_producer.lua tables "$BOOTSTRAP" "$COUNT" bench)
  if [[ $vm == luajit ]]; then
    dir=$TREE/build-profile-luajit
    cmd[0]=luajit
  fi
  if [[ $vm == naive ]]; then
    LABEL=raw
    cmd=(build-bench/prd_bench_raw -N -B "$BOOTSTRAP" -n "$COUNT" -t bench)
  else
    build "$dir" "$vm"
  fi
  for run in $(seq "$RUNS"); do
    name=$LABEL.$vm.$run
    say "$name: callgrind, $COUNT messages"
    env "LUA_PATH=$TREE/lua/?.lua;$TREE/lua/?/init.lua;;" "LUA_CPATH=$dir/?.so;;" \
      valgrind --tool=callgrind --separate-threads=yes \
      --callgrind-out-file="$WORK/$name.%p" "${cmd[@]}" >"$WORK/$name.log" 2>&1 ||
      { tail -n 20 "$WORK/$name.log" >&2; say "$name failed"; exit 1; }
    main=$(ls "$WORK/$name".*-01)
    mv "$main" "$OUT/$name.callgrind"
    rm -f "$WORK/$name".*
    FILES+=("$OUT/$name.callgrind")
  done
done

echo
echo "Main thread, instructions a message ($COUNT messages, start-up included;" \
     "tree: ${REV:-this tree} $(git -C "$TREE" rev-parse --short HEAD)):"
echo
python3 bench/profile.py "$TREE/src" "$COUNT" "${FILES[@]}"
