package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/ringlog/ringlog/device"
)

// faultSlots are the two home offsets transaction i writes its stamp to: in
// different blocks, so that each transaction costs two home writes.
func faultSlots(i int) [2]int64 {
	return [2]int64{MinSize + int64(i)*8, MinSize + 8192 + int64(i)*24}
}

// TestFaultFailsCommit fails the kth write, sync or read the journal does
// after Open, for every k that a run of 40 commits reaches (checkpoints
// included), with and without DeferApply, and checks who hears about it
// and what survives a reopen.
func TestFaultFailsCommit(t *testing.T) {
	const commits = 40
	for _, opts := range []Options{{}, {DeferApply: true}, {MaxInFlight: 3}, {DeferApply: true, MaxInFlight: 2}} {
		// A run without faults counts the ops there are to fail.
		var counts [3]int64
		runFault(t, opts, device.OpWrite, 0, nil, commits, &counts)
		for _, c := range []struct {
			op  device.Op
			err error
		}{
			{device.OpWrite, device.EIO},
			{device.OpSync, device.EIO},
			{device.OpRead, device.EIO},
			{device.OpWrite, device.ENOSPC},
			{device.OpSync, device.ENOSPC},
		} {
			maxK := counts[c.op]
			if c.err == device.ENOSPC {
				maxK = min(maxK, 5)
			}
			if maxK == 0 && c.op != device.OpRead {
				t.Fatalf("%+v: a run of %d commits does no %v", opts, commits, c.op)
			}
			for k := int64(1); k <= maxK; k++ {
				t.Run(fmt.Sprintf("defer=%v/inflight=%d/%v/%d/%v", opts.DeferApply, opts.MaxInFlight, c.op, k, c.err), func(t *testing.T) {
					runFault(t, opts, c.op, k, c.err, commits, nil)
				})
			}
		}
	}
}

