package fuzz

import (
	"sync/atomic"
	"testing"

	"github.com/ringlog/ringlog/internal/testhooks"
)

// TestPlantedBugs proves the checker is not vacuous: with each known bug
// planted through its test hook, a seeded exploration must report a
// violation within a bounded number of crash states.
func TestPlantedBugs(t *testing.T) {
	for _, c := range []struct {
		name   string
		hook   *atomic.Bool
		kinds  string
		budget int64
	}{
		// Recovery that trusts the journal's tail without verifying the
		// records it covers: a crash image with the tail's journal
		// record but not the data shows garbage as records.
		{"TrustJournalTail", &testhooks.TrustJournalTail, "pipeline", 50_000},
		// Padding markers without their checksum.
		{"UncheckedPadding", &testhooks.UncheckedPadding, "pipeline", 50_000},
		// The collector advances the head past a live record.
		{"CollectLive", &testhooks.CollectLive, "pipeline", 50_000},
		// A torn journal batch replayed.
		{"ReplayTornJournal", &testhooks.ReplayTornJournal, "journal", 50_000},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.hook.Store(true)
			defer c.hook.Store(false)
			res := Explore(Options{Seed: 1, States: c.budget, Workers: 1, StopAtFirst: true, Kinds: c.kinds})
			if len(res.Violations) == 0 {
				t.Fatalf("with %s planted, %d crash states of %d histories showed no violation", c.name, res.States, res.Histories)
			}
			t.Logf("caught after %d crash states (%d histories): %s", res.States, res.Histories, res.Violations[0])
		})
	}
}
