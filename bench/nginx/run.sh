#!/usr/bin/env bash
# bench/nginx/run.sh - the producers library inside nginx: worker CPU per message.
#
# One command. Starts the benchmark mock cluster (its own process), then
# nginx (Debian's nginx + libnginx-mod-http-lua on OpenResty's LuaJIT;
# 1 worker, daemon, temp prefix, 127.0.0.1 on a free port) with
# bench/nginx/nginx.conf: one producer per worker made in init_worker,
# reports served by an ngx.timer.every poll(0) and by produce, counted by
# on_delivery. wrk drives one location at a time for a fixed time; after
# each run the script waits (bounded) for every report, and reads the
# worker's CPU time (utime+stime, /proc/PID/stat) before and after. Each
# request handles 100 messages: the benchmark's object, keys user-0..999.
#
#   /request     no message                    (request cost, per request)
#   /build100    builds the tables only        (request + table cost)
#   /encode100   + producers.core.encode_value  (JSON encoding cost)
#   /produce100  + p:produce (library encodes) (the real thing)
#   /strings100  p:produce of pre-encoded JSON strings
#   /quiet100    the same, on a producer without on_delivery (no report table)
# first with the JIT on, then build/encode/produce again after jit.off().
#
# Prints a markdown table and writes it to bench/nginx/results.md. Stops
# nginx and the mock cluster by PID on exit, also on failure or Ctrl-C.
#
# Usage: bench/nginx/run.sh [options]
#   -d SECONDS   wrk duration of each run           (default 4)
#   -c CONNS     wrk connections (1 thread)         (default 8)
#   -q           quick: JIT-on request/build/encode/produce only
#   -X NAME=VAL  a librdkafka property for every producer, over the library's
#                defaults (repeatable), e.g. -X compression.type=lz4
#   -o FILE      results file                       (default bench/nginx/results.md)
# Environment: LUAJIT_BUILD_DIR (default build-luajit: core.so built for
# LuaJIT, made with scripts/build.sh if missing), BENCH_BUILD_DIR (default
# build/bench-standalone: prd_bench_mock_cluster, built if missing).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
./scripts/install-deps.sh     # nginx, its lua module, luajit2, wrk...

DURATION=4
CONNS=8
QUICK=0
RESULTS=bench/nginx/results.md
LIB_BUILD=${LUAJIT_BUILD_DIR:-build-luajit}
BENCH_BUILD=${BENCH_BUILD_DIR:-build/bench-standalone}
TOPIC=bench

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

