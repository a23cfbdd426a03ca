package stages_test

import (
	"errors"
	"syscall"
	"testing"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/internal/layout"
	"github.com/ringlog/ringlog/stages"
)

const writerData = 16 << 10

type writerRig struct {
	dev  *recDev
	geo  layout.Geometry
	w    *stages.Writer
	out  chan stages.Completion
	pub  *stages.Published
	rd   *stages.FrameReader
	stop func()
}

func newWriterRig(t *testing.T, inner device.Device, geo layout.Geometry, epoch uint32, tail uint64) *writerRig {
	t.Helper()
	r := &writerRig{dev: &recDev{Device: inner}, geo: geo, out: make(chan stages.Completion, 64), pub: new(stages.Published)}
	w, err := stages.NewWriter(r.dev, geo, epoch, tail, r.out, r.pub)
	if err != nil {
		t.Fatal(err)
	}
	r.w = w
	r.rd = &stages.FrameReader{Dev: inner, Geo: geo}
	return r
}

func (r *writerRig) start(t *testing.T) { r.stop = runStage(t, r.w.Run) }

func (r *writerRig) completion(t *testing.T) stages.Completion {
	t.Helper()
	return recv(t, r.out, "a completion from the writer")
}

// record queues a record item for p at pos and returns its request.
func (r *writerRig) record(pos uint64, p []byte) *stages.Request {
	q := stages.NewRequest(stages.KindAppend, p, len(p))
	q.State.Store(stages.Placed)
	r.w.In <- stages.Item{Kind: stages.ItemRecord, Pos: pos, Span: appendStride(len(p)), Req: q}
	return q
}

// idle tells the writer the committer has nothing to do: it then writes
// what it has staged.
func (r *writerRig) idle() {
	select {
	case r.w.Idle <- struct{}{}:
	default:
	}
}

func (r *writerRig) pad(pos, span uint64) {
	r.w.In <- stages.Item{Kind: stages.ItemPad, Pos: pos, Span: span}
}

// checkWrites asserts that every device write since the last call covered
// whole blocks of the data area, and returns them.
func (r *writerRig) checkWrites(t *testing.T) [][2]int64 {
	t.Helper()
	ws := r.dev.take()
	bs := int64(r.dev.BlockSize())
	for _, w := range ws {
		if w[0]%bs != 0 || w[1]%bs != 0 {
			t.Fatalf("write [%d, +%d) is not whole blocks", w[0], w[1])
		}
		if w[0] < r.geo.DataOff || w[0]+w[1] > r.geo.DataOff+r.geo.DataSize {
			t.Fatalf("write [%d, +%d) outside the data area [%d, +%d)", w[0], w[1], r.geo.DataOff, r.geo.DataSize)
		}
	}
	return ws
}

func expectCompletion(t *testing.T, c stages.Completion, start, end uint64, reqs ...*stages.Request) {
	t.Helper()
	if c.Start != start || c.End != end || c.Err != nil {
		t.Fatalf("completion [%d, %d) err %v, want [%d, %d)", c.Start, c.End, c.Err, start, end)
	}
	if len(c.Waiters) != len(reqs) {
		t.Fatalf("completion has %d waiters, want %d", len(c.Waiters), len(reqs))
	}
	for i, q := range reqs {
		if c.Waiters[i] != &q.Waiter {
			t.Fatalf("waiter %d is not request %d's", i, i)
		}
	}
}

func TestWriterFramesAndCoalesces(t *testing.T) {
	geo := testGeo(writerData)
	r := newWriterRig(t, device.NewMem(geo.Offset+geo.Size), geo, 7, 0)
	sizes := []int{0, 1, 100, 31, 32, 33, 600, 1500, 5}
	var reqs []*stages.Request
	var ps [][]byte
	var pos []uint64
	cur := uint64(0)
	// Everything is queued before the writer runs: it must gather it all
	// into one write and one completion.
	for i, n := range sizes {
		p := payload(n, uint64(i))
		reqs = append(reqs, r.record(cur, p))
		ps = append(ps, p)
		pos = append(pos, cur)
		cur += appendStride(n)
	}
	r.idle()
	r.start(t)
	c := r.completion(t)
	expectCompletion(t, c, 0, cur, reqs...)
	if got := r.pub.Writes.Load(); got != 1 {
		t.Fatalf("%d device writes, want 1 (coalesced)", got)
	}
	r.stop()
	if ws := r.checkWrites(t); len(ws) != 1 || ws[0][0] != geo.DataOff {
		t.Fatalf("writes %v, want one at the start of the data area", ws)
	}
	for i := range sizes {
		if reqs[i].Pos != pos[i] {
			t.Fatalf("request %d: position %d, want %d", i, reqs[i].Pos, pos[i])
		}
		if isDone(&reqs[i].Waiter) {
			t.Fatal("the writer finished a waiter; only the committer may")
		}
		expectRecord(t, r.rd, pos[i], 7, ps[i])
	}
}

