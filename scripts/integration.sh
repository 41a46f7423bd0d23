#!/usr/bin/env bash
# Integration specs against a real Apache Kafka (scripts/kafka/broker.sh):
#   1. a single-node broker: spec/integration/{10,20,30,40,85}-*_spec.lua, then
#      spec/integration/60-nginx_spec.lua and 62-nginx_spool_spec.lua under LuaJIT (nginx's lua module
#      loads the LuaJIT build: $PRODUCERS_NGINX_BUILD_DIR, default build-luajit)
#   2. a 3-node cluster:     spec/integration/50-failover_spec.lua
#   3. a single-node Kafka 4.x: the read-back, SASL_SSL, transactions and
#      OAUTHBEARER specs again
#      (1 and 2 run Kafka 3.9: see scripts/kafka/README.md for why)
#   4. NATS JetStream: spec/integration/nats (#nats), which starts and stops
#      its own servers (scripts/nats/server.sh; no Kafka broker)
# Prints busted's summary line for each run ("N successes / N failures /
# N errors / N pending") with its failed cases (FILE:LINE: name), the
# broker logs when a run fails, and exits
# non-zero if any run failed. Every broker is stopped on exit, even on
# failure or Ctrl-C. Assumes the library is built (build/, or
# $PRODUCERS_BUILD_DIR) and the dependencies are installed
# (scripts/install-deps.sh, scripts/kafka/broker.sh deps).
#
#   scripts/integration.sh            # both runs
#   scripts/integration.sh single     # only the single-node run
#   scripts/integration.sh failover   # only the 3-node run
#   scripts/integration.sh kafka4     # only the Kafka 4.x run
#   scripts/integration.sh nginx      # only the nginx spec (single node)
#   scripts/integration.sh nats       # only the NATS run
set -euo pipefail
cd "$(dirname "$0")/.."

BROKER=scripts/kafka/broker.sh
LUA=${PRODUCERS_LUA:-lua5.4}
WHAT=${1:-all}
case $WHAT in all | single | failover | kafka4 | nginx | nats) ;; *) echo "usage: $0 [all|single|failover|kafka4|nginx|nats]" >&2; exit 2 ;; esac
NATS_SERVER_SH=scripts/nats/server.sh
NATS_RUN=
NGINX_BUILD=${PRODUCERS_NGINX_BUILD_DIR:-$PWD/build-luajit}

status=0
logs_shown=0
BUSTED_PID=
summaries=()
t_start=$(date +%s)

show_logs() {
  echo "== broker logs"
  if [[ $WHAT == nats ]]; then "$NATS_SERVER_SH" logs 60 || true; else "$BROKER" logs 120 || true; fi
  logs_shown=1
}

on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $BUSTED_PID ]]; then
    echo "integration.sh: interrupted, ending busted (session $BUSTED_PID)"
    kill -TERM -- "-$BUSTED_PID" 2>/dev/null || true
    wait "$BUSTED_PID" 2>/dev/null || true
  fi
  if ((rc != 0 && logs_shown == 0)); then show_logs; fi
  # only what this run started: a nats run starts no broker (and test.sh runs
  # it beside a lane whose broker sits at the default folder), and another
  # run may be using the NATS servers
  if [[ $WHAT != nats ]]; then "$BROKER" stop >/dev/null 2>&1 || true; fi
  if [[ -n $NATS_RUN ]]; then "$NATS_SERVER_SH" stop >/dev/null 2>&1 || true; fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_broker() { # label, broker.sh start arguments...
  local label=$1 t0
  shift
  t0=$(date +%s)
  echo "== starting $label"
  if ! "$BROKER" start "$@" >/dev/null; then
    echo "integration.sh: broker.sh start $* failed"
    summaries+=("$label: broker.sh start $* failed")
    status=1
    show_logs
    return 1
  fi
  echo "== $label up in $(($(date +%s) - t0)) s"
}

stop_broker() {
  local t0
  t0=$(date +%s)
  "$BROKER" stop || true
  echo "== brokers stopped in $(($(date +%s) - t0)) s"
}

