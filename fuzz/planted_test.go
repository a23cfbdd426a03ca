// Built without the race detector only (make test runs it so, as target
// planted): which history catches a planted bug depends on goroutine
// interleaving, and under the detector, where a crash state costs some 8 ms
// instead of half of one, WalkFromSynced took from 4,852 to about 38,000 of
// its 50,000 states. The plants test the checker's power, which the race
// detector adds nothing to.

//go:build !race

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
		// records it covers: an image that kept the group's journal batch
		// but not its data makes Scan hit bytes that are no record.
		{"TrustJournalTail", &testhooks.TrustJournalTail, "pipeline", 50_000},
		// Padding markers without their checksum: the audit, which reads
		// the frames from head to durable tail straight from the device,
		// finds a marker whose checksum does not match.
		{"UncheckedPadding", &testhooks.UncheckedPadding, "pipeline", 50_000},
		// The head advanced past a live record: a Read of it (during the
		// history, or after a crash) says ErrCollected though the checker
		// never released it.
		{"CollectLive", &testhooks.CollectLive, "pipeline", 50_000},
		// A torn journal batch replayed. The log's batches fit in a sector
		// and cannot tear; a bare journal's multi-sector batches do, and
		// replaying a torn one leaves part of a transaction in the home
		// region.
		{"ReplayTornJournal", &testhooks.ReplayTornJournal, "journal", 50_000},
		// Recovery walking from a synced position the head has passed: a
		// huge record's lap overwrote the frames there before its new
		// tail bound reached the journal. The walk stops at once and Open
		// sets the tail below the head, which the checker reports.
		{"WalkFromSynced", &testhooks.WalkFromSynced, "pipeline", 50_000},
		// An Append whose context ends after its request was placed
		// reports the context's error anyway: the record it said was
		// never written shows up in a recovered log (or a Scan).
		{"CancelPlaced", &testhooks.CancelPlaced, "pipeline", 50_000},
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
