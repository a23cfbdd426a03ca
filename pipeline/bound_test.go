package pipeline_test

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/pipeline"
)

// TestTailBoundAcrossCrashAndClose appends until the journal's tail bound
// has been moved several times, cuts the power, and reopens: every
// acknowledged record is there and nothing else, though the bound ran
// ahead of the data. A clean Close then leaves the bound at the tail: the
// next Open has nothing to walk.
func TestTailBoundAcrossCrashAndClose(t *testing.T) {
	dev := device.NewCrash(1 << 20)
	cfg := pipeline.Config{}
	l := formatOpen(t, dev, cfg)
	var want [][]byte
	for i := range 200 {
		p := idPayload(uint64(i), 300+i*7%900)
		if _, err := l.Append(guardCtx(t), p); err != nil {
			t.Fatal(err)
		}
		want = append(want, p)
	}
	end := l.Stats().Durable
	crashed := device.NewCrashFrom(dev.DurableImage())
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l = mustOpen(t, crashed, cfg)
	checkRecords(t, l, want)
	if s := l.Stats(); s.TruncatedBytes == 0 || s.Tail != end {
		t.Fatalf("after the crash: tail %d, %d bytes past it to the bound; want tail %d and a bound ahead", s.Tail, s.TruncatedBytes, end)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, crashed, cfg)
	checkRecords(t, l, want)
	if s := l.Stats(); s.TruncatedBytes != 0 {
		t.Fatalf("after a clean Close the bound is %d bytes past the tail, want 0", s.TruncatedBytes)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// checkRecords fails the test unless l holds exactly want, in order.
func checkRecords(t *testing.T, l *pipeline.Log, want [][]byte) {
	t.Helper()
	pos, got := scanAll(t, l)
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("record %d at %d differs", i, pos[i])
		}
	}
}

// snapBeforeState is a crash device that, once armed, keeps the image a
// power cut would leave just before the first write outside the data area
// (the journal's next batch), with every earlier write landed.
type snapBeforeState struct {
	*device.Crash
	mu      sync.Mutex
	armed   bool
	dataOff int64
	img     []byte
}

func (d *snapBeforeState) WriteAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	if d.armed && d.img == nil && off < d.dataOff {
		d.img = landedImage(d.Crash)
	}
	d.mu.Unlock()
	return d.Crash.WriteAt(p, off)
}

// TestRecoveryAfterNextLapOverwroteSynced: groups within the tail bound
// leave the tail record's synced position behind; the collector frees
// space past it, the next lap overwrites the frames there, and the power
// fails before the new bound reaches the journal. Recovery must not walk
// from that stale synced position into the next lap's bytes (it did, and
// Open failed with ErrCorrupt): it walks from the durable head.
func TestRecoveryAfterNextLapOverwroteSynced(t *testing.T) {
	for _, inflight := range []int{1, 2, 3} {
		dev := &snapBeforeState{Crash: device.NewCrash(1 << 20)}
		checker := newSetChecker()
		checker.setAll(true)
		cfg := pipeline.Config{Checker: checker, CollectInterval: time.Hour, SyncsInFlight: inflight}
		l := formatOpen(t, dev, cfg)
		ctx := guardCtx(t)
		capacity := uint64(l.Stats().Capacity)
		dev.dataOff = 1<<20 - int64(capacity)
		// One large record moves the bound an eighth of the area ahead;
		// small ones then commit within it, with sync barriers only.
		if _, err := l.Append(ctx, idPayload(1, l.MaxRecord())); err != nil {
			t.Fatal(err)
		}
		bound := (uint64(l.Stats().Durable) + capacity/8) &^ 31
		for i := uint64(2); uint64(l.Stats().Durable)+2*1056 <= bound; i++ {
			if _, err := l.Append(ctx, idPayload(i, 1000)); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Collect(ctx); err != nil {
			t.Fatal(err)
		}
		head := l.Stats().Head
		if head == 0 {
			t.Fatal("nothing collected")
		}
		// The next large record wraps: its lap starts over the first
		// record's frames, between the synced position and the head.
		dev.mu.Lock()
		dev.armed = true
		dev.mu.Unlock()
		if _, err := l.Append(ctx, idPayload(99, l.MaxRecord())); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if dev.img == nil {
			t.Fatal("the wrapping append wrote nothing to the journal")
		}
		// The wrapping append's padding and record both end past the old
		// bound: the recovered log is empty, from the head on.
		l = mustOpen(t, device.NewCrashFrom(dev.img), cfg)
		if s := l.Stats(); s.Head != head || s.Tail != head {
			t.Fatalf("inflight %d: recovered head %d tail %d, want both %d", inflight, s.Head, s.Tail, head)
		}
		if pos, _ := scanAll(t, l); len(pos) != 0 {
			t.Fatalf("inflight %d: %d records recovered, want none", inflight, len(pos))
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
