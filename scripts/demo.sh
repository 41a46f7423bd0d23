#!/usr/bin/env bash
# The README's first command: installs what it needs, builds, and runs
# examples/demo.lua against librdkafka's built-in mock cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh >/dev/null
LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" lua5.4 examples/demo.lua
