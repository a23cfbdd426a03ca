package wal

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/internal/testhooks"
)

// heldSyncs makes every Sync wait until the test answers it, so that a test
// decides how many syncs are in flight and in which order they return.
type heldSyncs struct {
	device.Device
	hold    atomic.Bool     // set once the journal is open
	entered chan chan error // each Sync sends where its outcome is to come from
}

func (h *heldSyncs) Sync() error {
	if !h.hold.Load() {
		return h.Device.Sync()
	}
	answer := make(chan error)
	h.entered <- answer
	if err := <-answer; err != nil {
		return err
	}
	return h.Device.Sync()
}

// twoInFlight commits A, then B while A's sync is held, and returns the
// channels of both Commit results and of both held syncs, in that order.
// handled receives a token each time the committer has dealt with a
// returned sync.
func twoInFlight(t *testing.T, deferApply bool) (mem *device.Mem, h *heldSyncs, j *Journal, resA, resB <-chan error, syncA, syncB chan error, handled <-chan struct{}) {
	t.Helper()
	ch := make(chan struct{}, 8)
	hook := func() { ch <- struct{}{} }
	testhooks.SyncHandled.Store(&hook)
	t.Cleanup(func() { testhooks.SyncHandled.Store(nil) })
	mem = device.NewMem(64 << 10)
	if err := Format(mem, 0, MinSize); err != nil {
		t.Fatal(err)
	}
	h = &heldSyncs{Device: mem, entered: make(chan chan error)}
	j, err := Open(h, 0, MinSize, Options{MaxInFlight: 2, DeferApply: deferApply})
	testhooks.SyncHandled.Store(nil)
	if err != nil {
		t.Fatal(err)
	}
	h.hold.Store(true)
	a, b := make(chan error, 1), make(chan error, 1)
	go func() { a <- commitOne(j, w(MinSize, stamp(1))) }()
	syncA = <-h.entered
	// A's sync is held, yet B's batch is written and its sync started: that
	// is the overlap MaxInFlight allows.
	go func() { b <- commitOne(j, w(MinSize+8, stamp(2))) }()
	syncB = <-h.entered
	return mem, h, j, a, b, syncA, syncB, ch
}

// closeHeld closes j, answering the syncs Close itself does.
func closeHeld(t *testing.T, h *heldSyncs, j *Journal) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- j.Close() }()
	for {
		select {
		case answer := <-h.entered:
			answer <- nil
		case err := <-done:
			if err != nil {
				t.Fatalf("Close: %v", err)
			}
			return
		}
	}
}

// TestInFlightReleasesInOrder lets B's sync return before A's: both commit,
// and both are on the device after a reopen.
func TestInFlightReleasesInOrder(t *testing.T) {
	for _, deferApply := range []bool{false, true} {
		mem, h, j, resA, resB, syncA, syncB, handled := twoInFlight(t, deferApply)
		syncB <- nil
		<-handled
		if st := j.Stats(); st.Commits != 0 {
			t.Fatalf("defer=%v: B's sync returned before A's and %d commits completed, want 0", deferApply, st.Commits)
		}
		syncA <- nil
		if err := <-resA; err != nil {
			t.Fatalf("defer=%v: A: %v", deferApply, err)
		}
		if err := <-resB; err != nil {
			t.Fatalf("defer=%v: B: %v", deferApply, err)
		}
		if st := j.Stats(); st.Groups != 2 || st.Commits != 2 {
			t.Errorf("defer=%v: stats %+v, want 2 groups of one commit", deferApply, st)
		}
		closeHeld(t, h, j)
		j2 := mustOpen(t, mem, 0, MinSize)
		j2.Close()
		wantAt(t, mem, MinSize, stamp(1))
		wantAt(t, mem, MinSize+8, stamp(2))
	}
}

// TestInFlightEarlierSyncFails has B's sync succeed first and A's fail: B
// must fail too. Its sync proves nothing, since A's writes (and, after a
// failed fdatasync, anything unsynced) may be gone; acknowledging B when
// its own sync returned would have let an acknowledged commit sit behind a
// lost one.
func TestInFlightEarlierSyncFails(t *testing.T) {
	_, h, j, resA, resB, syncA, syncB, handled := twoInFlight(t, false)
	syncB <- nil
	<-handled
	syncA <- device.EIO
	if err := <-resA; !errors.Is(err, ErrFailed) || !errors.Is(err, device.EIO) {
		t.Errorf("A: %v, want ErrFailed wrapping EIO", err)
	}
	if err := <-resB; !errors.Is(err, ErrFailed) {
		t.Errorf("B, whose own sync succeeded after A's was issued: %v, want ErrFailed", err)
	}
	if err := commitOne(j, w(MinSize+16, stamp(3))); !errors.Is(err, ErrFailed) {
		t.Errorf("commit after the failure: %v, want ErrFailed", err)
	}
	closeHeld(t, h, j)
}

