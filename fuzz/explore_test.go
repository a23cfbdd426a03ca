package fuzz

import (
	"testing"
)

// TestCrashExploration is a short run of the exploration make crashtest
// runs (fewer states under the race detector, which makes every recovery
// an order of magnitude slower; make test also runs 20,000 states without
// it).
func TestCrashExploration(t *testing.T) {
	states := int64(20_000)
	if raceEnabled {
		states = 1_500
	}
	res := Explore(Options{Seed: 2, States: states})
	for _, v := range res.Violations {
		t.Error(v)
	}
	if res.States < states {
		t.Errorf("explored %d crash states, want at least %d", res.States, states)
	}
	// The states explored must include the kinds the invariants are about.
	c := res.Coverage
	for name, n := range map[string]int64{
		"group commits unsynced": c.GroupCommit, "torn writes": c.Torn,
		"crashes mid-history": c.Reboots, "appends cancelled before placement": c.Cancelled,
		"appends cancelled after placement": c.CancelLost, "failed writes": c.Faults,
	} {
		if n == 0 {
			t.Errorf("no crash state with %s: %+v", name, c)
		}
	}
	t.Logf("crash states explored: %d in %d histories, violations: %d", res.States, res.Histories, len(res.Violations))
}
