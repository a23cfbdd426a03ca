package stages_test

import (
	"testing"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/stages"
)

// TestCommitterTailBoundAhead follows the tail bound: a group that crosses
// it writes a tail record Ahead further (rounded down to a frame boundary,
// and never more than the data area past the head); a group within it
// commits with a sync barrier that writes nothing to the journal; Close
// brings the bound back to the durable tail.
func TestCommitterTailBoundAhead(t *testing.T) {
	geo := testGeo(16 << 10)
	dev := &recDev{Device: device.NewMem(geo.Size)}
	r := newCommitterRig(t, dev, 0, func(c *stages.Committer) { c.Ahead = 1030 })
	journalWrites := func() int {
		n := 0
		for _, w := range dev.take() {
			if w[0] >= geo.JournalOff && w[0] < geo.JournalOff+geo.JournalSize {
				n++
			}
		}
		return n
	}
	group := func(start, end uint64) {
		t.Helper()
		w := r.send(start, end, nil)
		waitDone(t, w, "group")
		if w.Err != nil {
			t.Fatalf("group [%d, %d): %v", start, end, w.Err)
		}
	}
	want := func(what string, tail, synced, gen uint64) {
		t.Helper()
		got := r.tailOnDevice(t)[0]
		if got.Tail != tail || got.Synced != synced || got.Gen != gen {
			t.Fatalf("%s: tail record %+v, want tail %d synced %d gen %d", what, got, tail, synced, gen)
		}
	}

	recv(t, r.idle, "idle at start")
	group(0, 100)
	want("first group", (100+1030)&^31, 0, 2)
	if n := journalWrites(); n == 0 {
		t.Fatal("the group that crossed the bound wrote nothing to the journal")
	}
	group(100, 600)
	want("group within the bound", 1120, 0, 2)
	if n := journalWrites(); n != 0 {
		t.Fatalf("a group within the bound wrote %d times to the journal, want 0", n)
	}
	group(600, 1120)
	want("group ending on the bound", 1120, 0, 2)
	group(1120, 1200)
	want("group past the bound", (1200+1030)&^31, 1120, 3)
	// The head is at 0: no bound past the data area's size.
	group(1200, 16000)
	want("bound at the head's limit", uint64(geo.DataSize), 1200, 4)
	r.pub.Head.Store(3000)
	group(16000, 16500)
	want("bound after the head moved", (16500+1030)&^31, 16000, 5)
	if d := r.pub.Durable.Load(); d != 16500 {
		t.Fatalf("durable %d, want 16500", d)
	}
	if g := r.pub.Groups.Load(); g != 6 {
		t.Fatalf("%d groups, want 6", g)
	}

	r.stop()
	want("after Close", 16500, 16500, 6)
}

// TestCommitterExactTailWithoutAhead keeps a tail record per group when
// Ahead is 0, and has nothing to write at Close.
func TestCommitterExactTailWithoutAhead(t *testing.T) {
	geo := testGeo(16 << 10)
	dev := &recDev{Device: device.NewMem(geo.Size)}
	r := newCommitterRig(t, dev, 0)
	for i := range uint64(3) {
		w := r.send(i*64, (i+1)*64, nil)
		waitDone(t, w, "group")
		tl := r.tailOnDevice(t)[0]
		if tl.Tail != (i+1)*64 || tl.Synced != i*64 || tl.Gen != 2+i {
			t.Fatalf("group %d: tail record %+v", i, tl)
		}
	}
	dev.take()
	r.stop()
	for _, w := range dev.take() {
		if w[0] >= geo.JournalOff {
			t.Fatalf("Close wrote at %d with the tail record exact already", w[0])
		}
	}
	if tl := r.tailOnDevice(t)[0]; tl.Tail != 192 || tl.Gen != 4 {
		t.Fatalf("after Close: %+v", tl)
	}
}
