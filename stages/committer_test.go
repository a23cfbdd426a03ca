package stages_test

import (
	"errors"
	"slices"
	"sync"
	"syscall"
	"testing"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/internal/layout"
	"github.com/ringlog/ringlog/stages"
	"github.com/ringlog/ringlog/wal"
)

const testFormatID = 0xf0f0_1234

type committerRig struct {
	dev   device.Device
	geo   layout.Geometry
	j     *wal.Journal
	c     *stages.Committer
	pub   *stages.Published
	idle  chan struct{}
	mu    sync.Mutex
	fails []error
	stop  func()
}

// newCommitterRig runs a committer at tail, set up by opts, on a journal
// that applies each transaction before its Commit returns.
func newCommitterRig(t *testing.T, dev device.Device, tail uint64, opts ...func(*stages.Committer)) *committerRig {
	t.Helper()
	r := &committerRig{dev: dev, geo: testGeo(16 << 10), pub: new(stages.Published), idle: make(chan struct{}, 1)}
	r.j = newJournal(t, dev, r.geo)
	r.c = stages.NewCommitter(r.j, r.geo, testFormatID, 5, 1, tail, r.pub)
	for _, o := range opts {
		o(r.c)
	}
	r.c.Idle = r.idle
	r.c.OnFail = func(err error) {
		r.mu.Lock()
		r.fails = append(r.fails, err)
		r.mu.Unlock()
	}
	r.stop = runStage(t, r.c.Run)
	return r
}

// send hands the committer a completion of [start, end) and returns its
// waiter.
func (r *committerRig) send(start, end uint64, err error) *stages.Waiter {
	w := stages.NewWaiter()
	w.Pos = start
	r.c.In <- stages.Completion{Start: start, End: end, Waiters: []*stages.Waiter{w}, Err: err}
	return w
}

// barrier returns once the committer has handled everything sent before:
// an empty completion at the durable tail is released as soon as the
// committer looks at it, and completions are handled in channel order.
func (r *committerRig) barrier(t *testing.T) {
	t.Helper()
	d := r.pub.Durable.Load()
	w := r.send(d, d, nil)
	waitDone(t, w, "barrier")
}

// tailOnDevice decodes both copies of the tail record at their home.
func (r *committerRig) tailOnDevice(t *testing.T) [2]layout.Tail {
	t.Helper()
	var out [2]layout.Tail
	for i := range 2 {
		b := make([]byte, layout.StateLen)
		if _, err := r.dev.ReadAt(b, r.geo.TailSlot(i)); err != nil {
			t.Fatal(err)
		}
		tl, ok := layout.DecodeTail(b)
		if !ok && r.pub.Durable.Load() != 0 {
			t.Fatalf("tail copy %d does not decode", i)
		}
		out[i] = tl
	}
	if out[0] != out[1] {
		t.Fatalf("tail copies differ: %+v", out)
	}
	return out
}

func (r *committerRig) failures() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.fails...)
}

