#!/usr/bin/env bash
# Runs a real Apache Kafka broker (KRaft, 1 or 3 nodes) on 127.0.0.1 for the
# integration tests. See README.md beside this file.
#
#   broker.sh start [--nodes 1|3]    fetch jars, make TLS material, format, start, wait until ready
#   broker.sh stop                   SIGTERM each node, wait up to 30 s, then SIGKILL
#   broker.sh create-topic NAME [PARTITIONS] [REPLICATION]
#   broker.sh kill-node N            SIGKILL node N (1..3)
#   broker.sh start-node N           restart node N on its data, wait until it serves
#   broker.sh leader TOPIC PARTITION print the node id leading that partition
#   broker.sh logs [LINES]           tail of each node's log
#   broker.sh status                 which nodes run
#   broker.sh env                    print env.sh
#   broker.sh fetch                  only fetch the jars
#   broker.sh deps                   apt-get install the Debian packages this script needs, if missing
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KDIR=${PRODUCERS_KAFKA_DIR:-/tmp/producers-kafka}
POM="$SCRIPT_DIR/pom.xml"
PY=${PRODUCERS_KAFKA_PYTHON:-/usr/bin/python3} # Debian's python3 has confluent_kafka
JAVA_BIN=${JAVA_HOME:+$JAVA_HOME/bin/}java
HEAP_OPTS=${PRODUCERS_KAFKA_HEAP:--Xms256m -Xmx512m}
# 3 = Kafka 3.9.x (default), 4 = Kafka 4.4.0: see pom.xml for why 3 is the default
KAFKA_LINE=${PRODUCERS_KAFKA_LINE:-3}
[[ $KAFKA_LINE == 3 || $KAFKA_LINE == 4 ]] || { echo "PRODUCERS_KAFKA_LINE must be 3 or 4" >&2; exit 2; }
READY_TIMEOUT=${PRODUCERS_KAFKA_READY_TIMEOUT:-90}
STOP_TIMEOUT=30
# a killed node is fenced (and its partitions get new leaders) 1-2 times this after it died
SESSION_MS=${PRODUCERS_KAFKA_SESSION_MS:-4000}

PLAIN_USER=alice
PLAIN_PASSWORD=alice-secret
SCRAM_USER=bob
SCRAM_PASSWORD=bob-secret
STORE_PASSWORD=producers-test

