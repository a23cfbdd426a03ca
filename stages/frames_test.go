package stages_test

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/internal/layout"
	"github.com/ringlog/ringlog/internal/testhooks"
	"github.com/ringlog/ringlog/stages"
)

// newFramesRig is newAllocRig with FrameRuns, on a data area of size bytes.
func newFramesRig(t *testing.T, size int64, tail uint64) (*allocRig, *stages.FrameRuns) {
	t.Helper()
	geo := layout.Geometry{DataSize: size}
	r := &allocRig{out: make(chan stages.Item, 64), pressure: make(chan struct{}, 1), pub: new(stages.Published)}
	r.a = stages.NewAllocator(geo, allocBS, tail, tail, r.out, r.pressure, r.pub)
	f := stages.NewFrameRuns(geo)
	r.a.Frames = f
	r.stop = runStage(t, r.a.Run)
	return r, f
}

func expectBatch(t *testing.T, f *stages.FrameRuns, want ...stages.FrameRun) {
	t.Helper()
	b := recv(t, f.Batches(), "a frame batch")
	if got := b.Runs(); !slices.Equal(got, want) {
		t.Fatalf("batch [%d, %d) of runs %+v, want %+v", b.Start, b.End, got, want)
	}
}

func expectNoBatch(t *testing.T, f *stages.FrameRuns) {
	t.Helper()
	select {
	case b := <-f.Batches():
		t.Fatalf("unexpected batch %+v", b.Runs())
	default:
	}
}

// The allocator describes the frames it places one after another in a
// batch, as runs of one kind and size (padding too), and sends the batch
// when a reservation, which no batch describes, comes between.
func TestAllocatorSendsFrameBatches(t *testing.T) {
	lap := uint64(3 * allocSize)
	start := lap - 64 - 3*160
	r, f := newFramesRig(t, allocSize, start)
	for range 3 {
		r.a.In <- appendReq(100) // stride 160
		r.item(t)
	}
	r.a.In <- appendReq(100) // does not fit in the lap's last 64 bytes
	r.expectItem(t, stages.ItemPad, lap-64, 64)
	r.expectItem(t, stages.ItemRecord, lap, 160)
	r.a.In <- reserveReq(100) // aligned to a block: padding first
	r.expectItem(t, stages.ItemPad, lap+160, 352)
	r.expectItem(t, stages.ItemHole, lap+512, 1024)
	r.a.In <- appendReq(0)
	r.expectItem(t, stages.ItemRecord, lap+1536, 32)
	expectBatch(t, f,
		stages.FrameRun{Start: start, Stride: 160, Count: 3},
		stages.FrameRun{Start: lap - 64, Stride: 64, Count: 1, Pad: true},
		stages.FrameRun{Start: lap, Stride: 160, Count: 1},
		stages.FrameRun{Start: lap + 160, Stride: 352, Count: 1, Pad: true})
	r.a.In <- appendReq(64)
	r.expectItem(t, stages.ItemRecord, lap+1568, 96)
	r.a.In <- reserveReq(0)
	r.expectItem(t, stages.ItemPad, lap+1664, 384)
	r.expectItem(t, stages.ItemHole, lap+2048, 512)
	r.a.In <- appendReq(0)
	r.expectItem(t, stages.ItemRecord, lap+2560, 32)
	expectBatch(t, f,
		stages.FrameRun{Start: lap + 1536, Stride: 32, Count: 1},
		stages.FrameRun{Start: lap + 1568, Stride: 96, Count: 1},
		stages.FrameRun{Start: lap + 1664, Stride: 384, Count: 1, Pad: true})
	expectNoBatch(t, f) // the last record's batch is still being built
}

// A batch is sent once it covers 256 KiB, so that the collector knows all
// but the last stretch of a log that never reserves.
func TestAllocatorSendsLongBatches(t *testing.T) {
	r, f := newFramesRig(t, 1<<20, 0)
	const stride = 4096 + layout.HeaderLen
	n := (256<<10 + stride - 1) / stride
	for range n {
		r.a.In <- appendReq(4096)
		r.item(t)
	}
	expectBatch(t, f, stages.FrameRun{Start: 0, Stride: stride, Count: uint64(n)})
	expectNoBatch(t, f)
}

// Records whose sizes change from one to the next cost a byte each while
// they are small: a batch is sent once it encodes 4 KiB.
func TestAllocatorBatchesMixedSizes(t *testing.T) {
	r, f := newFramesRig(t, 4<<30, 0) // a span of 512 KiB: the codes end the batch
	var want []stages.FrameRun
	pos := uint64(0)
	// A run is encoded once the next frame differs: the 4097th encodes the
	// 4096th, and the batch goes with both.
	for i := range 4097 {
		n := 32 * (i % 3) // strides 32, 64, 96 in turn
		r.a.In <- appendReq(n)
		r.item(t)
		want = append(want, stages.FrameRun{Start: pos, Stride: uint64(n) + 32, Count: 1})
		pos += uint64(n) + 32
	}
	expectBatch(t, f, want...)
	expectNoBatch(t, f)
}

