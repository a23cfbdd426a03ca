#!/usr/bin/env bash
# Runs every native Go fuzz target in the module for $FUZZTIME each.
# go test -fuzz takes one target in one package at a time, hence the loop.
set -euo pipefail
FUZZTIME=${FUZZTIME:-60s}
found=0
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    found=$((found + 1))
    echo "fuzz: $pkg $target for $FUZZTIME"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg"
  done
done
echo "fuzz: $found targets run"