// TestInFlightLaterSyncFails has A's sync return nil first, while B's,
// started before it returned, is still running; then B's fails. A must
// fail too: Linux reports a failed writeback once, to whichever sync asks
// first, so the pages B's sync found lost may be A's, and A's nil proves
// nothing. A is held until B's sync returns.
func TestInFlightLaterSyncFails(t *testing.T) {
	_, h, j, resA, resB, syncA, syncB, handled := twoInFlight(t, false)
	syncA <- nil
	<-handled
	if st := j.Stats(); st.Commits != 0 {
		t.Fatalf("A acknowledged (%d commits) while B's overlapping sync was still running", st.Commits)
	}
	syncB <- device.EIO
	if err := <-resA; !errors.Is(err, ErrFailed) {
		t.Errorf("A, whose sync returned nil while B's overlapped it: %v, want ErrFailed", err)
	}
	if err := <-resB; !errors.Is(err, ErrFailed) || !errors.Is(err, device.EIO) {
		t.Errorf("B: %v, want ErrFailed wrapping EIO", err)
	}
	closeHeld(t, h, j)
}

// TestInFlightCloseWaits closes the journal with two syncs held: Close
// waits for both and reports each commit's real outcome.
func TestInFlightCloseWaits(t *testing.T) {
	_, h, j, resA, resB, syncA, syncB, _ := twoInFlight(t, true)
	closed := make(chan error, 1)
	go func() { closed <- j.Close() }()
	syncA <- nil
	syncB <- nil
	for done := false; !done; {
		select {
		case answer := <-h.entered:
			answer <- nil
		case err := <-closed:
			if err != nil {
				t.Fatal(err)
			}
			done = true
		}
	}
	if err := <-resA; err != nil {
		t.Errorf("A: %v", err)
	}
	if err := <-resB; err != nil {
		t.Errorf("B: %v", err)
	}
}

// holdArea holds every Sync from the first write at the start of the
// journal area on, once armed: the first batch after a checkpoint and all
// after it.
type holdArea struct {
	heldSyncs
	armed atomic.Bool
}

func (h *holdArea) WriteAt(p []byte, off int64) (int, error) {
	if h.armed.Load() && off == 2*slot {
		h.hold.Store(true)
	}
	return h.Device.WriteAt(p, off)
}

// TestInFlightAfterCheckpoint crashes with the first two batches after a
// checkpoint in flight and only the second landed. A checkpoint's header
// used to reach the disk only with the first new batch's sync; with two
// batches in flight the second could land alone, over an old batch in the
// middle of the area, while header and first batch were lost. Replay from
// the old header then repeated the old batches up to it and rolled the home
// region back past acknowledged commits.
func TestInFlightAfterCheckpoint(t *testing.T) {
	const x = MinSize // the home offset every commit rewrites
	crash := device.NewCrash(64 << 10)
	if err := Format(crash, 0, MinSize); err != nil {
		t.Fatal(err)
	}
	h := &holdArea{heldSyncs: heldSyncs{Device: crash, entered: make(chan chan error)}}
	j, err := Open(h, 0, MinSize, Options{MaxInFlight: 2, DeferApply: true})
	if err != nil {
		t.Fatal(err)
	}
	// One-write batches take one block each: this many fill the area.
	fill := (MinSize - 2*slot) / crash.BlockSize()
	before := j.Stats().Checkpoints
	for i := 1; i <= fill; i++ {
		mustCommit(t, j, w(x, stamp(uint64(i))))
	}
	if got := j.Stats().Checkpoints; got != before {
		t.Fatalf("%d commits of one block checkpointed %d times, want a full area and none", fill, got-before)
	}
	h.armed.Store(true)
	resA, resB := make(chan error, 1), make(chan error, 1)
	go func() { resA <- commitOne(j, w(x, stamp(1000))) }()
	syncA := <-h.entered
	if got := j.Stats().Checkpoints; got != before+1 {
		t.Fatalf("the commit after a full area checkpointed %d times, want once", got-before)
	}
	go func() { resB <- commitOne(j, w(x, stamp(1001))) }()
	syncB := <-h.entered

	// The image: of the writes not yet synced, only the last (B's batch)
	// landed.
	choices := make([]int, len(crash.Choices()))
	choices[len(choices)-1] = 1
	img := crash.ImageFor(choices)

	syncA <- device.EIO
	syncB <- device.EIO
	<-resA
	<-resB
	j.Close()

	after := device.NewCrashFrom(img)
	j2, err := Open(after, 0, MinSize, Options{})
	if err != nil {
		t.Fatal(err)
	}
	j2.Close()
	wantAt(t, after, x, stamp(uint64(fill)))
}