// Half a channel of batches the collector has not taken signals it to take
// them, before the allocator would have to drop any.
func TestAllocatorSignalsHalfFullBatches(t *testing.T) {
	r, f := newFramesRig(t, 1<<20, 0)
	half := stages.BatchesCap / 2
	for i := range 2 * half {
		// Each record's batch goes on with the padding that aligns the
		// reservation after it, and is sent when the next record comes
		// after the gap, before the allocator takes the next request: by
		// the time the padding's item arrives, i batches were sent.
		r.a.In <- appendReq(0)
		r.expectItem(t, stages.ItemRecord, uint64(1024*i), 32)
		r.a.In <- reserveReq(0)
		r.expectItem(t, stages.ItemPad, uint64(1024*i+32), 480)
		r.expectItem(t, stages.ItemHole, uint64(1024*i+512), 512)
		if n := len(f.Batches()); n != i {
			t.Fatalf("%d batches sent after %d records, want %d", n, i+1, i)
		}
		select {
		case <-f.Half():
			if i != half {
				t.Fatalf("signalled at %d batches, want %d", i, half)
			}
			return
		default:
		}
	}
	t.Fatalf("no signal with %d batches waiting", len(f.Batches()))
}

// uncheckedRuns turns testhooks.CheckRuns off for a test that counts the
// collector's reads.
func uncheckedRuns(t *testing.T) {
	was := testhooks.CheckRuns.Swap(false)
	t.Cleanup(func() { testhooks.CheckRuns.Store(was) })
}

// countDev counts the bytes read from a device.
type countDev struct {
	device.Device
	read atomic.Int64
}

func (d *countDev) ReadAt(p []byte, off int64) (int, error) {
	d.read.Add(int64(len(p)))
	return d.Device.ReadAt(p, off)
}

// batchRig is a collector with a position checker, told of frames by
// batches, on a device that counts what it reads, with spec's frames laid
// out from start (layoutFrames). It runs with CheckRuns off.
type batchRig struct {
	*collectorRig
	mc   *mapChecker
	dev  *countDev
	recs []uint64
	end  uint64
}

func newBatchRig(t *testing.T, start uint64, spec []int) *batchRig {
	t.Helper()
	uncheckedRuns(t)
	mc := &mapChecker{garbage: map[uint64]bool{}}
	r := &batchRig{collectorRig: newCollectorRig(t, posChecker{mc}, start), mc: mc}
	r.dev = &countDev{Device: r.collectorRig.dev}
	r.c.Reader.Dev = r.dev
	r.c.Frames = stages.NewFrameRuns(r.geo)
	r.recs, r.end = layoutFrames(t, r.collectorRig, start, spec)
	return r
}

// Told the frames by batches, a collector with a position checker reads
// none of them; of frames no batch covers it reads the headers as before.
// Either way it asks about the same records and stops at the same place.
func TestCollectorReadsNoFrameABatchCovers(t *testing.T) {
	spec := []int{10, -96, 200, 0, -64, 50, 70, 3000}
	for _, c := range []struct {
		name     string
		drop     []int // frames (indexes into spec) no batch covers
		wantRead bool
	}{
		{"all", nil, false},
		{"one dropped", []int{2}, true},
		{"padding dropped", []int{4}, true},
		{"none", []int{0, 1, 2, 3, 4, 5, 6, 7}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := uint64(2*collectData + 1024)
			r := newBatchRig(t, start, spec)
			mc, dev, recs, end := r.mc, r.dev, r.recs, r.end
			var runs []stages.FrameRun // the batch being built
			send := func() {
				if len(runs) > 0 {
					r.c.Frames.Batches() <- stages.BatchOf(runs...)
					runs = nil
				}
			}
			pos := start
			for i, n := range spec {
				stride := uint64(-n)
				if n >= 0 {
					stride = layout.RoundUp(layout.HeaderLen+uint64(n), layout.HeaderLen)
				}
				if slices.Contains(c.drop, i) {
					send()
				} else {
					runs = append(runs, stages.FrameRun{Start: pos, Stride: stride, Count: 1, Pad: n < 0})
				}
				pos += stride
			}
			send()
			live := recs[5]
			for _, p := range recs {
				mc.set(p, p != live)
			}
			r.pub.Durable.Store(end)
			r.start(t)
			if err := r.collect(t); err != nil {
				t.Fatal(err)
			}
			r.expectHead(t, live, 2)
			if calls := mc.takeCalls(); fmt.Sprint(calls) != fmt.Sprint(recs[:6]) {
				t.Fatalf("checker asked about %v, want %v", calls, recs[:6])
			}
			if got := dev.read.Load(); (got > 0) != c.wantRead {
				t.Fatalf("read %d bytes, want reads: %v", got, c.wantRead)
			}
			// The rest, the live record now garbage.
			mc.set(live, true)
			if err := r.collect(t); err != nil {
				t.Fatal(err)
			}
			r.expectHead(t, end, 3)
			if got := dev.read.Load(); (got > 0) != c.wantRead {
				t.Fatalf("read %d bytes in all, want reads: %v", got, c.wantRead)
			}
		})
	}
}

