# results.sh - the RESULT-line helpers bench/run.sh and bench/nats/run.sh
# share (sourced, not run). A benchmark program prints one line
# "RESULT bench=.. sent=.. delivered=.. rate=.. ..."; run.sh keeps run NAME's
# in $WORK/NAME.result, round r's as $WORK/NAME.r.result, and $ROUNDS says
# how many rounds there were. The script that sources it defines say MESSAGE
# (a line on stderr).

# run NAME CMD...: runs one benchmark; its stderr goes to the terminal, its
# RESULT line is kept in $WORK/NAME.result (empty if it printed none).
run() {
  local name=$1; shift
  say "$name: $*"
  if "$@" >"$WORK/$name.out"; then :; else say "$name exited with status $?"; fi
  grep '^RESULT ' "$WORK/$name.out" | tail -n 1 >"$WORK/$name.result" || true
  cat "$WORK/$name.result" >&2
}

# field NAME KEY: a value from NAME's RESULT line, empty if absent.
field() {
  [[ -f $WORK/$1.result ]] || return 0
  tr ' ' '\n' <"$WORK/$1.result" | sed -n "s/^$2=//p"
}

# median NAME: copies the median run (by rate) of NAME.1..NAME.R to NAME.result,
# the fastest to NAME.best.result, and lists every round's rate in NAME.rounds.
median() {
  local name=$1 f picked
  : >"$WORK/$name.rounds"
  for f in "$WORK/$name".[0-9]*.result; do
    [[ -s $f ]] || continue
    echo "$(tr ' ' '\n' <"$f" | sed -n 's/^rate=//p') $f"
  done | sort -n >"$WORK/$name.sorted"
  [[ -s $WORK/$name.sorted ]] || return 0
  picked=$(awk '{ f[NR] = $2 } END { print f[int((NR + 1) / 2)] }' "$WORK/$name.sorted")
  cp "$picked" "$WORK/$name.result"
  cp "$(tail -n 1 "$WORK/$name.sorted" | cut -d ' ' -f 2)" "$WORK/$name.best.result"
  for f in "$WORK/$name".[0-9]*.result; do
    [[ -s $f ]] && thousands "$(tr ' ' '\n' <"$f" | sed -n 's/^rate=//p')" || echo failed
  done | paste -sd ' ' | sed 's/ /, /g' >"$WORK/$name.rounds"
}

# ratio NUM DEN: "x.xx" or "n/a".
ratio() {
  local n=$(field "$1" rate) d=$(field "$2" rate)
  if [[ -n $n && -n $d && $d != 0 ]]; then
    awk -v n="$n" -v d="$d" 'BEGIN { printf "%.2f", n / d }'
  else
    echo "n/a"
  fi
}

# round_ratios NUM DEN: the ratio of NUM's to DEN's msg/s in each round,
# "x.xx, y.yy, ..." (a round runs every client within seconds, so a slow
# spell of the machine weighs on both sides of its ratio).
round_ratios() {
  local r n d out=""
  for r in $(seq "$ROUNDS"); do
    n=$(field "$1.$r" rate) d=$(field "$2.$r" rate)
    if [[ -n $n && -n $d && $d != 0 ]]; then
      out+="${out:+, }$(awk -v n="$n" -v d="$d" 'BEGIN { printf "%.2f", n / d }')"
    else
      out+="${out:+, }n/a"
    fi
  done
  echo "$out"
}

# Thousands separators for an integer.
thousands() { awk -v x="$1" 'BEGIN { s = sprintf("%d", x); r = "";
  while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) }
  print s r }'; }

# row NAME LABEL: the table row of NAME's median run (see run.sh's table)
row() {
  local name=$1 label=$2
  if [[ ! -s $WORK/$name.result ]]; then
    local why="skipped"
    [[ -f $WORK/$name.1.out ]] && why="failed (no result)"
    printf '| %s | %s | | | | | | |\n' "$label" "$why"
    return
  fi
  local rss_mib
  rss_mib=$(awk -v k="$(field "$name" rss_kb)" 'BEGIN { printf "%.1f", k / 1024 }')
  printf '| %s | %s / %s | %s | %s | %s | %s | %s | %s |\n' "$label" \
    "$(thousands "$(field "$name" delivered)")" "$(thousands "$(field "$name" sent)")" \
    "$(field "$name" seconds)" "$(thousands "$(field "$name" rate)")" "$rss_mib" \
    "$(field "$name" cpu_main_us)" "$(field "$name" cpu_other_us)" \
    "$(cat "$WORK/$name.rounds")"
}

# publish_results FROM TO: the table written to TO (its folder made) and shown
publish_results() {
  mkdir -p "$(dirname "$2")"
  cp "$1" "$2"
  echo
  cat "$2"
  echo
  say "written to $2"
}
