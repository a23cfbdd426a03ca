package stages_test

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/stages"
	"github.com/ringlog/ringlog/wal"
)

// heldSyncs makes every Sync, once hold is set, wait for the test's answer.
type heldSyncs struct {
	device.Device
	hold    atomic.Bool
	entered chan chan error
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

// pipelinedRig is a committer of depth 2 on a journal that lets two
// batches sync at once, with every sync held for the test to answer.
func pipelinedRig(t *testing.T) (*committerRig, *heldSyncs) {
	t.Helper()
	h := &heldSyncs{Device: device.NewMem(1 << 20), entered: make(chan chan error)}
	r := &committerRig{dev: h, geo: testGeo(16 << 10), pub: new(stages.Published), idle: make(chan struct{}, 1)}
	if err := wal.Format(h, r.geo.JournalOff, r.geo.JournalSize); err != nil {
		t.Fatal(err)
	}
	j, err := wal.Open(h, r.geo.JournalOff, r.geo.JournalSize, wal.Options{DeferApply: true, MaxInFlight: 2})
	if err != nil {
		t.Fatal(err)
	}
	r.j = j
	h.hold.Store(true)
	r.c = stages.NewCommitter(j, r.geo, testFormatID, 5, 1, 0, r.pub)
	r.c.Depth = 2
	r.c.Idle = r.idle
	r.c.OnFail = func(err error) {
		r.mu.Lock()
		r.fails = append(r.fails, err)
		r.mu.Unlock()
	}
	stop := runStage(t, r.c.Run)
	// Stop the committer, then close the journal, answering whatever
	// syncs either still makes.
	t.Cleanup(func() {
		done := make(chan struct{})
		go func() {
			stop()
			j.Close()
			close(done)
		}()
		for {
			select {
			case answer := <-h.entered:
				answer <- nil
			case <-done:
				return
			}
		}
	})
	return r, h
}

// twoGroups sends two contiguous completions and returns their waiters and
// held syncs: the second sync starting while the first is held is the
// overlap Depth allows.
func twoGroups(t *testing.T, r *committerRig, h *heldSyncs) (a, b *stages.Waiter, syncA, syncB chan error) {
	t.Helper()
	a = r.send(0, 64, nil)
	syncA = recv(t, h.entered, "first group's sync")
	b = r.send(64, 128, nil)
	syncB = recv(t, h.entered, "second group's sync, started while the first is held")
	return a, b, syncA, syncB
}

// TestCommitterOverlapsGroups submits a second group while the first one's
// sync is held, lets the second sync return first, and checks that nothing
// is released until the first returns too.
func TestCommitterOverlapsGroups(t *testing.T) {
	r, h := pipelinedRig(t)
	a, b, syncA, syncB := twoGroups(t, r, h)
	syncB <- nil
	// The wal test TestInFlightReleasesInOrder pins down that B's
	// transaction cannot complete first; here, a committer that released
	// on its own would show up as a finished waiter or a durable tail.
	if isDone(a) || isDone(b) || r.pub.Durable.Load() != 0 {
		t.Fatalf("released before the first group's sync returned: a=%v b=%v durable=%d", isDone(a), isDone(b), r.pub.Durable.Load())
	}
	syncA <- nil
	waitDone(t, a, "first group")
	waitDone(t, b, "second group")
	if a.Err != nil || b.Err != nil {
		t.Fatalf("a: %v, b: %v", a.Err, b.Err)
	}
	if d := r.pub.Durable.Load(); d != 128 {
		t.Errorf("durable tail %d, want 128", d)
	}
	if g := r.pub.Groups.Load(); g != 2 {
		t.Errorf("%d groups, want 2", g)
	}
}

// TestCommitterFirstOfTwoFails fails the first group's sync after the second
// one's succeeded: both groups fail, and the log with them.
func TestCommitterFirstOfTwoFails(t *testing.T) {
	r, h := pipelinedRig(t)
	a, b, syncA, syncB := twoGroups(t, r, h)
	syncB <- nil
	syncA <- device.EIO
	waitDone(t, a, "first group")
	waitDone(t, b, "second group")
	if !errors.Is(a.Err, stages.ErrFailed) || !errors.Is(a.Err, device.EIO) {
		t.Errorf("a: %v, want ErrFailed wrapping EIO", a.Err)
	}
	if !errors.Is(b.Err, stages.ErrFailed) {
		t.Errorf("b, whose own sync succeeded: %v, want ErrFailed", b.Err)
	}
	if d := r.pub.Durable.Load(); d != 0 {
		t.Errorf("durable tail %d after the failure, want 0", d)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.fails) != 1 {
		t.Errorf("OnFail called %d times, want once", len(r.fails))
	}
}

// TestCommitterIdleTokenWithGroupsInFlight: the writer's token means "a slot
// for a group is free and nothing fills it". It comes when the first group
// leaves the second slot free, never while both slots are taken, and again
// once the slots free up. (The first group is released only once the
// second one's sync, which overlapped its own, has returned too:
// wal.Options.MaxInFlight.)
func TestCommitterIdleTokenWithGroupsInFlight(t *testing.T) {
	r, h := pipelinedRig(t)
	recv(t, r.idle, "the token at start")
	a := r.send(0, 64, nil)
	syncA := recv(t, h.entered, "first group's sync")
	recv(t, r.idle, "a token while the second slot is free")
	b := r.send(64, 128, nil)
	syncB := recv(t, h.entered, "second group's sync")
	// Should the test fail with the syncs held, the rig's cleanup must not
	// wait for them for ever.
	t.Cleanup(func() { release(syncA, syncB) })
	// Both slots were taken when the committer last decided about the
	// token, and it decides again only when something arrives.
	if len(r.idle) != 0 {
		t.Fatal("a token while both slots are taken")
	}
	syncA <- nil
	syncB <- nil
	waitDone(t, a, "first group")
	waitDone(t, b, "second group")
	recv(t, r.idle, "a token once the slots are free")
}

// release answers whichever of the held syncs still waits.
func release(syncs ...chan error) {
	for _, s := range syncs {
		select {
		case s <- nil:
		default:
		}
	}
}
