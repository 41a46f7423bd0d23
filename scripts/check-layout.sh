#!/usr/bin/env bash
# check-layout.sh [SRC]: the C files' layout rules (README "Layout"),
# checked on the #include "..." graph of SRC (default: src/):
# - src/core/ includes no transport: no "kafka/..." (or any folder but
#   core/) and no <librdkafka/...>;
# - the graph between files has no cycle: a file's .c and .h are one node
#   (core/log.c and core/log.h: core/log), an include is an edge, and no
#   node reaches itself (tsort finds the loops). A header without a .c
#   (base.h, a folder's private header) declares and calls nothing: an
#   include of it counts as the includes it makes.
# Prints what breaks a rule and exits 1; quiet and 0 when both hold.
# spec/tools/layout_spec.lua runs it, on src/ and on broken copies.
set -euo pipefail
SRC=${1:-$(dirname "$0")/../src}
cd "$SRC"
status=0

leaks=$(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*(<librdkafka/|"[^"]*/)' core/*.[ch] |
          grep -vE '#[[:space:]]*include[[:space:]]*"(core|spool)/' || true)
if [[ -n $leaks ]]; then
  echo "check-layout: src/core includes a transport:" >&2
  echo "$leaks" >&2
  status=1
fi

# The include graph: for each file, the nodes it includes (paths without
# .c/.h; "json_double.h" is the one beside the file).
declare -A includes has_c
for f in *.[ch] */*.[ch]; do
  [[ -e $f ]] || continue
  node=${f%.[ch]}
  [[ $f == *.c ]] && has_c[$node]=1
  while read -r to; do
    [[ -n $to ]] || continue
    [[ $to == */* ]] || to=$(dirname "$f")/$to
    includes[$node]+=" ${to#./}"
  done < <(sed -nE 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"([^"]+)\.h".*/\1/p' "$f")
done

# Edges "from to" between nodes that hold code (a .c): a header of its own
# (a private header, base.h) holds declarations only, so an include of it
# stands for what it includes in turn. Self-edges are left out.
reach() {       # reach NODE SEEN...: the code nodes NODE's includes lead to
  local n=$1 to; shift
  for to in ${includes[$n]:-}; do
    [[ " $* " == *" $to "* ]] && continue
    if [[ -n ${has_c[$to]:-} ]]; then echo "$to"; else reach "$to" "$@" "$to"; fi
  done
}
edges=$(for node in "${!has_c[@]}"; do
  reach "$node" "$node" | sort -u | while read -r to; do
    [[ $to != "$node" ]] && echo "$node $to"
  done
done | sort -u)
if ! loops=$(echo "$edges" | tsort 2>&1 >/dev/null) || [[ -n $loops ]]; then
  echo "check-layout: the #include graph has a cycle:" >&2
  echo "$loops" | sed -n 's/^tsort: //p' >&2
  status=1
fi
exit $status