// runFault commits transactions one by one with the kth op of kind op
// failing (k == 0: none; counts then receives the ops done).
func runFault(t *testing.T, opts Options, op device.Op, k int64, injected error, commits int, counts *[3]int64) {
	mem := device.NewMem(64 << 10)
	if err := Format(mem, 0, MinSize); err != nil {
		t.Fatal(err)
	}
	f := device.NewFaulty(mem)
	j, err := Open(f, 0, MinSize, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var base [3]int64
	for _, o := range []device.Op{device.OpRead, device.OpWrite, device.OpSync} {
		base[o] = f.Count(o)
	}
	if k > 0 {
		f.Inject(device.Fault{Op: op, N: f.Count(op) + k, Err: injected})
	}
	var committed []int
	failedAt := -1
	for i := range commits {
		s := faultSlots(i)
		err := commitOne(j, w(s[0], stamp(uint64(i+1))), w(s[1], stamp(uint64(i+1))))
		switch {
		case failedAt < 0 && err == nil:
			committed = append(committed, i)
		case failedAt < 0:
			failedAt = i
			if !errors.Is(err, injected) {
				t.Fatalf("Commit %d hit by the fault = %v, want an error wrapping %v", i, err, injected)
			}
			if !device.IsInjected(err) {
				t.Errorf("Commit %d: %v does not wrap the *device.FaultError", i, err)
			}
			if !errors.Is(err, ErrFailed) || !IsFailed(err) {
				t.Errorf("Commit %d hit by the fault = %v, want it to wrap ErrFailed too", i, err)
			}
			if jerr := j.Err(); jerr == nil || !errors.Is(jerr, injected) {
				t.Errorf("Err() = %v after the fault, want %v", jerr, injected)
			}
		default:
			if !errors.Is(err, ErrFailed) {
				t.Fatalf("Commit %d after the journal failed = %v, want ErrFailed", i, err)
			}
		}
	}
	if counts != nil {
		if j.Stats().Checkpoints < 2 {
			t.Fatalf("%d commits did not checkpoint: the fault cases miss that path", commits)
		}
		for _, o := range []device.Op{device.OpRead, device.OpWrite, device.OpSync} {
			counts[o] = f.Count(o) - base[o]
		}
	}
	if k == 0 {
		if failedAt >= 0 {
			t.Fatalf("Commit %d failed without a fault", failedAt)
		}
		return
	}
	if failedAt < 0 {
		t.Fatalf("fault on %v #%d never hit a commit", op, k)
	}
	// A transaction begun and discarded after the failure does not hang.
	j.Begin().Discard()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopen on the device under the fault: every acknowledged transaction
	// is there; the failed one is all there or not at all; none after it.
	mustOpen(t, mem, 0, MinSize)
	for _, i := range committed {
		for _, off := range faultSlots(i) {
			wantAt(t, mem, off, stamp(uint64(i+1)))
		}
	}
	s := faultSlots(failedAt)
	a, b := readAt(t, mem, s[0], 8), readAt(t, mem, s[1], 8)
	if !bytes.Equal(a, b) || !(bytes.Equal(a, stamp(uint64(failedAt+1))) || bytes.Equal(a, make([]byte, 8))) {
		t.Errorf("failed tx %d is partly present: slots hold %x and %x", failedAt, a, b)
	}
	for i := failedAt + 1; i < commits; i++ {
		for _, off := range faultSlots(i) {
			wantAt(t, mem, off, make([]byte, 8))
		}
	}
}

// TestFaultFailsWholeGroup queues many Commits behind a batch in flight so
// that they form one group, fails that group's sync, and checks that every
// one of them gets the error.
func TestFaultFailsWholeGroup(t *testing.T) {
	cases := []struct {
		name    string
		op      device.Op
		delta   int64 // which op of its kind, counting from the held sync's batch
		present bool  // whether the group is durable despite the failure
	}{
		// The held sync is f's next sync; the group's is the one after.
		{"sync", device.OpSync, 2, false},
		// After the held sync: the first batch's home write (1), the
		// group's batch write (2), the group's home writes (3, 4).
		{"batch write", device.OpWrite, 2, false},
		{"home write", device.OpWrite, 3, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mem := device.NewMem(64 << 10)
			if err := Format(mem, 0, MinSize); err != nil {
				t.Fatal(err)
			}
			f := device.NewFaulty(mem)
			g := newGate(f)
			j := mustOpen(t, g, 0, MinSize)
			first := holdSync(t, j, g, w(MinSize, stamp(1)))
			f.Inject(device.Fault{Op: c.op, N: f.Count(c.op) + c.delta})
			const n = 16
			res := make(chan error, n)
			for i := range n {
				go func() {
					res <- commitOne(j, w(MinSize+8+int64(i)*8, stamp(uint64(i+2))), w(MinSize+4096+int64(i)*8, stamp(uint64(i+2))))
				}()
			}
			waitSubmitted(t, j, n)
			g.release <- struct{}{}
			if err := <-first; err != nil {
				t.Fatalf("Commit of the batch in flight: %v", err)
			}
			for range n {
				if err := <-res; !errors.Is(err, syscall.EIO) || !errors.Is(err, ErrFailed) {
					t.Errorf("Commit in the failed group = %v, want EIO and ErrFailed", err)
				}
			}
			if !errors.Is(j.Err(), syscall.EIO) {
				t.Errorf("Err() = %v, want EIO", j.Err())
			}
			if err := commitOne(j, w(MinSize+2048, stamp(99))); !errors.Is(err, ErrFailed) {
				t.Errorf("Commit after the failure = %v, want ErrFailed", err)
			}
			j.Close()
			mustOpen(t, mem, 0, MinSize)
			wantAt(t, mem, MinSize, stamp(1))
			// The group's batch is all there (a home write failed after the
			// sync) or not at all.
			want := make([]byte, 8*n)
			if c.present {
				for i := range n {
					copy(want[i*8:], stamp(uint64(i+2)))
				}
			}
			wantAt(t, mem, MinSize+8, want)
			wantAt(t, mem, MinSize+4096, want)
			wantAt(t, mem, MinSize+2048, make([]byte, 8))
		})
	}
}

// TestFaultStickyAndRecovery fails every write from some point on, then
// checks that Open itself reports a failing device and leaves nothing
// running, and that once the device works again the journal recovers.
func TestFaultStickyAndRecovery(t *testing.T) {
	mem := device.NewMem(64 << 10)
	if err := Format(mem, 0, MinSize); err != nil {
		t.Fatal(err)
	}
	j := mustOpen(t, mem, 0, MinSize)
	for i := range 5 {
		mustCommit(t, j, w(MinSize+int64(i)*8, stamp(uint64(i+1))))
	}
	j.Close()
	for _, op := range []device.Op{device.OpRead, device.OpWrite, device.OpSync} {
		for k := int64(1); k <= 3; k++ {
			f := device.NewFaulty(mem, device.Fault{Op: op, N: k, Sticky: true})
			j, err := Open(f, 0, MinSize, Options{})
			if err == nil {
				j.Close()
			}
			switch reached := f.Count(op) >= k; {
			case reached && !errors.Is(err, syscall.EIO):
				t.Errorf("Open with %v #%d failing = %v, want EIO", op, k, err)
			case !reached && err != nil:
				t.Errorf("Open failed (%v) before %v #%d", err, op, k)
			}
		}
	}
	j = mustOpen(t, mem, 0, MinSize)
	for i := range 5 {
		wantAt(t, mem, MinSize+int64(i)*8, stamp(uint64(i+1)))
	}
	mustCommit(t, j, w(MinSize+100, stamp(9)))
	if err := j.Commit(context.Background(), j.Begin()); err != nil {
		t.Fatal(err)
	}
}
