package wal

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/ringlog/ringlog/device"
)

// TestSyncMakesOutsideWritesDurable: Journal.Sync is a barrier run in the
// caller's goroutine, one device sync and no write.
func TestSyncMakesOutsideWritesDurable(t *testing.T) {
	crash, f, j := faultyJournal(t, Options{DeferApply: true})
	data := bytes.Repeat([]byte{0x5a}, 4096)
	if _, err := f.WriteAt(data, 32<<10); err != nil {
		t.Fatal(err)
	}
	writes, syncs := f.Count(device.OpWrite), j.Stats().Syncs
	if err := j.Sync(); err != nil {
		t.Fatal(err)
	}
	if n := f.Count(device.OpWrite); n != writes {
		t.Errorf("Sync wrote %d times, want none", n-writes)
	}
	if n := j.Stats().Syncs; n != syncs+1 {
		t.Errorf("Stats.Syncs went up by %d, want 1", n-syncs)
	}
	if got := crash.DurableImage()[32<<10 : 36<<10]; !bytes.Equal(got, data) {
		t.Error("the write before Sync is not durable")
	}
}

// TestSyncFailureFailsJournal: the device reports a failed sync once, to
// Journal.Sync. A transaction written before it, whose own sync comes
// after and returns nil, must not be acknowledged, and nothing after it
// either: the failed sync may have dropped its batch.
func TestSyncFailureFailsJournal(t *testing.T) {
	for _, inflight := range []int{1, 2} {
		_, f, j := faultyJournal(t, Options{MaxInFlight: inflight, DeferApply: true})
		if err := j.Sync(); err != nil {
			t.Fatalf("inflight %d: first Sync: %v", inflight, err)
		}
		f.Inject(device.Fault{Op: device.OpSync, N: f.Count(device.OpSync) + 1, Err: device.EIO})
		if err := j.Sync(); !errors.Is(err, ErrFailed) || !errors.Is(err, device.EIO) {
			t.Fatalf("inflight %d: Sync on a failing device: %v, want ErrFailed wrapping EIO", inflight, err)
		}
		tx := j.Begin()
		tx.Write(40<<10, []byte("after"))
		if err := j.Commit(context.Background(), tx); !errors.Is(err, ErrFailed) {
			t.Errorf("inflight %d: Commit after a failed Sync: %v, want ErrFailed", inflight, err)
		}
		if err := j.Sync(); !errors.Is(err, ErrFailed) {
			t.Errorf("inflight %d: Sync after a failed one: %v, want ErrFailed", inflight, err)
		}
		if j.Err() == nil {
			t.Errorf("inflight %d: Err is nil after a failed Sync", inflight)
		}
		j.Close()
	}
}

// TestSyncErrorSeenByLaterJournalSync: the goroutine's own sync, started
// after Sync failed, returns nil from the device (the error was reported
// once, to Sync) yet its transaction fails.
func TestSyncErrorSeenByLaterJournalSync(t *testing.T) {
	_, f, j := faultyJournal(t, Options{DeferApply: true})
	// Record the failure without the wake-up Sync sends the goroutine, so
	// that the transaction below meets it in sync alone.
	e := errors.New("lost")
	j.syncErr.Store(&e)
	tx := j.Begin()
	tx.Write(40<<10, []byte("x"))
	if err := j.Commit(context.Background(), tx); !errors.Is(err, e) {
		t.Fatalf("Commit after a recorded Sync failure: %v, want it to fail with that error", err)
	}
	if f.Count(device.OpSync) == 0 {
		t.Fatal("no device sync ran")
	}
}

// TestSyncAfterOverlappingFailure: a sync fails while Sync is already
// under way (past its checks, or waiting for the failing sync to end). The
// device reports the failure once, to the failing sync, and then says nil
// to Sync, which must fail all the same: the failed sync may have dropped
// the very writes Sync was to make durable. The failing sync is the
// goroutine's own, then another Sync.
func TestSyncAfterOverlappingFailure(t *testing.T) {
	for _, first := range []string{"commit", "sync"} {
		mem := device.NewMem(64 << 10)
		if err := Format(mem, 0, MinSize); err != nil {
			t.Fatal(err)
		}
		f := device.NewFaulty(mem)
		g := newGate(f)
		j, err := Open(g, 0, MinSize, Options{DeferApply: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { j.Close() })
		f.Inject(device.Fault{Op: device.OpSync, N: f.Count(device.OpSync) + 1, Err: device.EIO})
		// The failing sync holds syncMu once these return.
		var firstErr <-chan error
		if first == "sync" {
			res := make(chan error, 1)
			g.armed.Store(true)
			go func() { res <- j.Sync() }()
			<-g.entered
			firstErr = res
		} else {
			firstErr = holdSync(t, j, g, w(40<<10, []byte("x")))
		}
		second := make(chan error, 1)
		go func() { second <- j.Sync() }()
		g.release <- struct{}{}
		if err := <-firstErr; !errors.Is(err, device.EIO) {
			t.Errorf("%s: the failing sync's caller got %v, want EIO", first, err)
		}
		if err := <-second; !errors.Is(err, ErrFailed) {
			t.Errorf("%s: Sync overlapping a failed sync returned %v, want ErrFailed", first, err)
		}
	}
}

// TestSyncAfterClose returns ErrClosed, like every other method.
func TestSyncAfterClose(t *testing.T) {
	j := formatOpen(t, device.NewMem(64<<10), 0, MinSize)
	j.Close()
	if err := j.Sync(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sync after Close: %v, want ErrClosed", err)
	}
}
