# lib.sh - what bench/nats/run.sh and bench/nats/profile.sh share; sourced
# after they set WORK (a temporary folder), PY (the venv's python) and
# PRODUCERS_NATS_DIR / PRODUCERS_NATS_PORT_OFFSET (scripts/nats/server.sh).

# nats_cleanup_on_exit: on exit, even on failure or a signal, stops the
# servers scripts/nats/server.sh started and removes $WORK.
nats_cleanup_on_exit() {
  trap 'scripts/nats/server.sh stop >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# fresh_stream URL: the stream BENCH on bench.> made afresh (an empty store).
fresh_stream() {
  "$PY" scripts/nats/read.py --server "$1" --stream BENCH --delete >/dev/null 2>&1 || true
  "$PY" scripts/nats/read.py --server "$1" --stream BENCH --subjects 'bench.>' >/dev/null
}