CONFIG=""
PROPS=""
while getopts "d:c:qX:o:h" opt; do
  case $opt in
    d) DURATION=$OPTARG ;;
    c) CONNS=$OPTARG ;;
    q) QUICK=1 ;;
    X) [[ $OPTARG == *=* && $OPTARG != *[\"\\]* ]] || { echo "-X: expected NAME=VALUE" >&2; exit 2; }
       CONFIG+="[\"${OPTARG%%=*}\"] = \"${OPTARG#*=}\", "
       PROPS+="${PROPS:+, }$OPTARG" ;;
    o) RESULTS=$OPTARG ;;
    h) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

say() { printf '==> %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

for tool in nginx wrk curl envsubst; do
  command -v "$tool" >/dev/null || die "$tool is missing (Debian: apt-get install -y nginx libnginx-mod-http-lua wrk curl gettext-base)"
done
[[ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ]] ||
  die "the nginx lua module is missing (apt-get install -y libnginx-mod-http-lua)"

# ---------------------------------------------------------------- build ----
if [[ ! -f $LIB_BUILD/producers/core.so ]]; then
  say "building the library for LuaJIT in $LIB_BUILD"
  BUILD_DIR=$LIB_BUILD ./scripts/build.sh -DPRODUCERS_LUA=luajit -DPRODUCERS_BENCH=OFF >&2
fi
MOCK=$BENCH_BUILD/prd_bench_mock_cluster
if [[ ! -x $MOCK ]]; then
  say "building the mock cluster in $BENCH_BUILD"
  cmake -S bench -B "$BENCH_BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BENCH_BUILD" --target prd_bench_mock_cluster >/dev/null
fi
LIB_BUILD_ABS=$(cd "$LIB_BUILD" && pwd)

# ------------------------------------------------------------- cleanup ----
WORK=$(mktemp -d /tmp/prd-nginx-bench.XXXXXX)
chmod 755 "$WORK"
mkdir "$WORK/logs"
source bench/mock_cluster.sh
NGINX_PID=""

alive() {                       # running and not a zombie
  [[ -r /proc/$1/stat ]] && ! sed 's/^.*) //' "/proc/$1/stat" | grep -q '^Z'
}

stop_nginx() {
  [[ -n $NGINX_PID ]] || return 0
  local workers
  workers=$(ps -o pid= --ppid "$NGINX_PID" 2>/dev/null || true)
  if alive "$NGINX_PID"; then
    kill -QUIT "$NGINX_PID" 2>/dev/null || true      # graceful: workers close their producers
    for _ in $(seq 100); do alive "$NGINX_PID" || break; sleep 0.1; done
    if alive "$NGINX_PID"; then
      say "nginx did not quit in 10 s: killing it"
      for w in $workers; do kill -KILL "$w" 2>/dev/null || true; done
      kill -KILL "$NGINX_PID" 2>/dev/null || true
    fi
  fi
  NGINX_PID=""
}

cleanup() {
  stop_nginx
  mock_stop
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --------------------------------------------------------- mock cluster ----
mock_start "$MOCK" 3 "$TOPIC" 6 "$WORK" || die "the mock cluster failed or printed no address"
say "mock cluster (pid $MOCK_PID): $BOOTSTRAP, topic $TOPIC, 3 brokers, 6 partitions"

# ---------------------------------------------------------------- nginx ----
free_port() {                   # outside the ephemeral range, not listening
  local port
  for _ in $(seq 100); do
    port=$((20000 + RANDOM % 12000))
    ss -Hltn "sport = :$port" | grep -q . || { echo "$port"; return; }
  done
  die "no free port"
}

NGX=(nginx -p "$WORK/" -c "$WORK/nginx.conf" -e logs/error.log)
# A root master runs its workers as nobody, who cannot enter a checkout
# under a folder only root may (root's home, mode 700): bench_worker.lua
# would not load. The workers run as us instead; copying the Lua files
# and core.so into $WORK would be the other way, but would miss whatever
# they load in turn. (Not root: nginx ignores `user`, with a warning.)
if [[ $(id -u) == 0 ]]; then NGX+=(-g "user $(id -un) $(id -gn);"); fi
for attempt in 1 2 3 4 5; do
  PORT=$(free_port)
  PRODUCERS_ROOT=$ROOT PRODUCERS_BUILD_DIR=$LIB_BUILD_ABS PORT=$PORT BOOTSTRAP=$BOOTSTRAP TOPIC=$TOPIC CONFIG=$CONFIG \
    envsubst '${PRODUCERS_ROOT} ${PRODUCERS_BUILD_DIR} ${PORT} ${BOOTSTRAP} ${TOPIC} ${CONFIG}' \
    <bench/nginx/nginx.conf >"$WORK/nginx.conf"
  if (cd "$WORK" && "${NGX[@]}" </dev/null >logs/start.out 2>&1); then
    NGINX_PID=$(cat "$WORK/logs/nginx.pid")
    break
  fi
  grep -q "Address already in use" "$WORK/logs/start.out" "$WORK/logs/error.log" 2>/dev/null ||
    { cat "$WORK/logs/start.out" "$WORK/logs/error.log" >&2 2>/dev/null; die "nginx did not start"; }
done
[[ -n $NGINX_PID ]] || die "nginx did not start (ports in use)"
URL=http://127.0.0.1:$PORT

stats() { curl -sf --max-time 2 "$URL/stats"; }
# field TEXT KEY: the value of KEY=... in a stats line
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p" | head -n 1; }

for _ in $(seq 100); do stats >/dev/null 2>&1 && break; sleep 0.1; done
STATS=$(stats) || { cat "$WORK/logs/error.log" >&2; die "nginx does not answer on $URL"; }
WPID=$(field "$STATS" pid)
[[ $(ps -o pid= --ppid "$NGINX_PID" | wc -l) == 1 ]] || die "expected exactly one worker"
JIT_VERSION=$(curl -sf "$URL/jit" | sed -n 2p)
say "nginx master $NGINX_PID, worker $WPID, on $URL ($JIT_VERSION)"

TCK=$(getconf CLK_TCK)
# cpu_ticks FILE: utime + stime of a /proc .../stat file (fields after the comm)
cpu_ticks() { sed 's/^.*) //' "$1" | awk '{ print $12 + $13 }'; }

# Waits (bounded) until every produced message has had its report.
drain() {
  local s
  for _ in $(seq 200); do
    s=$(stats) && [[ $(field "$s" waiting) == 0 ]] && return 0
    sleep 0.05
  done
  say "reports still waiting after 10 s: $(stats | head -n 1)"
}

set_jit() { [[ $(curl -sf "$URL/jit?$1" | head -n 1) == "jit=$1" ]] || die "cannot turn the JIT $1"; }

# Untimed warm-up: connections, metadata, JIT traces.
say "warm-up"
for loc in produce100 quiet100; do
  wrk -t1 -c"$CONNS" -d1s "$URL/$loc" >/dev/null
done
drain

# ----------------------------------------------------------------- runs ----
# run NAME LOCATION: one wrk run; appends a result line to $WORK/results
: >"$WORK/results"
run() {
  local name=$1 loc=$2 jit s0 s1 c0 c1 m0 m1 t0 t1 t2 out
  jit=$(field "$(stats)" jit)
  drain
  s0=$(stats); m0=$(cpu_ticks "/proc/$WPID/task/$WPID/stat"); c0=$(cpu_ticks "/proc/$WPID/stat")
  t0=$(date +%s.%N)
  out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" "$URL/$loc")
  t1=$(date +%s.%N)
  drain
  t2=$(date +%s.%N)
  s1=$(stats); m1=$(cpu_ticks "/proc/$WPID/task/$WPID/stat"); c1=$(cpu_ticks "/proc/$WPID/stat")
  if grep -q "Non-2xx\|Socket errors" <<<"$out"; then
    say "$name: $(grep "Non-2xx\|Socket errors" <<<"$out" | paste -sd ' ')"
    curl -s "$URL/$loc" | head -n 5 >&2
  fi
  local line
  line=$(awk -v name="$name" -v loc="$loc" -v jit="$jit" -v tck="$TCK" \
    -v rps="$(sed -n 's/^Requests\/sec: *//p' <<<"$out")" \
    -v reqs="$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' <<<"$out")" \
    -v msgs="$(( $(field "$s1" messages) - $(field "$s0" messages) ))" \
    -v produced="$(( $(field "$s1" produced) - $(field "$s0" produced) ))" \
    -v delivered="$(( $(field "$s1" delivered) - $(field "$s0" delivered) ))" \
    -v failed="$(( $(field "$s1" failed) - $(field "$s0" failed) ))" \
    -v qfull="$(( $(field "$s1" queue_full) - $(field "$s0" queue_full) + $(field "$s1" errors) - $(field "$s0" errors) ))" \
    -v cpu="$((c1 - c0))" -v main="$((m1 - m0))" -v t0="$t0" -v t1="$t1" -v t2="$t2" 'BEGIN {
      us = 1e6 / tck
      printf "name=%s loc=%s jit=%s rps=%.0f reqs=%d msgs=%d produced=%d delivered=%d failed=%d refused=%d " \
             "wrk_s=%.2f total_s=%.2f dmsgs=%.0f cpu=%.3f main=%.3f other=%.3f",
        name, loc, jit, rps, reqs, msgs, produced, delivered, failed, qfull, t1 - t0, t2 - t0,
        delivered / (t2 - t0), msgs ? cpu * us / msgs : -1, msgs ? main * us / msgs : -1,
        msgs ? (cpu - main) * us / msgs : -1;
      printf " cpu_req=%.2f main_req=%.2f other_req=%.2f\n", cpu * us / reqs, main * us / reqs, (cpu - main) * us / reqs }')
  echo "$line" >>"$WORK/results"
  say "$line"
}

run request request
run build   build100
run encode  encode100
run produce produce100
if [[ $QUICK == 0 ]]; then
  run strings strings100
  run quiet   quiet100
  set_jit off
  run build   build100
  run encode  encode100
  run produce produce100
  set_jit on
fi
grep -q "first_error" <<<"$(stats)" && say "$(stats | sed -n 2p)"

stop_nginx
if grep -q '\[\(error\|crit\|alert\|emerg\)\]' "$WORK/logs/error.log"; then
  say "nginx logged errors (first 5):"
  grep '\[\(error\|crit\|alert\|emerg\)\]' "$WORK/logs/error.log" | head -n 5 >&2
fi

# -------------------------------------------------------------- results ----
# get NAME JIT KEY: a value from the result line of run NAME with the JIT on/off
get() { awk -v n="name=$1" -v j="jit=$2" '$1 == n && $3 == j' "$WORK/results" | tr ' ' '\n' | sed -n "s/^$3=//p"; }
thousands() { awk -v x="$1" 'BEGIN { s = sprintf("%d", x); r = "";
  while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) }
  print s r }'; }
diff2() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "") print "n/a"; else printf "%.2f", a - b }'; }
per100() { awk -v a="$1" 'BEGIN { if (a == "") print ""; else printf "%.4f", a / 100 }'; }
fmt2() { [[ -n $1 ]] && printf '%.2f' "$1" || echo "n/a"; }

