package stages_test

import (
	"errors"
	"testing"
	"time"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/stages"
	"github.com/ringlog/ringlog/wal"
)

// TestAllocatorMarksAfterQueued: asked for a mark, the allocator places
// every request already queued and sends the mark after their items.
func TestAllocatorMarksAfterQueued(t *testing.T) {
	r := newAllocRig(t, 0, 0)
	defer r.stop()
	r.a.Marks <- struct{}{}
	r.expectItem(t, stages.ItemMark, 0, 0)
	reqs := []*stages.Request{stages.NewRequest(stages.KindAppend, make([]byte, 100), 100), stages.NewRequest(stages.KindAppend, make([]byte, 40), 40)}
	for _, q := range reqs {
		r.a.In <- q
	}
	r.a.Marks <- struct{}{}
	var pos uint64
	for i, q := range reqs {
		it := r.item(t)
		if it.Kind != stages.ItemRecord || it.Req != q || it.Pos != pos {
			t.Fatalf("item %d: %+v, want request %d's record at %d", i, it, i, pos)
		}
		pos += it.Span
	}
	r.expectItem(t, stages.ItemMark, 0, 0)
	r.expectNoItem(t)
}

// TestWriterMarkWritesAndReports: a mark makes the writer write what it
// has staged, without waiting for an idle slot, and the completion that
// reports it carries the mark; with nothing staged the mark comes alone.
func TestWriterMarkWritesAndReports(t *testing.T) {
	geo := testGeo(16 << 10)
	r := newWriterRig(t, device.NewMem(geo.Size), geo, 3, 0)
	r.start(t)
	defer r.stop()
	q := r.record(0, payload(100, 1))
	r.w.In <- stages.Item{Kind: stages.ItemMark}
	c := r.completion(t)
	if !c.Mark {
		t.Fatalf("completion %+v does not carry the mark", c)
	}
	expectCompletion(t, c, 0, appendStride(100), q)
	if ws := r.checkWrites(t); len(ws) != 1 {
		t.Fatalf("%d writes for the marked record, want 1", len(ws))
	}
	expectRecord(t, r.rd, 0, 3, payload(100, 1))

	r.w.In <- stages.Item{Kind: stages.ItemMark}
	c = r.completion(t)
	if !c.Mark || c.Start != appendStride(100) || c.End != c.Start || len(c.Waiters) != 0 {
		t.Fatalf("lone mark: completion %+v, want an empty marked one at %d", c, appendStride(100))
	}
}

// TestCommitterOneGroupPerMark: a committer of Depth 1 with Marks has a
// mark asked for after each group it releases, by the group's last caller,
// and submits nothing until it comes back, so everything completed
// meanwhile is one group with one sync; a
// group within the tail bound is synced by the committer itself, with no
// journal write.
func TestCommitterOneGroupPerMark(t *testing.T) {
	geo := testGeo(16 << 10)
	dev := &recDev{Device: device.NewMem(geo.Size)}
	marks := make(chan struct{}, 1)
	states := make(chan stages.CommitterState, 1024)
	r := newCommitterRig(t, dev, 0, func(c *stages.Committer) {
		// The callers alone ask for marks here, however slow the test.
		c.Depth, c.Marks, c.Ahead, c.MarkWait = 1, marks, 4096, time.Hour
		stages.OnCommitterIdle(c, func(s stages.CommitterState) {
			select {
			case states <- s:
			default:
			}
		})
	})
	defer r.stop()

	w := r.send(0, 100, nil)
	waitDone(t, w, "first group")
	recv(t, marks, "the mark asked for after the first group")
	// Every state reported before the group was released is queued by
	// now; those after it have its count.
	for len(states) > 0 {
		<-states
	}
	dev.take()
	syncs, groups := r.j.Stats().Syncs, r.pub.Groups.Load()
	var ws []*stages.Waiter
	for i := range uint64(5) {
		ws = append(ws, r.send(100+i*100, 200+i*100, nil))
	}
	// Wait until the committer, about to wait, holds all five: it has
	// seen them and chosen to wait for the mark.
	for {
		s := recv(t, states, "the committer holding the completions")
		if s.Groups != groups || s.Flights != 0 {
			t.Fatalf("a group was committed before the mark came back: %+v", s)
		}
		if s.Pending == len(ws) {
			if !s.Marking {
				t.Fatalf("holding %d completions without waiting for a mark: %+v", len(ws), s)
			}
			break
		}
	}
	for i, w := range ws {
		if isDone(w) {
			t.Fatalf("completion %d released before the mark came back", i)
		}
	}
	r.c.In <- stages.Completion{Start: 600, End: 600, Mark: true}
	for i, w := range ws {
		// The next mark is asked for by the group's last caller, once
		// every one before it has had its turn to append again.
		if len(marks) != 0 {
			t.Fatalf("a mark asked for before caller %d of %d was woken", i, len(ws))
		}
		waitDone(t, w, "a completion after the mark")
		if w.Err != nil {
			t.Fatalf("completion %d: %v", i, w.Err)
		}
	}
	if n := r.pub.Groups.Load() - groups; n != 1 {
		t.Errorf("%d groups for the completions before one mark, want 1", n)
	}
	if n := r.j.Stats().Syncs - syncs; n != 1 {
		t.Errorf("%d syncs for one group, want 1", n)
	}
	for _, wr := range dev.take() {
		if wr[0] >= geo.JournalOff && wr[0] < geo.JournalOff+geo.JournalSize {
			t.Errorf("a group within the bound wrote to the journal at %d", wr[0])
		}
	}
	recv(t, marks, "the mark asked for after the second group")
	if d := r.pub.Durable.Load(); d != 600 {
		t.Fatalf("durable %d, want 600", d)
	}
}

