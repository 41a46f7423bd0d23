#!/usr/bin/env bash
# The README's second command: installs what the tests need, builds,
# runs every spec through CTest, and ends with "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh

log=$(mktemp)
status=0
(cd build && ctest -V) 2>&1 | tee "$log" || status=$?

# Sum busted's per-file summaries ("N successes / N failures / N errors")
# so the closing line counts test cases, not spec files; a spec file that
# crashed before its summary counts through ctest's own tally.
read -r passed failed < <(awk '
  / successes \/ [0-9]+ failures \/ [0-9]+ errors/ {
    for (i = 1; i <= NF; i++) {
      if ($(i+1) == "successes") p += $i
      if ($(i+1) == "failures" || $(i+1) == "errors") f += $i
    }
  }
  END { print p + 0, f + 0 }' "$log")
ctest_failed=$(sed -nE 's/.* ([0-9]+) tests? failed out of [0-9]+.*/\1/p' "$log" | tail -1)
rm -f "$log"
if [ -z "$ctest_failed" ]; then
  echo "test.sh: ctest printed no summary"
  ctest_failed=1
fi
if [ "$failed" -eq 0 ] && [ "$ctest_failed" -gt 0 ]; then
  failed=$ctest_failed
fi
echo "$passed passed, $failed failed"
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