# run_busted LABEL ARGS...: one busted run; keeps its summary line. busted
# runs in its own session (busted --lua re-runs itself under that Lua, so
# it is a small process tree): a signal to this script ends that session
# at once, then the trap stops the brokers.
run_busted() {
  local label=$1 out rc t0 summary tail_pid failed_cases
  shift
  t0=$(date +%s)
  out=$(mktemp)
  echo "== busted ($label): busted --lua=$LUA -o utfTerminal $*"
  setsid busted --lua="$LUA" -o utfTerminal "$@" >"$out" 2>&1 </dev/null &
  BUSTED_PID=$!
  tail -n +1 -f --pid="$BUSTED_PID" "$out" &
  tail_pid=$!
  rc=0
  wait "$BUSTED_PID" || rc=$?
  BUSTED_PID=
  wait "$tail_pid" || true
  summary=$(grep -aE '[0-9]+ successe?s? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' "$out" | tail -n 1 || true)
  # each failed case: busted's "Failure → FILE @ LINE" (or "Error →"), its name on the next line
  failed_cases=$(awk 'want { printf "  %s: %s:%s: %s\n", label, file, line, $0; want = 0; next }
    /^(Failure|Error) → [^ ]+ @ [0-9]+$/ { file = $3; line = $5; want = 1 }' label="$label" "$out")
  rm -f "$out"
  if [[ -z $summary ]]; then
    summary="(no summary: busted exited with status $rc)"
    ((rc != 0)) || rc=1
  fi
  summaries+=("$label: $summary ($(($(date +%s) - t0)) s)")
  if [[ -n $failed_cases ]]; then summaries+=("$failed_cases"); fi
  if ((rc != 0)); then
    status=1
    echo "integration.sh: the $label run failed (busted exit status $rc)"
    show_logs
  fi
}

# nginx with the lua module runs on OpenResty's LuaJIT: the spec runs
# under luajit with the LuaJIT build (scripts/test.sh builds it first)
run_nginx() {
  if [[ ! -f $NGINX_BUILD/producers/core.so ]]; then
    echo "integration.sh: no LuaJIT build in $NGINX_BUILD (BUILD_DIR=build-luajit ./scripts/build.sh -DPRODUCERS_LUA=luajit)"
    summaries+=("nginx: no LuaJIT build in $NGINX_BUILD")
    status=1
    return
  fi
  LUA=luajit PRODUCERS_LUA=luajit PRODUCERS_BUILD_DIR=$NGINX_BUILD \
    run_busted "nginx (LuaJIT)" --tags=nginx --exclude-tags=failover spec/integration/60-nginx_spec.lua \
      spec/integration/62-nginx_spool_spec.lua
}

if [[ $WHAT == all || $WHAT == single || $WHAT == nginx ]]; then
  if start_broker "a single-node broker"; then
    if [[ $WHAT != nginx ]]; then
      run_busted "single node" --tags=integration --exclude-tags=failover,nginx spec/integration
    fi
    run_nginx
  fi
  stop_broker
fi

if [[ $WHAT == all || $WHAT == failover ]]; then
  if start_broker "a 3-node cluster" --nodes 3; then
    run_busted "3 nodes" --tags=integration --exclude-tags=none spec/integration/50-failover_spec.lua \
      spec/integration/55-outage_dup_spec.lua
  fi
  stop_broker
fi

if [[ $WHAT == all || $WHAT == kafka4 ]]; then
  export PRODUCERS_KAFKA_LINE=4
  if start_broker "a single-node Kafka 4.x broker"; then
    run_busted "Kafka 4.x" --tags=integration --exclude-tags=failover spec/integration/10-plaintext_spec.lua \
      spec/integration/20-sasl_spec.lua spec/integration/70-transactions_spec.lua \
      spec/integration/75-txn_abort_spec.lua spec/integration/80-oauthbearer_spec.lua
  fi
  "$BROKER" stop >/dev/null 2>&1 || true
  unset PRODUCERS_KAFKA_LINE
fi

if [[ $WHAT == all || $WHAT == nats ]]; then
  NATS_RUN=1
  run_busted "NATS" --tags=nats spec/integration/nats
  "$NATS_SERVER_SH" stop >/dev/null 2>&1 || true
  NATS_RUN=
fi

echo
echo "== integration summary"
for s in "${summaries[@]}"; do echo "$s"; done
echo "total $(($(date +%s) - t_start)) s"
exit "$status"