// Runs of many frames are walked frame by frame: the collector stops at a
// live record inside one and resumes there.
func TestCollectorStopsInsideARun(t *testing.T) {
	start := uint64(collectData - 512)
	r := newBatchRig(t, start, []int{96, 96, 96, 96, -128, 0, 0, 0})
	mc, dev, recs, end := r.mc, r.dev, r.recs, r.end
	r.c.Frames.Batches() <- stages.BatchOf(
		stages.FrameRun{Start: start, Stride: 128, Count: 4},
		stages.FrameRun{Start: start + 512, Stride: 128, Count: 1, Pad: true},
		stages.FrameRun{Start: start + 640, Stride: 32, Count: 3})
	for _, p := range recs {
		mc.set(p, p != recs[2] && p != recs[5])
	}
	r.pub.Durable.Store(end)
	r.start(t)
	for i, stop := range []int{2, 5} {
		if err := r.collect(t); err != nil {
			t.Fatal(err)
		}
		r.expectHead(t, recs[stop], uint64(2+i))
		mc.set(recs[stop], true)
	}
	if err := r.collect(t); err != nil {
		t.Fatal(err)
	}
	r.expectHead(t, end, 4)
	if n := dev.read.Load(); n > 0 {
		t.Fatalf("read %d bytes", n)
	}
}

// Between two batches, even of records of one size, the collector reads:
// the frame there is none the batches describe.
func TestCollectorReadsBetweenBatches(t *testing.T) {
	r := newBatchRig(t, uint64(2*collectData+1024), []int{100, 300, 100})
	mc, dev, recs, end := r.mc, r.dev, r.recs, r.end
	r.c.Frames.Batches() <- stages.BatchOf(stages.FrameRun{Start: recs[0], Stride: 160, Count: 1})
	r.c.Frames.Batches() <- stages.BatchOf(stages.FrameRun{Start: recs[2], Stride: 160, Count: 1})
	for _, p := range recs {
		mc.set(p, true)
	}
	r.pub.Durable.Store(end)
	r.start(t)
	if err := r.collect(t); err != nil {
		t.Fatal(err)
	}
	r.expectHead(t, end, 2)
	if calls := mc.takeCalls(); fmt.Sprint(calls) != fmt.Sprint(recs) {
		t.Fatalf("checker asked about %v, want %v", calls, recs)
	}
	if dev.read.Load() == 0 {
		t.Fatal("the frame between the batches was not read")
	}
}

// A collector keeps batches up to MaxKept, however many the allocator
// sends, counting the memory their codes hold, and frees what it kept as
// its walk passes them.
func TestCollectorKeepsBoundedBatches(t *testing.T) {
	r := newCollectorRig(t, posChecker{&mapChecker{garbage: map[uint64]bool{}}}, 0)
	r.c.Frames = stages.NewFrameRuns(r.geo)
	pos := uint64(0)
	for range 2 * stages.MaxKept / stages.BatchCost / stages.BatchesCap {
		for range stages.BatchesCap {
			// One small record with room for 4 KiB of codes, as a batch
			// the allocator ended early has.
			b := stages.BatchOf(stages.FrameRun{Start: pos, Stride: 32, Count: 1})
			r.c.Frames.Batches() <- stages.WithRoom(b, 4096)
			pos += 64 // a gap after each
		}
		stages.TakeRuns(r.c)
		if n := stages.Kept(r.c); n > stages.MaxKept {
			t.Fatalf("collector keeps batches costing %d, more than %d", n, stages.MaxKept)
		}
	}
	// Each keeps no more room than its one code needs (a size class).
	if n, want := stages.KeptBatches(r.c), stages.MaxKept/(stages.BatchCost+16); n < want {
		t.Fatalf("collector keeps %d batches, want at least %d: it keeps room the codes do not use", n, want)
	}
	// A walk past them all frees them.
	if _, _, ok := stages.Known(r.c, pos); ok {
		t.Fatal("a position past every batch is known")
	}
	if n := stages.Kept(r.c); n != 0 {
		t.Fatalf("collector keeps batches costing %d after its walk passed them all", n)
	}
}
