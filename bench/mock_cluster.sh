# mock_cluster.sh - sourced by bench/run.sh and bench/nginx/run.sh: the
# benchmark's librdkafka mock cluster (prd_bench_mock_cluster) in a process
# of its own, started and stopped by its PID.

MOCK_PID=""

# mock_start PROGRAM BROKERS TOPIC PARTITIONS DIR: starts it (its output in
# DIR), waits (bounded) for it to print its address, sets MOCK_PID and
# BOOTSTRAP. Fails, showing its errors, if it exits or prints nothing.
mock_start() {
  local program=$1 brokers=$2 topic=$3 partitions=$4 dir=$5
  "$program" -b "$brokers" -t "$topic" -p "$partitions" >"$dir/mock.out" 2>"$dir/mock.err" &
  MOCK_PID=$!
  for _ in $(seq 100); do
    [[ -s $dir/mock.out ]] && break
    kill -0 "$MOCK_PID" 2>/dev/null || { cat "$dir/mock.err" >&2; return 1; }
    sleep 0.1
  done
  BOOTSTRAP=$(head -n 1 "$dir/mock.out")
  [[ -n $BOOTSTRAP ]]
}

# mock_stop: stops it, if it runs (for the scripts' exit traps).
mock_stop() {
  if [[ -n $MOCK_PID ]] && kill -0 "$MOCK_PID" 2>/dev/null; then
    kill -TERM "$MOCK_PID" 2>/dev/null || true
    wait "$MOCK_PID" 2>/dev/null || true
  fi
  MOCK_PID=""
}
