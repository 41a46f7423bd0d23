#!/usr/bin/env bash
# profile.sh - where (b)'s instructions go: (b) (bench/lua_producer.lua
# tables) under callgrind, its main thread split into phases by
# bench/profile.py, in instructions a message (bench/README.md).
#
# Usage: bench/profile.sh [-n COUNT] [-r RUNS] [-V 5.4|luajit|both|naive] [-R REV] [-o DIR] [-s]
#   -n COUNT  messages a run                          (default 100000)
#   -r RUNS   runs of each runtime, one after another (default 2)
#   -V LUA    5.4, luajit or both                     (default both); naive:
#             the naive C producer instead (bench/raw_producer.c -N), its
#             main thread's total only; all: 5.4, luajit and naive
#   -R REV    profile a git revision instead of this tree: built in a
#             temporary worktree (a branch, a commit, a tag)
#   -o DIR    keep the callgrind files in DIR (default: a temporary
#             directory, removed at the end): NAME.callgrind the main
#             thread's, NAME.tNN.callgrind librdkafka's threads'
#   -s        also count the system calls of one run of each (strace -f -c,
#             without valgrind; its summary a thread group)
#
# Builds the module (RelWithDebInfo: -O2 with symbols and lines, which the
# split needs) in build-profile/ and build-profile-luajit/ of the tree
# profiled, the mock cluster in build-bench/ of this tree; runs this
# tree's bench/lua_producer.lua against the mock cluster (in a process of
# its own, stopped by its PID) with the profiled tree's lua/ and module:
#   valgrind --tool=callgrind --separate-threads=yes lua5.4 bench/lua_producer.lua tables ...
# and prints one row a run, then librdkafka's threads (every other thread
# of the process, split by the object that ran them: zlib, librdkafka, libc)
# in instructions a message. Callgrind's counts do not depend on the
# machine's load (a run under valgrind takes about a minute a runtime).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

COUNT=100000
RUNS=2
VMS=both
REV=""
KEEP=""
STRACE=0
while getopts "n:r:V:R:o:sh" opt; do
  case $opt in
    n) COUNT=$OPTARG ;;
    r) RUNS=$OPTARG ;;
    V) VMS=$OPTARG ;;
    R) REV=$OPTARG ;;
    o) KEEP=$OPTARG ;;
    s) STRACE=1 ;;
    h) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) exit 2 ;;
  esac
done
case $VMS in
  5.4) VMS="5.4" ;;
  luajit) VMS="luajit" ;;
  both) VMS="5.4 luajit" ;;
  naive) VMS="naive" ;;
  all) VMS="5.4 luajit naive" ;;
  *) echo "profile.sh: -V expects 5.4, luajit, both, naive or all" >&2; exit 2 ;;
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
THREADS=()
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
    for f in "$WORK/$name".*-[0-9][0-9]; do
      [[ -e $f ]] || continue
      mv "$f" "$OUT/$name.t${f##*-}.callgrind"
      THREADS+=("$OUT/$name.t${f##*-}.callgrind")
    done
    rm -f "$WORK/$name".*
    FILES+=("$OUT/$name.callgrind")
  done
  if [[ $STRACE == 1 ]]; then
    say "$LABEL.$vm: strace -f -c, $COUNT messages"
    env "LUA_PATH=$TREE/lua/?.lua;$TREE/lua/?/init.lua;;" "LUA_CPATH=$dir/?.so;;" \
      strace -f -c -o "$OUT/$LABEL.$vm.strace" "${cmd[@]}" >"$WORK/strace.log" 2>&1 ||
      { tail -n 20 "$WORK/strace.log" >&2; say "strace failed"; exit 1; }
    echo; echo "System calls, $LABEL.$vm, $COUNT messages (strace -f -c, every thread):"
    head -n 14 "$OUT/$LABEL.$vm.strace"
  fi
done

echo
echo "Main thread, instructions a message ($COUNT messages, start-up included;" \
     "tree: ${REV:-this tree} $(git -C "$TREE" rev-parse --short HEAD)):"
echo
python3 bench/profile.py "$TREE/src" "$COUNT" "${FILES[@]}"
echo
echo "librdkafka's threads, instructions a message (every thread but the main one," \
     "split by the object that ran them):"
echo
python3 bench/profile.py --threads "$COUNT" "${THREADS[@]}"
