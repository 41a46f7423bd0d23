#!/usr/bin/env bash
# check-layout.sh [SRC]: the C files' layout rules (README "Layout"),
# checked on the #include "..." graph of SRC (default: src/):
# - src/core/ includes no transport: no "kafka/..." (or any folder but
#   core/) and no <librdkafka/...>;
# - the graph between files has no cycle: a file's .c and .h are one node
#   (core/log.c and core/log.h: core/log), an include is an edge, and no
#   node reaches itself (tsort finds the loops).
# Prints what breaks a rule and exits 1; quiet and 0 when both hold.
# spec/tools/layout_spec.lua runs it, on src/ and on broken copies.
set -euo pipefail
SRC=${1:-$(dirname "$0")/../src}
cd "$SRC"
status=0

leaks=$(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*(<librdkafka/|"[^"]*/)' core/*.[ch] |
          grep -vE '#[[:space:]]*include[[:space:]]*"core/' || true)
if [[ -n $leaks ]]; then
  echo "check-layout: src/core includes a transport:" >&2
  echo "$leaks" >&2
  status=1
fi

# Edges "from to" between nodes (paths without .c/.h), self-edges left out.
edges=$(for f in *.[ch] */*.[ch]; do
  [[ -e $f ]] || continue
  from=${f%.[ch]}
  sed -nE 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"([^"]+)\.h".*/\1/p' "$f" |
    while read -r to; do
      [[ $to == */* ]] || to=$(dirname "$f")/$to      # "json_double.h" beside it
      to=${to#./}
      [[ $to != "$from" ]] && echo "$from $to"
    done
done | sort -u)
if ! loops=$(echo "$edges" | tsort 2>&1 >/dev/null) || [[ -n $loops ]]; then
  echo "check-layout: the #include graph has a cycle:" >&2
  echo "$loops" | sed -n 's/^tsort: //p' >&2
  status=1
fi
exit $status
