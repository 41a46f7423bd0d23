#!/usr/bin/env bash
# Mutation check (issue #26): mutates src/*.c and lua/producers/*.lua one
# change at a time in a copy of the checkout (build-mutate/), rebuilds the
# Lua 5.4 module there, runs the spec files that cover the mutated file
# (scripts/mutate/map.txt) and writes a markdown report (killed,
# survived, equivalent from scripts/mutate/known.txt). The checkout is
# never written. See docs/testing.md, "Mutation check", and
#   scripts/mutate.sh --help
# Default: --seed 26 --count 40, report in build-mutate/report.md.
set -euo pipefail
cd "$(dirname "$0")/.."
exec nice python3 scripts/mutate/mutate.py "$@"