func TestWriterCarriesPartialBlock(t *testing.T) {
	geo := testGeo(writerData)
	mem := device.NewMem(geo.Offset + geo.Size)
	r := newWriterRig(t, mem, geo, 3, 0)
	r.start(t)
	p1 := payload(40, 1) // stride 96: the tail ends inside block 0
	q1 := r.record(0, p1)
	r.idle()
	expectCompletion(t, r.completion(t), 0, 96, q1)
	p2 := payload(500, 2) // [96, 640): crosses into block 1
	q2 := r.record(96, p2)
	r.idle()
	expectCompletion(t, r.completion(t), 96, 640, q2)
	p3 := payload(10, 3) // [640, 704)
	q3 := r.record(640, p3)
	r.idle()
	expectCompletion(t, r.completion(t), 640, 704, q3)
	ws := r.checkWrites(t)
	// Each write starts at the block holding the previous tail: the staged
	// partial block is written again with the bytes it already held.
	want := [][2]int64{{geo.DataOff, 512}, {geo.DataOff, 1024}, {geo.DataOff + 512, 512}}
	if len(ws) != len(want) {
		t.Fatalf("writes %v, want %v", ws, want)
	}
	for i := range want {
		if ws[i] != want[i] {
			t.Fatalf("writes %v, want %v", ws, want)
		}
	}
	expectRecord(t, r.rd, 0, 3, p1)
	expectRecord(t, r.rd, 96, 3, p2)
	expectRecord(t, r.rd, 640, 3, p3)
	r.stop()

	// A new writer (a reopened log) continuing at a tail inside a block
	// reads that block first, so the records before the tail survive.
	r2 := newWriterRig(t, mem, geo, 4, 704)
	r2.start(t)
	p4 := payload(300, 4)
	q4 := r2.record(704, p4)
	r2.idle()
	expectCompletion(t, r2.completion(t), 704, 704+appendStride(300), q4)
	r2.stop()
	expectRecord(t, r.rd, 640, 3, p3)
	expectRecord(t, r.rd, 704, 4, p4)
	expectRecord(t, r.rd, 0, 3, p1)
}

func TestWriterPaddingHolesAndWrap(t *testing.T) {
	geo := testGeo(writerData)
	mem := device.NewMem(geo.Offset + geo.Size)
	base := uint64(3*writerData - 4096) // 4 KiB before the end of the third lap
	r := newWriterRig(t, mem, geo, 9, base)
	r.start(t)

	p1 := payload(20, 1)
	q1 := r.record(base, p1) // [0, 64)
	r.pad(base+64, 448)      // [64, 512)
	hole := stages.Item{Kind: stages.ItemHole, Pos: base + 512, Span: 1024}
	r.w.In <- hole
	p2 := payload(100, 2)
	q2 := r.record(base+1536, p2) // [1536, 1696)
	r.idle()
	expectCompletion(t, r.completion(t), base, base+512, q1)
	expectCompletion(t, r.completion(t), base+1536, base+1696, q2)

	// The reservation's header block arrives later; it is reported on its
	// own, covering the hole.
	w := stages.NewWaiter()
	block := device.AlignedBuffer(512)
	layout.PutHeader(block, layout.Header{Pos: base + 512, Length: 512, Epoch: 9, DataOff: 512, Kind: layout.KindRecord})
	rp := payload(512, 5)
	if _, err := mem.WriteAt(rp, geo.Phys(base+512)+512); err != nil {
		t.Fatal(err)
	}
	layout.Seal(block, rp)
	r.w.Blocks <- stages.Item{Kind: stages.ItemBlock, Pos: base + 512, Span: 1024, Block: block, W: w}
	c := r.completion(t)
	if c.Start != base+512 || c.End != base+1536 || len(c.Waiters) != 1 || c.Waiters[0] != w || c.Err != nil {
		t.Fatalf("block completion %+v", c)
	}
	expectRecord(t, r.rd, base, 9, p1)
	expectPad(t, r.rd, base+64, 448)
	expectRecord(t, r.rd, base+512, 9, rp)
	expectRecord(t, r.rd, base+1536, 9, p2)

	// Pad to the end of the lap and start the next one.
	end := uint64(3 * writerData)
	r.pad(base+1696, end-base-1696)
	p3 := payload(7, 3)
	q3 := r.record(end, p3)
	r.idle()
	var got []stages.Completion
	for cur := base + 1696; cur < end+64; {
		c := r.completion(t)
		if c.Start != cur || c.Err != nil {
			t.Fatalf("completion %+v, want one starting at %d", c, cur)
		}
		got = append(got, c)
		cur = c.End
	}
	if last := got[len(got)-1]; len(last.Waiters) != 1 || last.Waiters[0] != &q3.Waiter {
		t.Fatalf("the record after the wrap is not in the last completion: %+v", got)
	}
	for _, c := range got {
		if c.Start < end && c.End > end {
			t.Fatalf("completion %+v straddles the end of the lap", c)
		}
	}
	r.stop()
	r.checkWrites(t)
	expectPad(t, r.rd, base+1696, end-base-1696)
	expectRecord(t, r.rd, end, 9, p3)
	expectRecord(t, r.rd, base+1536, 9, p2)
}

