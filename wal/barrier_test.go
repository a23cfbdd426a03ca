package wal

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/ringlog/ringlog/device"
)

// TestSyncBarrierMakesOutsideWritesDurable writes data outside the journal,
// then commits an empty transaction: once it returns the data is durable,
// and the journal wrote nothing for it.
func TestSyncBarrierMakesOutsideWritesDurable(t *testing.T) {
	for _, inflight := range []int{1, 2} {
		crash, f, j := faultyJournal(t, Options{MaxInFlight: inflight, DeferApply: true})
		data := bytes.Repeat([]byte{0xa5}, 4096)
		if _, err := f.WriteAt(data, 32<<10); err != nil {
			t.Fatal(err)
		}
		writes, syncs := f.Count(device.OpWrite), j.Stats().Syncs
		if err := j.Commit(context.Background(), j.Begin()); err != nil {
			t.Fatalf("inflight %d: barrier: %v", inflight, err)
		}
		if n := f.Count(device.OpWrite); n != writes {
			t.Errorf("inflight %d: the barrier wrote %d times, want none", inflight, n-writes)
		}
		if n := j.Stats().Syncs; n != syncs+1 {
			t.Errorf("inflight %d: %d syncs for the barrier, want 1", inflight, n-syncs)
		}
		if got := crash.DurableImage()[32<<10 : 36<<10]; !bytes.Equal(got, data) {
			t.Errorf("inflight %d: data written before the barrier is not durable after it", inflight)
		}
		// Barriers and batches share one sequence: a batch after a barrier
		// replays as usual.
		if err := commitOne(j, w(MinSize, stamp(7))); err != nil {
			t.Fatal(err)
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		img := device.NewCrashFrom(crash.DurableImage())
		j2 := mustOpen(t, img, 0, MinSize)
		j2.Close()
		wantAt(t, img, MinSize, stamp(7))
	}
}

// TestSyncBarrierWaitsForEarlierBatch holds the sync of a batch and commits
// a barrier behind it: the barrier's own sync returns first, yet it is
// released only with the batch, and fails with it.
func TestSyncBarrierWaitsForEarlierBatch(t *testing.T) {
	for _, fail := range []bool{false, true} {
		_, h, j, resA, resB, syncA, syncB, handled := twoInFlight(t, true)
		syncA <- nil
		syncB <- nil
		if errA, errB := <-resA, <-resB; errA != nil || errB != nil {
			t.Fatal(errA, errB)
		}
		<-handled
		<-handled
		// Hold a new batch C, then a barrier D behind it.
		resC, resD := make(chan error, 1), make(chan error, 1)
		go func() { resC <- commitOne(j, w(MinSize+16, stamp(3))) }()
		syncC := <-h.entered
		go func() { resD <- j.Commit(context.Background(), j.Begin()) }()
		syncD := <-h.entered
		syncD <- nil
		<-handled
		select {
		case err := <-resD:
			t.Fatalf("fail=%v: barrier released (%v) while the batch before it was not durable", fail, err)
		default:
		}
		if fail {
			syncC <- device.EIO
		} else {
			syncC <- nil
		}
		errC, errD := <-resC, <-resD
		if fail {
			if !errors.Is(errC, ErrFailed) || !errors.Is(errD, ErrFailed) {
				t.Errorf("after a failed sync before it: batch %v, barrier %v; want ErrFailed for both", errC, errD)
			}
		} else if errC != nil || errD != nil {
			t.Errorf("batch %v, barrier %v; want nil", errC, errD)
		}
		closeHeld(t, h, j)
	}
}
