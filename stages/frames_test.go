package stages_test

import (
	"fmt"
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

func expectRun(t *testing.T, f *stages.FrameRuns, want stages.FrameRun) {
	t.Helper()
	if got := recv(t, f.Runs(), "a frame run"); got != want {
		t.Fatalf("run %+v, want %+v", got, want)
	}
}

func expectNoRun(t *testing.T, f *stages.FrameRuns) {
	t.Helper()
	select {
	case got := <-f.Runs():
		t.Fatalf("unexpected run %+v", got)
	default:
	}
}

// The allocator joins neighbouring frames of one kind and size into a run
// and sends it once the next frame differs; padding gets runs of its own
// and a reservation none.
func TestAllocatorSendsFrameRuns(t *testing.T) {
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
	expectRun(t, f, stages.FrameRun{Start: start, Stride: 160, Count: 3})
	expectRun(t, f, stages.FrameRun{Start: lap - 64, Stride: 64, Count: 1, Pad: true})

	r.a.In <- reserveReq(100) // aligned to a block: padding first
	r.expectItem(t, stages.ItemPad, lap+160, 352)
	r.expectItem(t, stages.ItemHole, lap+512, 1024)
	expectRun(t, f, stages.FrameRun{Start: lap, Stride: 160, Count: 1})
	r.a.In <- appendReq(0)
	r.expectItem(t, stages.ItemRecord, lap+1536, 32)
	expectRun(t, f, stages.FrameRun{Start: lap + 160, Stride: 352, Count: 1, Pad: true})
	r.a.In <- appendReq(64)
	r.expectItem(t, stages.ItemRecord, lap+1568, 96)
	// The record after the reservation starts a run: the hole is not in
	// one, so the collector reads the reservation's header itself.
	expectRun(t, f, stages.FrameRun{Start: lap + 1536, Stride: 32, Count: 1})
	expectNoRun(t, f)
}

// A run of one size is sent once it covers 256 KiB, so that the collector
// knows all but the last stretch of a log whose records never change size.
func TestAllocatorSendsLongRuns(t *testing.T) {
	r, f := newFramesRig(t, 1<<20, 0)
	const stride = 4096 + layout.HeaderLen
	n := (256<<10 + stride - 1) / stride
	for range n {
		r.a.In <- appendReq(4096)
		r.item(t)
	}
	expectRun(t, f, stages.FrameRun{Start: 0, Stride: stride, Count: uint64(n)})
	expectNoRun(t, f)
}

const frameRunsHalf = 512 // half of the room in FrameRuns

// Half a channel of runs the collector has not taken signals it to take
// them, before the allocator would have to drop any.
func TestAllocatorSignalsHalfFullRuns(t *testing.T) {
	r, f := newFramesRig(t, 1<<20, 0)
	select {
	case <-f.Half():
		t.Fatal("signalled before any run")
	default:
	}
	for i := range 2048 {
		r.a.In <- appendReq(32 * (i % 2)) // strides alternate: a run each
		r.item(t)
		// The allocator sends a record's run after its item: the count
		// read here may lag one run behind the signal.
		select {
		case <-f.Half():
			if n := len(f.Runs()); n < frameRunsHalf {
				t.Fatalf("signalled at %d runs, want %d", n, frameRunsHalf)
			}
			return
		default:
		}
		if n := len(f.Runs()); n > frameRunsHalf+1 {
			t.Fatalf("no signal with %d runs waiting", n)
		}
	}
	t.Fatalf("no signal with %d runs waiting", len(f.Runs()))
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

// Told the frames by runs, a collector with a position checker reads none
// of them; of frames no run covers it reads the headers as before. Either
// way it asks about the same records and stops at the same place.
func TestCollectorReadsNoFrameARunCovers(t *testing.T) {
	uncheckedRuns(t)
	spec := []int{10, -96, 200, 0, -64, 50, 70, 3000}
	for _, c := range []struct {
		name     string
		drop     []int // frames (indexes into spec) no run covers
		wantRead bool
	}{
		{"all", nil, false},
		{"one dropped", []int{2}, true},
		{"padding dropped", []int{4}, true},
		{"none", []int{0, 1, 2, 3, 4, 5, 6, 7}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			mc := &mapChecker{garbage: map[uint64]bool{}}
			start := uint64(2*collectData + 1024)
			r := newCollectorRig(t, posChecker{mc}, start)
			dev := &countDev{Device: r.dev}
			r.c.Reader.Dev = dev
			r.c.Frames = stages.NewFrameRuns(r.geo)
			recs, end := layoutFrames(t, r, start, spec)
			pos, dropped := start, map[int]bool{}
			for _, i := range c.drop {
				dropped[i] = true
			}
			for i, n := range spec {
				stride := uint64(-n)
				if n >= 0 {
					stride = layout.RoundUp(layout.HeaderLen+uint64(n), layout.HeaderLen)
				}
				if !dropped[i] {
					r.c.Frames.Runs() <- stages.FrameRun{Start: pos, Stride: stride, Count: 1, Pad: n < 0}
				}
				pos += stride
			}
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

// Runs of one kind and size are joined only where one ends as the next
// starts: across a frame no run covers (a reservation, a run dropped) they
// stay apart, and the collector reads that frame.
func TestCollectorJoinsOnlyAdjacentRuns(t *testing.T) {
	uncheckedRuns(t)
	mc := &mapChecker{garbage: map[uint64]bool{}}
	start := uint64(2*collectData + 1024)
	r := newCollectorRig(t, posChecker{mc}, start)
	dev := &countDev{Device: r.dev}
	r.c.Reader.Dev = dev
	r.c.Frames = stages.NewFrameRuns(r.geo)
	recs, end := layoutFrames(t, r, start, []int{100, 300, 100})
	r.c.Frames.Runs() <- stages.FrameRun{Start: recs[0], Stride: 160, Count: 1}
	r.c.Frames.Runs() <- stages.FrameRun{Start: recs[2], Stride: 160, Count: 1}
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
		t.Fatal("the frame between the runs was not read")
	}
}

// A collector keeps at most maxRuns runs, however many the allocator sends.
func TestCollectorKeepsBoundedRuns(t *testing.T) {
	r := newCollectorRig(t, posChecker{&mapChecker{garbage: map[uint64]bool{}}}, 0)
	r.c.Frames = stages.NewFrameRuns(r.geo)
	pos := uint64(0)
	for range 2 * stages.MaxRuns / frameRunsHalf {
		for range frameRunsHalf {
			// A gap after each run keeps them apart.
			r.c.Frames.Runs() <- stages.FrameRun{Start: pos, Stride: 32, Count: 1}
			pos += 64
		}
		stages.TakeRuns(r.c)
	}
	if n := stages.RunsKept(r.c); n != stages.MaxRuns {
		t.Fatalf("collector keeps %d runs, want %d", n, stages.MaxRuns)
	}
}
