#!/usr/bin/env bash
# Runs every native Go fuzz target in the module for $FUZZTIME each.
# go test -fuzz takes one target in one package at a time, hence the loop.
#
# Go 1.26's fuzz engine can fail a target just as -fuzztime runs out, with a
# bare "context deadline exceeded" and no failing input, when a worker is
# slow to stop (golang/go#75804, fixed in Go 1.27). Such a run is repeated
# once; if it ends the same way again it is reported and not counted as a
# failure. Anything else that fails, above all a run that wrote a failing
# input to testdata/fuzz, fails this script.
set -euo pipefail
FUZZTIME=${FUZZTIME:-60s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# deadline_only reports whether the failed run in $log failed with nothing
# but the fuzz engine's deadline message.
deadline_only() {
  grep -q 'Failing input written' "$log" && return 1
  grep -q '^panic:' "$log" && return 1
  # The lines that explain the failure: after "--- FAIL:" up to "FAIL".
  local why
  why=$(awk '/^--- FAIL:/ {on=1; next} /^(FAIL|exit status)/ {on=0} on' "$log" | sed 's/^[[:space:]]*//' | sort -u)
  [ "$why" = "context deadline exceeded" ]
}

found=0
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    found=$((found + 1))
    for attempt in 1 2; do
      echo "fuzz: $pkg $target for $FUZZTIME"
      if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg" >"$log" 2>&1; then
        cat "$log"
        break
      fi
      cat "$log"
      if ! deadline_only; then
        echo "fuzz: $target failed" >&2
        exit 1
      fi
      if [ "$attempt" = 1 ]; then
        echo "fuzz: $target stopped on the fuzz engine's deadline race (golang/go#75804) with no failing input; once more"
      else
        echo "fuzz: $target stopped on the deadline race twice, with no failing input either time: not a finding"
      fi
    done
  done
done
echo "fuzz: $found targets run"