func TestCommitterReleasesContiguousRuns(t *testing.T) {
	r := newCommitterRig(t, device.NewMem(testGeo(16<<10).Size), 0)
	recv(t, r.idle, "idle at start")

	// [100, 200) and [300, 400) arrive before [0, 100): nothing is durable.
	w2 := r.send(100, 200, nil)
	w4 := r.send(300, 400, nil)
	r.barrier(t)
	if isDone(w2) || isDone(w4) || r.pub.Durable.Load() != 0 {
		t.Fatalf("released out of order: w2 %v, w4 %v, durable %d", isDone(w2), isDone(w4), r.pub.Durable.Load())
	}
	recv(t, r.idle, "idle while waiting for a gap")

	// [0, 100) fills the first gap: 0..200 become durable in one group, and
	// [300, 400) still waits for [200, 300).
	w1 := r.send(0, 100, nil)
	waitDone(t, w1, "w1")
	waitDone(t, w2, "w2")
	if w1.Err != nil || w2.Err != nil {
		t.Fatalf("errors %v, %v", w1.Err, w2.Err)
	}
	if w1.Pos != 0 || w2.Pos != 100 {
		t.Fatalf("positions %d, %d", w1.Pos, w2.Pos)
	}
	if d := r.pub.Durable.Load(); d != 200 {
		t.Fatalf("durable %d, want 200", d)
	}
	if isDone(w4) {
		t.Fatal("w4 released across the gap at 200")
	}
	tl := r.tailOnDevice(t)
	if tl[0].Tail != 200 || tl[0].Synced != 0 || tl[0].Epoch != 5 || tl[0].FormatID != testFormatID || tl[0].Gen != 2 {
		t.Fatalf("tail record %+v, want tail 200 synced 0 epoch 5 gen 2", tl[0])
	}

	w3 := r.send(200, 300, nil)
	waitDone(t, w3, "w3")
	waitDone(t, w4, "w4")
	if w3.Err != nil || w4.Err != nil {
		t.Fatalf("errors %v, %v", w3.Err, w4.Err)
	}
	tl = r.tailOnDevice(t)
	// Synced is the tail of the previous group: every byte below it was
	// covered by that group's sync.
	if tl[0].Tail != 400 || tl[0].Synced != 200 || tl[0].Gen != 3 {
		t.Fatalf("tail record %+v, want tail 400 synced 200 gen 3", tl[0])
	}
	if got := r.pub.Appends.Load(); got != 4 {
		t.Fatalf("appends %d, want 4", got)
	}
	if got := r.pub.Groups.Load(); got != 2 {
		t.Fatalf("groups %d, want 2", got)
	}
	if got := r.pub.Bytes.Load(); got != 400 {
		t.Fatalf("bytes %d, want 400", got)
	}
	if f := r.failures(); len(f) != 0 {
		t.Fatalf("failures: %v", f)
	}

	// The tail record is durable through the journal: after the journal is
	// closed and recovered the device still says 400.
	r.stop()
	if err := r.j.Close(); err != nil {
		t.Fatal(err)
	}
	j, err := wal.Open(r.dev, r.geo.JournalOff, r.geo.JournalSize, wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if tl := r.tailOnDevice(t); tl[0].Tail != 400 {
		t.Fatalf("after journal recovery, tail %d, want 400", tl[0].Tail)
	}
}

func TestCommitterGroupsEverythingQueued(t *testing.T) {
	// Completions queued before the committer runs, in reverse order, make
	// one group: one journal transaction for all of them.
	dev := device.NewMem(testGeo(16 << 10).Size)
	geo := testGeo(16 << 10)
	j := newJournal(t, dev, geo)
	pub := new(stages.Published)
	c := stages.NewCommitter(j, geo, testFormatID, 2, 1, 1000, pub)
	var ws []*stages.Waiter
	for i := 9; i >= 0; i-- {
		w := stages.NewWaiter()
		ws = append(ws, w)
		c.In <- stages.Completion{Start: 1000 + uint64(i)*64, End: 1000 + uint64(i+1)*64, Waiters: []*stages.Waiter{w}}
	}
	runStage(t, c.Run)
	// A group's callers are woken one after another in position order
	// (FinishChain), each by the one before: wait as they would.
	for _, w := range slices.Backward(ws) {
		waitDone(t, w, "waiter")
		if w.Err != nil {
			t.Fatal(w.Err)
		}
	}
	if pub.Durable.Load() != 1640 || pub.Groups.Load() != 1 || pub.Appends.Load() != 10 {
		t.Fatalf("durable %d groups %d appends %d", pub.Durable.Load(), pub.Groups.Load(), pub.Appends.Load())
	}
	if n := j.Stats().Commits; n != 1 {
		t.Fatalf("%d journal commits, want 1", n)
	}
}

func TestCommitterFailedCompletionFailsTheRest(t *testing.T) {
	r := newCommitterRig(t, device.NewMem(testGeo(16<<10).Size), 0)
	w1 := r.send(0, 100, nil)
	waitDone(t, w1, "w1")
	if w1.Err != nil {
		t.Fatal(w1.Err)
	}
	w3 := r.send(200, 300, nil)
	w5 := r.send(500, 600, nil) // behind a gap that is never filled
	r.barrier(t)
	boom := errors.New("boom")
	w2 := r.send(100, 200, boom)
	// The failure ends every waiter the committer holds, including w5:
	// [400, 500) can never become durable now, so w5 must not wait for it.
	for _, w := range []*stages.Waiter{w2, w3, w5} {
		waitDone(t, w, "failed waiter")
		if !errors.Is(w.Err, stages.ErrFailed) || !errors.Is(w.Err, boom) {
			t.Fatalf("waiter at %d: %v, want ErrFailed wrapping boom", w.Pos, w.Err)
		}
	}
	// Everything after the failure fails too, even a completion that
	// carries no error of its own.
	w4 := r.send(300, 400, nil)
	waitDone(t, w4, "w4")
	if !errors.Is(w4.Err, stages.ErrFailed) {
		t.Fatalf("completion after the failure: %v", w4.Err)
	}
	if d := r.pub.Durable.Load(); d != 100 {
		t.Fatalf("durable %d after failure, want 100", d)
	}
	if tl := r.tailOnDevice(t); tl[0].Tail != 100 {
		t.Fatalf("tail on device %d, want 100", tl[0].Tail)
	}
	f := r.failures()
	if len(f) != 1 || !errors.Is(f[0], boom) {
		t.Fatalf("OnFail calls: %v, want one with boom", f)
	}
}

func TestCommitterJournalFailure(t *testing.T) {
	// The journal's sync fails: the group fails with ErrFailed, OnFail is
	// told, and the committer refuses everything later.
	geo := testGeo(16 << 10)
	mem := device.NewMem(geo.Size)
	f := device.NewFaulty(mem)
	r := newCommitterRig(t, f, 0)
	w1 := r.send(0, 64, nil)
	waitDone(t, w1, "w1")
	if w1.Err != nil {
		t.Fatal(w1.Err)
	}
	wGap := r.send(512, 576, nil) // waits for [128, 512)
	r.barrier(t)
	f.Inject(device.Fault{Op: device.OpSync, N: f.Count(device.OpSync) + 1})
	w2 := r.send(64, 128, nil)
	waitDone(t, w2, "w2")
	if !errors.Is(w2.Err, stages.ErrFailed) || !errors.Is(w2.Err, syscall.EIO) {
		t.Fatalf("w2: %v, want ErrFailed wrapping EIO", w2.Err)
	}
	waitDone(t, wGap, "the waiter behind a gap")
	if !errors.Is(wGap.Err, stages.ErrFailed) {
		t.Fatalf("waiter behind a gap: %v, want ErrFailed", wGap.Err)
	}
	w3 := r.send(128, 192, nil)
	waitDone(t, w3, "w3")
	if !errors.Is(w3.Err, stages.ErrFailed) {
		t.Fatalf("w3: %v, want ErrFailed", w3.Err)
	}
	if d := r.pub.Durable.Load(); d != 64 {
		t.Fatalf("durable %d, want 64", d)
	}
	if fs := r.failures(); len(fs) != 1 {
		t.Fatalf("OnFail called %d times, want 1", len(fs))
	}
}

func TestCommitterClosesPendingOnQuit(t *testing.T) {
	r := newCommitterRig(t, device.NewMem(testGeo(16<<10).Size), 0)
	w2 := r.send(100, 200, nil)
	r.barrier(t)
	r.stop()
	waitDone(t, w2, "pending waiter")
	if !errors.Is(w2.Err, stages.ErrClosed) {
		t.Fatalf("pending waiter finished with %v, want ErrClosed", w2.Err)
	}
}