LABELS_request="/request: no message (µs per request)"
LABELS_build="/build100: request + building the tables"
LABELS_encode="/encode100: + core.encode_value"
LABELS_produce="/produce100: + p:produce (library encodes)"
LABELS_strings="/strings100: p:produce of pre-encoded strings"
LABELS_quiet="/quiet100: the same, producer without on_delivery"

cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
{
  echo "# producers in nginx: worker CPU per message"
  echo
  echo "Indicative numbers from \`bench/nginx/run.sh\` on a small shared machine (other work may have been running)."
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "- CPU: ${cpu_model:-unknown}, $(nproc) cores; load average at the end: $(cut -d ' ' -f 1-3 /proc/loadavg)"
  echo "- $(nginx -v 2>&1 | sed 's/^nginx version: //'), lua module $(dpkg-query -W -f='${Version}' libnginx-mod-http-lua 2>/dev/null || echo '?'),"\
       "$JIT_VERSION (libluajit2-5.1-2 $(dpkg-query -W -f='${Version}' libluajit2-5.1-2 2>/dev/null || echo '?')),"\
       "librdkafka $(pkg-config --modversion rdkafka 2>/dev/null || echo '?'); library built $(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$LIB_BUILD/CMakeCache.txt")"
  echo "- nginx: 1 worker, keep-alive; wrk -t1 -c$CONNS -d${DURATION}s per run, on loopback; 100 messages per request,"
  echo "  value {event, user_id, ts, tags[3], ok} (89 bytes of JSON), keys user-0..user-999"
  echo "- broker: librdkafka mock cluster in its own process (3 brokers, topic '$TOPIC', 6 partitions);"
  echo "  the library's defaults (gzip, linger.ms=10, acks=all)${PROPS:+, then $PROPS}; reports served by produce and an ngx.timer.every(0.01) poll(0);"
  echo "  on a full local queue (_QUEUE_FULL) the handler yields with ngx.sleep(0.001) and retries, so every message is produced"
  echo "- worker CPU: utime+stime of the worker process (all its threads, librdkafka's included) from the"
  echo "  start of the wrk run until every report has been served, divided by the messages handled;"
  echo "  \"event loop\" is the worker's main thread alone (Lua, encoding, produce, reports), \"librdkafka\" the rest"
  echo "  (its broker threads: batching, gzip, network); delivered msg/s: delivered ÷ (the wrk run + the wait for the last reports)"
  echo
  echo "| run | JIT | requests/s | messages | produced | delivered | delivered msg/s | worker CPU µs/msg | event loop µs/msg | librdkafka threads µs/msg |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  while read -r line; do
    v() { tr ' ' '\n' <<<"$line" | sed -n "s/^$1=//p"; }
    name=$(v name); lbl=LABELS_$name
    if [[ $name == request ]]; then
      echo "| ${!lbl} | $(v jit) | $(thousands "$(v rps)") | – | – | – | – | $(v cpu_req) | $(v main_req) | $(v other_req) |"
      continue
    elif [[ $name == build || $name == encode ]]; then
      prod="–"; deliv="–"; rate="–"
    else
      prod=$(thousands "$(v produced)"); deliv=$(thousands "$(v delivered)"); rate=$(thousands "$(v dmsgs)")
      [[ $(v refused) != 0 ]] && prod="$prod ($(thousands "$(v refused)") queue-full retries)"
      [[ $(v failed) != 0 ]] && deliv="$deliv ($(thousands "$(v failed)") failed)"
    fi
    echo "| ${!lbl} | $(v jit) | $(thousands "$(v rps)") | $(thousands "$(v msgs)") | $prod | $deliv | $rate | $(v cpu) | $(v main) | $(v other) |"
  done <"$WORK/results"
  echo
  echo "Per message, µs of worker CPU, split by difference of the runs above"
  echo "(encode_value also makes a Lua string, which produce does not: the encoding line is slightly high, produce's slightly low):"
  echo
  echo "| part | JIT on | JIT off |"
  echo "| --- | --- | --- |"
  echo "| the request, shared by its 100 messages (/request ÷ 100) | $(fmt2 "$(per100 "$(get request on cpu_req)")") | n/a |"
  echo "| building the table (/build100 − that) | $(diff2 "$(get build on cpu)" "$(per100 "$(get request on cpu_req)")") | n/a |"
  echo "| request + building the table (/build100) | $(fmt2 "$(get build on cpu)") | $(fmt2 "$(get build off cpu)") |"
  echo "| JSON encoding (/encode100 − /build100) | $(diff2 "$(get encode on cpu)" "$(get build on cpu)") | $(diff2 "$(get encode off cpu)" "$(get build off cpu)") |"
  echo "| produce + delivery report, all threads (/produce100 − /encode100) | $(diff2 "$(get produce on cpu)" "$(get encode on cpu)") | $(diff2 "$(get produce off cpu)" "$(get encode off cpu)") |"
  echo "| … of which librdkafka's threads | $(fmt2 "$(get produce on other)") | $(fmt2 "$(get produce off other)") |"
  echo "| **total (/produce100), target ≤ 1.5** | **$(fmt2 "$(get produce on cpu)")** | **$(fmt2 "$(get produce off cpu)")** |"
  if [[ -n $(get quiet on cpu) ]]; then
    echo
    echo "Pre-encoded strings (JIT on), µs per message: what serving each report to on_delivery(err) costs"
    echo "(/strings100 − /quiet100): worker $(diff2 "$(get strings on cpu)" "$(get quiet on cpu)"), event loop $(diff2 "$(get strings on main)" "$(get quiet on main)")."
  fi
} >"$WORK/results.md"

cp "$WORK/results.md" "$RESULTS"
cat "$WORK/results.md"
say "written to $RESULTS"
