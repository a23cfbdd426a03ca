# ringlog — see README.md. Every target works on a fresh machine with Go 1.26.
GO        ?= go
FUZZTIME  ?= 60s
SHORTFUZZ ?= 3s
BENCHTIME ?= 1s
CRASHSEED   ?= 1
CRASHSTATES ?= 1000000
SHORTCRASH  ?= 20000
STATICCHECK_VERSION ?= v0.8.2

.PHONY: all test vet race planted crashtest-short fuzz-short fuzz crashtest demo bench bench-micro perf lint fmt

all: test

## test: vet, race-enabled tests, a short crash exploration and a short
## fuzz/property pass (what CI runs)
test: vet race planted crashtest-short fuzz-short

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l . | grep -v '^bench/')" || { echo "gofmt needed:"; gofmt -l . ; exit 1; }

race:
	$(GO) test -race -count=1 ./...

## planted: the crash checker catches each planted bug (fuzz.TestPlantedBugs,
## built without the race detector)
planted:
	$(GO) test -count=1 -run TestPlantedBugs ./fuzz/

## crashtest: deterministic crash-state exploration (seeded histories, power
## cuts, crash images, recovery checked against every invariant); prints
## "crash states explored: N, violations: 0" and fails on any violation
crashtest:
	@$(GO) run ./fuzz/cmd/crashtest -states $(CRASHSTATES) -seed $(CRASHSEED)

## crashtest-short: the same, SHORTCRASH states, without the race detector
crashtest-short:
	@$(GO) run ./fuzz/cmd/crashtest -states $(SHORTCRASH) -seed $(CRASHSEED)

## fuzz-short: every native fuzz target for SHORTFUZZ each
fuzz-short:
	@FUZZTIME=$(SHORTFUZZ) bash scripts/fuzz.sh

## fuzz: every native fuzz target for FUZZTIME each (default 60s)
fuzz:
	@FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh

## demo: the quickstart on a temporary file
demo:
	$(GO) run ./examples/quickstart

## bench: ringlog next to tidwall/wal, rosedblabs/wal, raft-wal and the raw file,
## interleaved (bench/ is its own module); writes bench/results/. BENCHFLAGS
## passes flags, e.g. BENCHFLAGS="-duration 3s -rounds 5".
BENCHFLAGS ?=
bench:
	cd bench && $(GO) run . -out results $(BENCHFLAGS)

## bench-micro: go test benchmarks of device, wal and pipeline in one run
bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./device/ ./wal/ ./pipeline/

## perf: ringlog's performance goals as ratios to the raw device, each
## measured with the raw loop and the log interleaved round by round on one
## file, 12 rounds in a balanced order (pipeline BenchmarkTargets; about a minute)
perf:
	$(GO) test -run '^$$' -bench Targets -benchtime 1x ./pipeline/ -targets.rounds 12

## lint: staticcheck, installed by this target
lint:
	$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$$($(GO) env GOPATH)/bin/staticcheck ./...

fmt:
	gofmt -w .