log() { printf '[broker.sh] %s\n' "$*" >&2; }
die() { printf '[broker.sh] error: %s\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }

# ---------------------------------------------------------------- layout

# ports: single node 19092/19093/19094; three nodes 19100+10*i+{2,3,4};
# PRODUCERS_KAFKA_PORT_OFFSET moves them all (with PRODUCERS_KAFKA_DIR, a
# second cluster runs beside the first)
PORT_OFFSET=${PRODUCERS_KAFKA_PORT_OFFSET:-0}
[[ $PORT_OFFSET =~ ^[0-9]+$ ]] || die "PRODUCERS_KAFKA_PORT_OFFSET must be a number, got '$PORT_OFFSET'"
port_base() { # NODES I
  if [[ $1 == 1 ]]; then echo $((19090 + PORT_OFFSET)); else echo $((19100 + 10 * $2 + PORT_OFFSET)); fi
}
plain_port() { echo $(($(port_base "$1" "$2") + 2)); }
sasl_port() { echo $(($(port_base "$1" "$2") + 3)); }
ctrl_port() { echo $(($(port_base "$1" "$2") + 4)); }

node_conf() { echo "$KDIR/config/node-$1.properties"; }
node_log() { echo "$KDIR/logs/node-$1.log"; }
node_pidfile() { echo "$KDIR/pids/node-$1.pid"; }

# the number of nodes of the running (or last) cluster
cluster_nodes() {
  [[ -f $KDIR/env.sh ]] || die "no cluster: $KDIR/env.sh is missing (run: $0 start)"
  local n
  n=$(sed -n 's/^KAFKA_NODES=//p' "$KDIR/env.sh")
  [[ $n == 1 || $n == 3 ]] || die "bad KAFKA_NODES in $KDIR/env.sh"
  echo "$n"
}

check_node_arg() { # NODES N
  [[ $2 =~ ^[0-9]+$ ]] && (($2 >= 1 && $2 <= $1)) || die "node must be 1..$1, got '$2'"
}

# --------------------------------------------------------------- processes

# prints the pid of node N if that process runs and is our broker
node_pid() {
  local f pid
  f=$(node_pidfile "$1")
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # guard against a reused pid: the command line must name this node's config
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "kafka.Kafka $(node_conf "$1")" || return 1
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# true when the broker on PORT answers a metadata request that lists broker
# ID and at least WANT brokers (fenced brokers are not listed)
broker_serves() { # PORT ID WANT
  local out
  out=$(kcat -b "127.0.0.1:$1" -L -J -m 2 2>/dev/null) || return 1
  # kcat -J: {"brokers":[{"id":1,"name":"127.0.0.1:19112"},...],...}
  grep -qE "\"id\":[[:space:]]*$2[,}]" <<<"$out" || return 1
  (($(grep -oE '"name":[[:space:]]*"[^"]*:[0-9]+"' <<<"$out" | sort -u | wc -l) >= $3))
}

launch_node() { # NODES N
  local n=$1 i=$2 conf logf pidf
  conf=$(node_conf "$i")
  logf=$(node_log "$i")
  pidf=$(node_pidfile "$i")
  rm -f "$pidf"
  # setsid: own session, so the broker outlives this script and ignores the
  # terminal's signals; the inner shell writes its pid, then becomes java.
  # shellcheck disable=SC2086
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pidf" \
    "$JAVA_BIN" $HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    "${LOG_OPTS[@]}" -cp "$LIB_DIR/*" kafka.Kafka "$conf" \
    </dev/null >>"$logf" 2>&1 &
  local t=0
  while [[ ! -s $pidf ]] && ((t < 50)); do sleep 0.1; t=$((t + 1)); done
  [[ -s $pidf ]] || die "node $i did not start (no pid file)"
}

# wait until node I serves client requests and sees WANT brokers
wait_node() { # NODES I WANT DEADLINE_MS
  local n=$1 i=$2 want=$3 deadline=$4 port
  port=$(plain_port "$n" "$i")
  while :; do
    if ! node_pid "$i" >/dev/null; then
      log "node $i exited during start-up; tail of $(node_log "$i"):"
      tail -n 40 "$(node_log "$i")" >&2 || true
      return 1
    fi
    if port_open "$port" && broker_serves "$port" "$i" "$want"; then
      return 0
    fi
    if (($(now_ms) > deadline)); then
      log "node $i not ready after ${READY_TIMEOUT}s; tail of $(node_log "$i"):"
      tail -n 40 "$(node_log "$i")" >&2 || true
      return 1
    fi
    sleep 0.3
  done
}

stop_all() {
  [[ -d $KDIR/pids ]] || return 0
  local f i pid pids=() ids=()
  for f in "$KDIR"/pids/node-*.pid; do
    [[ -e $f ]] || continue
    i=${f##*/node-}
    i=${i%.pid}
    if pid=$(node_pid "$i"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
      ids+=("$i")
    fi
    rm -f "$f"
  done
  ((${#pids[@]})) || return 0
  log "stopping node(s) ${ids[*]} (pids ${pids[*]})"
  # all nodes got SIGTERM at once (a three-node quorum then shuts down in
  # parallel); each gets up to STOP_TIMEOUT seconds before SIGKILL
  local k deadline
  for k in "${!pids[@]}"; do
    pid=${pids[$k]}
    deadline=$(($(now_ms) + STOP_TIMEOUT * 1000))
    while kill -0 "$pid" 2>/dev/null && (($(now_ms) < deadline)); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      log "node ${ids[$k]} (pid $pid) still runs after ${STOP_TIMEOUT}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
  done
}

# ------------------------------------------------------------------ jars

lib_dir() {
  local h
  h=$( (cat "$POM"; echo "line=$KAFKA_LINE") | sha256sum | cut -c1-12)
  echo "${PRODUCERS_KAFKA_LIB:-${XDG_CACHE_HOME:-$HOME/.cache}/producers-kafka/lib-kafka$KAFKA_LINE-$h}"
}

lib_complete() {
  [[ -f $LIB_DIR/.complete ]] || return 1
  local j
  while read -r j; do [[ -f $LIB_DIR/$j ]] || return 1; done <"$LIB_DIR/.complete"
}

fetch_jars() {
  LIB_DIR=$(lib_dir)
  if lib_complete; then
    log "jars: $LIB_DIR (complete, no fetch)"
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
  log "jars: copying Kafka and its runtime dependencies to $LIB_DIR"
  rm -rf "$LIB_DIR"
  mkdir -p "$LIB_DIR"
  local args=(-B -q --no-transfer-progress -f "$POM" "-Dkafka.line=$KAFKA_LINE" dependency:copy-dependencies
    -DincludeScope=runtime "-DoutputDirectory=$LIB_DIR")
  local out
  # offline first: when ~/.m2 holds everything this asks no registry at all
  if ! out=$(mvn -o "${args[@]}" 2>&1); then
    out=$(mvn "${args[@]}" 2>&1) || { printf '%s\n' "$out" >&2; die "mvn could not fetch the Kafka jars"; }
  fi
  ls "$LIB_DIR"/kafka_2.13-*.jar >/dev/null 2>&1 || die "no kafka_2.13 jar in $LIB_DIR"
  (cd "$LIB_DIR" && ls -1 -- *.jar) >"$LIB_DIR/.complete.tmp"
  mv "$LIB_DIR/.complete.tmp" "$LIB_DIR/.complete"
}

kafka_version() {
  local j
  j=$(cd "$LIB_DIR" && ls kafka_2.13-*.jar | head -n 1)
  j=${j#kafka_2.13-}
  echo "${j%.jar}"
}

# ------------------------------------------------------------------- TLS

make_certs() {
  local d=$KDIR/certs
  mkdir -p "$d"
  command -v openssl >/dev/null || die "openssl not found"
  # CA
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
    -subj "/CN=producers-test-ca" -keyout "$d/ca.key" -out "$d/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  # broker key and certificate: CN and SAN localhost, IP 127.0.0.1
  openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=localhost" \
    -keyout "$d/broker.key" -out "$d/broker.csr" 2>/dev/null
  cat >"$d/broker.ext" <<'EOF'
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
EOF
  openssl x509 -req -in "$d/broker.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$d/broker.ext" \
    -out "$d/broker.pem" 2>/dev/null
  # PKCS12 keystore with the key, its certificate and the CA chain
  openssl pkcs12 -export -name broker -inkey "$d/broker.key" -in "$d/broker.pem" \
    -certfile "$d/ca.pem" -out "$d/broker.p12" -passout "pass:$STORE_PASSWORD"
  openssl verify -CAfile "$d/ca.pem" "$d/broker.pem" >/dev/null || die "broker certificate does not verify"
}

# ---------------------------------------------------------------- config

# both files are written: Kafka 3.9 reads the log4j 1 one (reload4j), Kafka 4.x
# the Log4j2 one; each flag is ignored by the other backend
log_opts() {
  LOG_OPTS=(-Dlog4j.configuration="file:$KDIR/config/log4j.properties"
    -Dlog4j2.configurationFile="$KDIR/config/log4j2.properties")
}
log_opts

write_log4j() {
  cat >"$KDIR/config/log4j.properties" <<'EOF'
# Broker logs go to stdout, which broker.sh sends to logs/node-N.log
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.authorizer.logger=WARN
log4j.logger.org.apache.kafka.clients=WARN
log4j.logger.org.apache.kafka.common.config.AbstractConfig=WARN
EOF
  cat >"$KDIR/config/log4j2.properties" <<'EOF'
# Broker logs go to stdout, which broker.sh sends to logs/node-N.log
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
EOF
}

write_server_properties() { # NODES I
  local n=$1 i=$2 voters="" j rf isr
  for ((j = 1; j <= n; j++)); do
    voters+="${voters:+,}$j@127.0.0.1:$(ctrl_port "$n" "$j")"
  done
  if [[ $n == 1 ]]; then rf=1 isr=1; else rf=3 isr=2; fi
  cat >"$(node_conf "$i")" <<EOF
# written by scripts/kafka/broker.sh
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$(plain_port "$n" "$i"),SASL_SSL://127.0.0.1:$(sasl_port "$n" "$i"),CONTROLLER://127.0.0.1:$(ctrl_port "$n" "$i")
advertised.listeners=PLAINTEXT://127.0.0.1:$(plain_port "$n" "$i"),SASL_SSL://localhost:$(sasl_port "$n" "$i")
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$KDIR/data/node-$i

# SASL_SSL: PLAIN (users in the JAAS line), SCRAM-SHA-512 (users in the
# metadata log, added by StorageTool format --add-scram) and OAUTHBEARER
# (Kafka's built-in validator of unsecured JWTs: alg none, sub, exp)
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512,OAUTHBEARER
listener.name.sasl_ssl.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512,OAUTHBEARER
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$PLAIN_USER="$PLAIN_PASSWORD";
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$KDIR/certs/broker.p12
ssl.keystore.password=$STORE_PASSWORD
ssl.key.password=$STORE_PASSWORD
ssl.client.auth=none

# topics
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=5
group.initial.rebalance.delay.ms=0

# a small footprint and quick failover for tests
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=$SESSION_MS
controller.quorum.election.timeout.ms=1000
controller.quorum.fetch.timeout.ms=2000
EOF
  if [[ $KAFKA_LINE == 4 ]]; then
    printf 'share.coordinator.state.topic.replication.factor=%s\nshare.coordinator.state.topic.min.isr=%s\n' \
      "$rf" "$isr" >>"$(node_conf "$i")"
  fi
}

write_env() { # NODES
  local n=$1 i boot="" sboot=""
  for ((i = 1; i <= n; i++)); do
    boot+="${boot:+,}127.0.0.1:$(plain_port "$n" "$i")"
    sboot+="${sboot:+,}localhost:$(sasl_port "$n" "$i")"
  done
  cat >"$KDIR/env.sh.tmp" <<EOF
# written by scripts/kafka/broker.sh start; one KEY=value a line, no quoting
KAFKA_NODES=$n
KAFKA_PORT_OFFSET=$PORT_OFFSET
KAFKA_VERSION=$(kafka_version)
KAFKA_BOOTSTRAP=$boot
KAFKA_SASL_BOOTSTRAP=$sboot
KAFKA_CA=$KDIR/certs/ca.pem
KAFKA_PLAIN_USER=$PLAIN_USER
KAFKA_PLAIN_PASSWORD=$PLAIN_PASSWORD
KAFKA_SCRAM_MECHANISM=SCRAM-SHA-512
KAFKA_SCRAM_USER=$SCRAM_USER
KAFKA_SCRAM_PASSWORD=$SCRAM_PASSWORD
KAFKA_OAUTHBEARER=unsecured-jwt
KAFKA_LOG_DIR=$KDIR/logs
KAFKA_DIR=$KDIR
KAFKA_LIB_DIR=$LIB_DIR
KAFKA_BROKER_SH=$SCRIPT_DIR/broker.sh
export KAFKA_NODES KAFKA_PORT_OFFSET KAFKA_VERSION KAFKA_BOOTSTRAP KAFKA_SASL_BOOTSTRAP KAFKA_CA KAFKA_PLAIN_USER KAFKA_PLAIN_PASSWORD KAFKA_SCRAM_MECHANISM KAFKA_SCRAM_USER KAFKA_SCRAM_PASSWORD KAFKA_OAUTHBEARER KAFKA_LOG_DIR KAFKA_DIR KAFKA_LIB_DIR KAFKA_BROKER_SH
EOF
  mv "$KDIR/env.sh.tmp" "$KDIR/env.sh"
}

# -------------------------------------------------------------- commands

sasl_probe() { # NODES MECHANISM USER PASSWORD
  if ! kcat -b "localhost:$(sasl_port "$1" 1)" -L -m 5 -X broker.address.family=v4 \
    -X security.protocol=SASL_SSL -X "sasl.mechanisms=$2" \
    -X "sasl.username=$3" -X "sasl.password=$4" \
    -X "ssl.ca.location=$KDIR/certs/ca.pem" >/dev/null 2>"$KDIR/logs/sasl-probe.log"; then
    cat "$KDIR/logs/sasl-probe.log" >&2
    tail -n 40 "$(node_log 1)" >&2 || true
    stop_all
    die "the SASL_SSL listener does not accept $3 with $2"
  fi
}

# an OAUTHBEARER login with librdkafka's own unsecured JWT (kcat)
oauth_probe() { # NODES
  if ! kcat -b "localhost:$(sasl_port "$1" 1)" -L -m 5 -X broker.address.family=v4 \
    -X security.protocol=SASL_SSL -X sasl.mechanisms=OAUTHBEARER \
    -X enable.sasl.oauthbearer.unsecure.jwt=true -X sasl.oauthbearer.config=principal=probe \
    -X "ssl.ca.location=$KDIR/certs/ca.pem" >/dev/null 2>"$KDIR/logs/oauth-probe.log"; then
    cat "$KDIR/logs/oauth-probe.log" >&2
    tail -n 40 "$(node_log 1)" >&2 || true
    stop_all
    die "the SASL_SSL listener does not accept an unsecured JWT with OAUTHBEARER"
  fi
}

need() { command -v "$1" >/dev/null || die "$1 not found (run: $0 deps)"; }

cmd_start() {
  local n=1
  while (($#)); do
    case $1 in
      --nodes) n=${2:-}; shift 2 || die "--nodes needs a value" ;;
      --nodes=*) n=${1#--nodes=}; shift ;;
      *) die "start: unknown argument '$1'" ;;
    esac
  done
  [[ $n == 1 || $n == 3 ]] || die "--nodes must be 1 or 3"
  need kcat
  need "$JAVA_BIN"
  local t0 i p
  t0=$(now_ms)

  stop_all
  local t_stop
  t_stop=$(now_ms)
  for ((i = 1; i <= n; i++)); do
    for p in $(plain_port "$n" "$i") $(sasl_port "$n" "$i") $(ctrl_port "$n" "$i"); do
      ! port_open "$p" || die "port $p on 127.0.0.1 is already in use"
    done
  done

  fetch_jars
  local t_jars
  t_jars=$(now_ms)

  rm -rf "$KDIR"
  mkdir -p "$KDIR"/{config,data,logs,pids,certs}
  make_certs
  write_log4j
  for ((i = 1; i <= n; i++)); do write_server_properties "$n" "$i"; done

  # format every node's storage with one cluster id and the SCRAM user
  local cid
  cid=$("$JAVA_BIN" -cp "$LIB_DIR/*" "${LOG_OPTS[@]}" \
    kafka.tools.StorageTool random-uuid 2>>"$KDIR/logs/format.log" | tail -n 1)
  [[ -n $cid ]] || die "StorageTool random-uuid printed nothing (see $KDIR/logs/format.log)"
  # the format runs in parallel: each is a JVM start of ~1-2 s
  local fpids=()
  for ((i = 1; i <= n; i++)); do
    "$JAVA_BIN" -cp "$LIB_DIR/*" "${LOG_OPTS[@]}" \
      kafka.tools.StorageTool format -t "$cid" -c "$(node_conf "$i")" \
      --add-scram "SCRAM-SHA-512=[name=$SCRAM_USER,password=$SCRAM_PASSWORD]" \
      >>"$KDIR/logs/format.log" 2>&1 &
    fpids+=($!)
  done
  for p in "${fpids[@]}"; do
    wait "$p" || { tail -n 30 "$KDIR/logs/format.log" >&2; die "StorageTool format failed"; }
  done
  local t_fmt
  t_fmt=$(now_ms)

  for ((i = 1; i <= n; i++)); do launch_node "$n" "$i"; done
  local deadline=$(($(now_ms) + READY_TIMEOUT * 1000))
  for ((i = 1; i <= n; i++)); do
    wait_node "$n" "$i" "$n" "$deadline" || { stop_all; exit 1; }
  done
  write_env "$n"

  # SASL_SSL logins, so a broken TLS or SASL setup fails here, not in a test
  sasl_probe "$n" PLAIN "$PLAIN_USER" "$PLAIN_PASSWORD"
  oauth_probe "$n"
  if [[ $KAFKA_LINE == 3 ]]; then
    sasl_probe "$n" SCRAM-SHA-512 "$SCRAM_USER" "$SCRAM_PASSWORD"
  else
    log "note: Kafka 4.x rejects SCRAM logins from librdkafka < 2.6.1 (kcat here: librdkafka $(kcat -V 2>&1 | sed -n 's/.*librdkafka \([0-9.]*\) .*/\1/p')); SCRAM not probed"
  fi

  local t1 pids=""
  t1=$(now_ms)
  for ((i = 1; i <= n; i++)); do pids+=" $(node_pid "$i")"; done
  log "$n node(s) ready in $(((t1 - t0) / 1000)).$(((t1 - t0) % 1000 / 100))s (stop old $((t_stop - t0)) ms, jars $((t_jars - t_stop)) ms, certs+format $((t_fmt - t_jars)) ms, JVM to ready $((t1 - t_fmt)) ms); pids:$pids"
  log "env: $KDIR/env.sh"
  cat "$KDIR/env.sh"
}

cmd_stop() {
  stop_all
  log "stopped"
}

cmd_create_topic() {
  local name=${1:-} parts=${2:-1} rf=${3:-} n
  [[ -n $name ]] || die "usage: $0 create-topic NAME [PARTITIONS] [REPLICATION]"
  n=$(cluster_nodes)
  [[ -n $rf ]] || rf=$n
  # shellcheck disable=SC1091
  source "$KDIR/env.sh"
  "$PY" - "$KAFKA_BOOTSTRAP" "$name" "$parts" "$rf" <<'EOF'
import sys, time
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

boot, name, parts, rf = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
admin = AdminClient({"bootstrap.servers": boot, "broker.address.family": "v4"})
fut = admin.create_topics([NewTopic(name, num_partitions=parts, replication_factor=rf)],
                          operation_timeout=30, request_timeout=30)[name]
try:
    fut.result(timeout=40)
except KafkaException as e:
    err = e.args[0]
    if err.name() != "TOPIC_ALREADY_EXISTS":
        sys.exit("create-topic %s: %s" % (name, err))
    print("create-topic: %s already exists, left as it is" % name, file=sys.stderr)
    parts = 1

deadline = time.monotonic() + 30
while True:
    try:
        md = admin.list_topics(topic=name, timeout=5).topics.get(name)
        if (md is not None and md.error is None and len(md.partitions) >= parts
                and all(p.leader >= 0 and p.error is None for p in md.partitions.values())):
            print("%s: %d partition(s), leaders %s" % (
                name, len(md.partitions),
                ",".join("%d:%d" % (k, p.leader) for k, p in sorted(md.partitions.items()))))
            break
    except KafkaException:
        pass
    if time.monotonic() > deadline:
        sys.exit("create-topic %s: partitions have no leader after 30 s" % name)
    time.sleep(0.2)
EOF
}

cmd_kill_node() {
  local n i=${1:-} pid
  n=$(cluster_nodes)
  check_node_arg "$n" "$i"
  pid=$(node_pid "$i") || die "node $i is not running"
  kill -KILL "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  rm -f "$(node_pidfile "$i")"
  log "node $i (pid $pid) killed"
}

cmd_start_node() {
  local n i=${1:-} t0
  n=$(cluster_nodes)
  check_node_arg "$n" "$i"
  ! node_pid "$i" >/dev/null || die "node $i is already running"
  ! port_open "$(plain_port "$n" "$i")" || die "port $(plain_port "$n" "$i") is in use"
  # the jars the cluster was started with, whatever PRODUCERS_KAFKA_LINE says now
  LIB_DIR=$(sed -n 's/^KAFKA_LIB_DIR=//p' "$KDIR/env.sh")
  lib_complete || die "jars missing in $LIB_DIR"
  t0=$(now_ms)
  printf '\n[broker.sh] ---- restart of node %s ----\n' "$i" >>"$(node_log "$i")"
  launch_node "$n" "$i"
  wait_node "$n" "$i" 1 $(($(now_ms) + READY_TIMEOUT * 1000)) || exit 1
  log "node $i (pid $(node_pid "$i")) serves again after $(($(now_ms) - t0)) ms"
}

cmd_leader() {
  local topic=${1:-} part=${2:-} n i port out
  [[ -n $topic && $part =~ ^[0-9]+$ ]] || die "usage: $0 leader TOPIC PARTITION"
  n=$(cluster_nodes)
  for ((i = 1; i <= n; i++)); do
    node_pid "$i" >/dev/null || continue
    port=$(plain_port "$n" "$i")
    out=$(kcat -b "127.0.0.1:$port" -L -J -m 3 -t "$topic" 2>/dev/null) || continue
    if KCAT_JSON=$out "$PY" - "$topic" "$part" <<'EOF'; then return 0; fi
import json, os, sys
md = json.loads(os.environ["KCAT_JSON"])
topic, part = sys.argv[1], int(sys.argv[2])
for t in md.get("topics", []):
    if t.get("topic") == topic and not t.get("err"):
        for p in t.get("partitions", []):
            if p.get("partition") == part and p.get("leader", -1) >= 0 and not p.get("err"):
                print(p["leader"]); sys.exit(0)
sys.exit(1)
EOF
  done
  die "no leader known for $topic/$part"
}

cmd_logs() {
  local lines=${1:-60} f
  shopt -s nullglob
  for f in "$KDIR"/logs/node-*.log; do
    printf '==== %s (last %s lines) ====\n' "$f" "$lines"
    tail -n "$lines" "$f"
  done
}

cmd_status() {
  local n i pid
  n=$(cluster_nodes)
  for ((i = 1; i <= n; i++)); do
    if pid=$(node_pid "$i"); then
      echo "node $i: running, pid $pid, PLAINTEXT 127.0.0.1:$(plain_port "$n" "$i"), rss $(awk '/VmRSS/{print $2" "$3}' "/proc/$pid/status")"
    else
      echo "node $i: stopped"
    fi
  done
}

cmd_deps() {
  local want=() c
  command -v kcat >/dev/null || want+=(kcat)
  command -v mvn >/dev/null || want+=(maven)
  command -v openssl >/dev/null || want+=(openssl)
  command -v java >/dev/null || want+=(openjdk-17-jdk-headless)
  "$PY" -c 'import confluent_kafka' 2>/dev/null || want+=(python3-confluent-kafka)
  ((${#want[@]})) || { log "all dependencies present"; return 0; }
  log "installing: ${want[*]}"
  c=(apt-get install -y --no-install-recommends "${want[@]}")
  DEBIAN_FRONTEND=noninteractive "${c[@]}" || { apt-get update && DEBIAN_FRONTEND=noninteractive "${c[@]}"; }
}

usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

cmd=${1:-}
shift || true
# the commands after start act on the cluster it started, at its ports
if [[ $cmd != start && -z ${PRODUCERS_KAFKA_PORT_OFFSET:-} && -f $KDIR/env.sh ]]; then
  PORT_OFFSET=$(sed -n 's/^KAFKA_PORT_OFFSET=//p' "$KDIR/env.sh")
  PORT_OFFSET=${PORT_OFFSET:-0}
fi
case $cmd in
  start) cmd_start "$@" ;;
  stop) cmd_stop ;;
  create-topic) cmd_create_topic "$@" ;;
  kill-node) cmd_kill_node "$@" ;;
  start-node) cmd_start_node "$@" ;;
  leader) cmd_leader "$@" ;;
  logs) cmd_logs "$@" ;;
  status) cmd_status ;;
  env) cat "$KDIR/env.sh" ;;
  fetch) fetch_jars; echo "$LIB_DIR" ;;
  deps) cmd_deps ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