// TestCommitterInlineSyncFailure: the committer's own sync fails; the
// group fails with ErrFailed, the log is failed, and so is the journal.
func TestCommitterInlineSyncFailure(t *testing.T) {
	geo := testGeo(16 << 10)
	f := device.NewFaulty(device.NewMem(geo.Size))
	marks := make(chan struct{}, 1)
	r := newCommitterRig(t, f, 0, func(c *stages.Committer) { c.Depth, c.Marks, c.Ahead, c.MarkWait = 1, marks, 4096, time.Hour })
	defer r.stop()
	w := r.send(0, 100, nil)
	waitDone(t, w, "first group")
	recv(t, marks, "a mark request")
	f.Inject(device.Fault{Op: device.OpSync, N: f.Count(device.OpSync) + 1, Err: device.EIO})
	w = r.send(100, 200, nil)
	r.c.In <- stages.Completion{Start: 200, End: 200, Mark: true}
	waitDone(t, w, "the group whose sync fails")
	if !errors.Is(w.Err, stages.ErrFailed) || !errors.Is(w.Err, device.EIO) {
		t.Fatalf("group outcome %v, want ErrFailed wrapping EIO", w.Err)
	}
	if len(r.failures()) != 1 {
		t.Fatalf("OnFail called %d times, want 1", len(r.failures()))
	}
	if !wal.IsFailed(r.j.Commit(t.Context(), r.j.Begin())) {
		t.Fatal("the journal still commits after the committer's sync failed")
	}
	if d := r.pub.Durable.Load(); d != 100 {
		t.Fatalf("durable %d after the failed sync, want 100", d)
	}
}

// TestCommitterMarkWaitBound: a group's last caller that does not get to
// run does not hold the next group back for ever: once MarkWait has passed
// the committer asks for the mark itself.
func TestCommitterMarkWaitBound(t *testing.T) {
	geo := testGeo(16 << 10)
	marks := make(chan struct{}, 1)
	r := newCommitterRig(t, device.NewMem(geo.Size), 0, func(c *stages.Committer) {
		c.Depth, c.Marks, c.Ahead, c.MarkWait = 1, marks, 4096, time.Millisecond
	})
	defer r.stop()
	w1, w2 := stages.NewWaiter(), stages.NewWaiter()
	w2.Pos = 100
	r.c.In <- stages.Completion{Start: 0, End: 200, Waiters: []*stages.Waiter{w1, w2}}
	waitDone(t, w1, "the first caller") // it passes on to w2, whose owner does not run yet
	recv(t, marks, "the mark the committer asks for once MarkWait has passed")
	waitDone(t, w2, "the last caller")
	// The callers' own token still comes: one mark more, one group less full.
	recv(t, marks, "the last caller's token")
	// The mark coming back ends the wait: the next group commits.
	w3 := r.send(200, 300, nil)
	r.c.In <- stages.Completion{Start: 300, End: 300, Mark: true}
	waitDone(t, w3, "the next group")
	if w3.Err != nil {
		t.Fatal(w3.Err)
	}
}