func TestWriterFailureIsSticky(t *testing.T) {
	geo := testGeo(writerData)
	mem := device.NewMem(geo.Offset + geo.Size)
	f := device.NewFaulty(mem, device.Fault{Op: device.OpWrite, N: 2})
	r := newWriterRig(t, f, geo, 1, 0)
	r.start(t)
	q1 := r.record(0, payload(10, 1))
	r.idle()
	expectCompletion(t, r.completion(t), 0, 64, q1)
	q2 := r.record(64, payload(10, 2))
	r.idle()
	c := r.completion(t)
	if !errors.Is(c.Err, syscall.EIO) || !device.IsInjected(c.Err) || len(c.Waiters) != 1 || c.Waiters[0] != &q2.Waiter {
		t.Fatalf("completion after a failed write: %+v", c)
	}
	// Later writes would succeed on the device, but the writer never
	// forgets a failure: everything after it is reported failed.
	q3 := r.record(128, payload(10, 3))
	r.idle()
	if c := r.completion(t); !errors.Is(c.Err, syscall.EIO) || c.Start != 128 || c.Waiters[0] != &q3.Waiter {
		t.Fatalf("completion after the failure: %+v", c)
	}
	w := stages.NewWaiter()
	r.w.Blocks <- stages.Item{Kind: stages.ItemBlock, Pos: 512, Span: 1024, Block: device.AlignedBuffer(512), W: w}
	if c := r.completion(t); !errors.Is(c.Err, syscall.EIO) || c.Waiters[0] != w {
		t.Fatalf("block completion after the failure: %+v", c)
	}
	if n := f.Count(device.OpWrite); n != 2 {
		t.Fatalf("%d device writes, want 2: nothing is written after a failure", n)
	}
}

// notifyDev signals each completed write.
type notifyDev struct {
	device.Device
	wrote chan struct{}
}

func (d *notifyDev) WriteAt(p []byte, off int64) (int, error) {
	n, err := d.Device.WriteAt(p, off)
	d.wrote <- struct{}{}
	return n, err
}

func TestWriterClosesWaitersOnQuit(t *testing.T) {
	// The committer is not reading: the writer blocks reporting, and on
	// quit finishes the waiters it holds with ErrClosed.
	geo := testGeo(writerData)
	dev := &notifyDev{Device: device.NewMem(geo.Offset + geo.Size), wrote: make(chan struct{}, 16)}
	out := make(chan stages.Completion) // unbuffered, never read
	w, err := stages.NewWriter(dev, geo, 1, 0, out, new(stages.Published))
	if err != nil {
		t.Fatal(err)
	}
	r := &writerRig{w: w}
	q1 := r.record(0, payload(10, 1))
	q2 := r.record(64, payload(10, 2))
	r.idle()
	stop := runStage(t, w.Run)
	// The writer coalesces both into one write, then reports it: once the
	// write is done the writer holds the waiters and is blocked reporting.
	recv(t, dev.wrote, "the data write")
	stop()
	for _, q := range []*stages.Request{q1, q2} {
		waitDone(t, &q.Waiter, "waiter at quit")
		if !errors.Is(q.Err, stages.ErrClosed) {
			t.Fatalf("waiter finished with %v, want ErrClosed", q.Err)
		}
	}

	// Same for a reservation's header block.
	dev2 := &notifyDev{Device: device.NewMem(geo.Offset + geo.Size), wrote: make(chan struct{}, 16)}
	w2, err := stages.NewWriter(dev2, geo, 1, 0, make(chan stages.Completion), new(stages.Published))
	if err != nil {
		t.Fatal(err)
	}
	stop2 := runStage(t, w2.Run)
	bw := stages.NewWaiter()
	w2.Blocks <- stages.Item{Kind: stages.ItemBlock, Pos: 0, Span: 1024, Block: device.AlignedBuffer(512), W: bw}
	recv(t, dev2.wrote, "the header block write")
	stop2()
	waitDone(t, bw, "block waiter at quit")
	if !errors.Is(bw.Err, stages.ErrClosed) {
		t.Fatalf("block waiter finished with %v, want ErrClosed", bw.Err)
	}
}

func TestWriterWritesEarlyWhenMuchIsStaged(t *testing.T) {
	// Without an idle committer the writer still writes once 64 KiB or
	// more are staged.
	geo := testGeo(256 << 10)
	r := newWriterRig(t, device.NewMem(geo.Size), geo, 1, 0)
	var reqs []*stages.Request
	cur := uint64(0)
	for i := range 70 {
		reqs = append(reqs, r.record(cur, payload(1000, uint64(i))))
		cur += appendStride(1000)
	}
	r.start(t)
	expectCompletion(t, r.completion(t), 0, cur, reqs...)
	r.stop()
	for i, q := range reqs {
		expectRecord(t, r.rd, q.Pos, 1, payload(1000, uint64(i)))
	}
}
