// Package testhooks plants known bugs in ringlog, for tests that prove the
// crash checker catches them (fuzz/planted_test.go), and switches off what a
// test's setup needs off. Every hook is off unless a test turns it on;
// production code only ever reads them.
package testhooks

import "sync/atomic"

var (
	// TrustJournalTail makes recovery take the journal's tail as is,
	// without verifying the records it covers.
	TrustJournalTail atomic.Bool
	// UncheckedPadding makes the writer leave padding markers without a
	// checksum, and readers accept them unverified.
	UncheckedPadding atomic.Bool
	// CollectLive makes the collector advance the head over the first live
	// record it meets, as if it were garbage.
	CollectLive atomic.Bool
	// ReplayTornJournal makes journal recovery replay a batch whose
	// checksum does not match.
	ReplayTornJournal atomic.Bool
	// WalkFromSynced makes recovery start its walk at the tail record's
	// synced position even when the head is past it, where the next lap
	// may have overwritten the frames.
	WalkFromSynced atomic.Bool
	// ExactTail makes each group commit write the tail itself, not a
	// bound ahead of it: a test can then count on every group writing to
	// the journal.
	ExactTail atomic.Bool
)
