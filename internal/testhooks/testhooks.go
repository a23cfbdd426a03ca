// Package testhooks plants known bugs in ringlog, for tests that prove the
// crash checker catches them (fuzz/planted_test.go), switches off what a
// test's setup needs off, and tells a test of moments it has to wait for.
// Every hook is off unless a test turns it on; production code only ever
// reads them.
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
	// CancelPlaced makes an Append whose context ends report the context's
	// error even when its request already has a position, and so will be
	// written and may be durable.
	CancelPlaced atomic.Bool
	// ExactTail makes each group commit write the tail itself, not a
	// bound ahead of it: a test can then count on every group writing to
	// the journal.
	ExactTail atomic.Bool
	// CheckRuns makes the collector read each frame an allocator's run
	// describes (stages.FrameRuns) and panic if the device says otherwise:
	// tests and the crash checker turn it on to verify every run they see.
	CheckRuns atomic.Bool
	// SyncHandled, if set when a journal opens, is called by that
	// journal's committer each time it has dealt with a returned sync: the
	// moment a test waits for before it lets the next sync return, when
	// what it checks is that the order of returns makes no difference.
	SyncHandled atomic.Pointer[func()]
)
