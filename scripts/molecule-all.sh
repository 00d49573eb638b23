#!/usr/bin/env bash
# Every molecule scenario, in two lanes run side by side (most of a scenario's time is spent waiting on its
# containers, so two lanes take little more than the longer one). Each scenario's output goes to
# .molecule-logs/<scenario>.log and is printed whole when it ends; then one line counts them all.
#   LANES="cluster,split acme,releases,default" scripts/molecule-all.sh   other lanes (each scenario once)
# One scenario alone: molecule test -s NAME.
set -uo pipefail
cd "$(dirname "$0")/.."
LOGS=.molecule-logs
# lanes separated by spaces, scenarios within a lane by commas; about 20 minutes each on 2 cores
LANES=${LANES:-"cluster,split,acme releases,default"}

expected=$(ls -d molecule/*/molecule.yml | cut -d/ -f2 | sort)
listed=$(tr ' ,' '\n\n' <<<"$LANES" | sort)
if [ "$expected" != "$listed" ]; then
  echo "molecule-all: the lanes ($LANES) do not name every scenario once: $(tr '\n' ' ' <<<"$expected")" >&2
  exit 2
fi

rm -rf "$LOGS" && mkdir -p "$LOGS"

lane() {
  local scenario
  for scenario in ${1//,/ }; do
    local start=$SECONDS
    if molecule test -s "$scenario" >"$LOGS/$scenario.log" 2>&1; then
      echo "passed $((SECONDS - start))" >"$LOGS/$scenario.result"
    else
      echo "failed $((SECONDS - start))" >"$LOGS/$scenario.result"
    fi
    # printed whole, under one lock, so two lanes never interleave
    flock "$LOGS/.print" bash -c 'echo "### molecule $0: $(cat "$1")"; cat "$2"; echo "### molecule $0: $(cat "$1")"' \
      "$scenario" "$LOGS/$scenario.result" "$LOGS/$scenario.log"
  done
}

pids=()
for l in $LANES; do
  lane "$l" &
  pids+=($!)
done
wait "${pids[@]}"

passed=0 failed=0
for result in "$LOGS"/*.result; do
  read -r outcome seconds <"$result"
  echo "molecule $(basename "$result" .result): $outcome in ${seconds} s"
  if [ "$outcome" = passed ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
# a CI log keeps only its tail: repeat why each failed scenario failed after the counts
for result in "$LOGS"/*.result; do
  read -r outcome _ <"$result"
  [ "$outcome" = passed ] && continue
  scenario=$(basename "$result" .result)
  echo "### why molecule $scenario failed (its failed tasks; the whole log is printed above):"
  grep -E -A3 '^(fatal|failed): \[|^\[ERROR\]|^FAILED: ' "$LOGS/$scenario.log" | cut -c1-3000 | tail -40
done
echo "molecule: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
