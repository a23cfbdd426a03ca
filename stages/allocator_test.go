package stages_test

import (
	"errors"
	"testing"

	"github.com/ringlog/ringlog/internal/layout"
	"github.com/ringlog/ringlog/stages"
)

const (
	allocSize = 16 << 10 // data area of the allocator tests
	allocBS   = 512      // block size of the allocator tests
)

type allocRig struct {
	a        *stages.Allocator
	out      chan stages.Item
	pressure chan struct{}
	pub      *stages.Published
	stop     func()
}

func newAllocRig(t *testing.T, head, tail uint64) *allocRig {
	t.Helper()
	r := &allocRig{out: make(chan stages.Item, 64), pressure: make(chan struct{}, 1), pub: new(stages.Published)}
	r.a = stages.NewAllocator(layout.Geometry{DataSize: allocSize}, allocBS, head, tail, r.out, r.pressure, r.pub)
	r.stop = runStage(t, r.a.Run)
	return r
}

func (r *allocRig) item(t *testing.T) stages.Item {
	t.Helper()
	return recv(t, r.out, "an item from the allocator")
}

// expectItem receives the next item and checks its kind, position and span.
func (r *allocRig) expectItem(t *testing.T, kind stages.ItemKind, pos, span uint64) stages.Item {
	t.Helper()
	it := r.item(t)
	if it.Kind != kind || it.Pos != pos || it.Span != span {
		t.Fatalf("item %+v, want kind %d pos %d span %d", it, kind, pos, span)
	}
	return it
}

func (r *allocRig) expectNoItem(t *testing.T) {
	t.Helper()
	select {
	case it := <-r.out:
		t.Fatalf("unexpected item %+v", it)
	default:
	}
}

// parkedAgain waits for the allocator to signal pressure, which it does each
// time it finds the head of its queue does not fit: after a request is sent,
// the signal proves the allocator has taken it in and evaluated the queue.
func (r *allocRig) parkedAgain(t *testing.T) {
	t.Helper()
	recv(t, r.pressure, "pressure from a parked request")
}

func appendReq(n int) *stages.Request {
	return stages.NewRequest(stages.KindAppend, make([]byte, n), n)
}

func reserveReq(n int) *stages.Request { return stages.NewRequest(stages.KindReserve, nil, n) }

func TestAllocatorPlacesInOrder(t *testing.T) {
	r := newAllocRig(t, 0, 0)
	a1, a2, res, a3 := appendReq(10), appendReq(0), reserveReq(100), appendReq(33)
	for _, q := range []*stages.Request{a1, a2, res, a3} {
		r.a.In <- q
	}
	it := r.expectItem(t, stages.ItemRecord, 0, 64)
	if it.Req != a1 {
		t.Fatal("first record is not the first request")
	}
	if it = r.expectItem(t, stages.ItemRecord, 64, 32); it.Req != a2 {
		t.Fatal("second record is not the second request")
	}
	// The reservation starts on a block: padding fills [96, 512).
	r.expectItem(t, stages.ItemPad, 96, 512-96)
	if it = r.expectItem(t, stages.ItemHole, 512, 1024); it.Req != res {
		t.Fatal("hole is not the reservation")
	}
	if it = r.expectItem(t, stages.ItemRecord, 1536, 96); it.Req != a3 {
		t.Fatal("last record is not the last request")
	}
	// A reservation is finished once placed; appends are finished later by
	// the committer.
	waitDone(t, &res.Waiter, "reservation")
	if res.Err != nil || res.Pos != 512 {
		t.Fatalf("reservation finished with pos %d, err %v", res.Pos, res.Err)
	}
	for _, q := range []*stages.Request{a1, a2, a3} {
		if isDone(&q.Waiter) {
			t.Fatal("allocator finished an append")
		}
		if q.State.Load() != stages.Placed {
			t.Fatalf("append state %d, want Placed", q.State.Load())
		}
	}
	if got := r.pub.Tail.Load(); got != 1536+96 {
		t.Fatalf("published tail %d, want %d", got, 1536+96)
	}
	if got := r.pub.Padding.Load(); got != 512-96 {
		t.Fatalf("published padding %d, want %d", got, 512-96)
	}
}

func TestAllocatorPadsAtWrap(t *testing.T) {
	// 64 bytes are left in the lap; a 160-byte record does not fit there.
	tail := uint64(3*allocSize - 64)
	r := newAllocRig(t, tail-8192, tail)
	a := appendReq(100)
	r.a.In <- a
	r.expectItem(t, stages.ItemPad, tail, 64)
	it := r.expectItem(t, stages.ItemRecord, 3*allocSize, 160)
	if it.Req != a {
		t.Fatal("record is not the request")
	}
	// A record that exactly fills the rest of the lap needs no padding.
	r.a.Freed <- 3 * allocSize // the record above is all that is left
	b := appendReq(allocSize - 160 - 32 - 32)
	r.a.In <- b
	r.expectItem(t, stages.ItemRecord, 3*allocSize+160, allocSize-160-32)
	c := appendReq(0)
	r.a.In <- c
	r.expectItem(t, stages.ItemRecord, 4*allocSize-32, 32)
	// The next request starts the next lap exactly, again without padding.
	r.a.Freed <- 4*allocSize - 32
	d := appendReq(0)
	r.a.In <- d
	r.expectItem(t, stages.ItemRecord, 4*allocSize, 32)
}

func TestAllocatorNoFrameStraddlesEnd(t *testing.T) {
	// Whatever the sizes, every item lies inside one lap, and the items tile
	// the positions without gaps.
	r := newAllocRig(t, 0, 0)
	sizes := []int{0, 1, 31, 32, 1000, 3000, 5000, 100, 7000, 4000, 2, 6000}
	pos := uint64(0)
	for round := range 4 {
		for i, n := range sizes {
			kind := stages.KindAppend
			if (i+round)%3 == 0 {
				kind = stages.KindReserve
				n++
			}
			q := stages.NewRequest(kind, make([]byte, n), n)
			r.a.In <- q
			for {
				it := r.item(t)
				if it.Pos != pos {
					t.Fatalf("item at %d, want %d (gap or overlap)", it.Pos, pos)
				}
				if it.Pos%allocSize+it.Span > allocSize {
					t.Fatalf("item %+v straddles the end of the area", it)
				}
				if it.Kind == stages.ItemHole && it.Pos%allocBS != 0 {
					t.Fatalf("reservation at %d is not block aligned", it.Pos)
				}
				if it.Span%layout.HeaderLen != 0 {
					t.Fatalf("item %+v: span not a multiple of the header", it)
				}
				pos += it.Span
				if it.Kind != stages.ItemPad {
					if it.Req != q {
						t.Fatal("item for another request")
					}
					break
				}
			}
			// Free everything: the test is about placement only.
			r.a.Freed <- pos
		}
	}
}

func TestAllocatorReservationAligned(t *testing.T) {
	// A reservation that is aligned already gets no padding; one at the end
	// of a lap with no room pads to the next lap.
	r := newAllocRig(t, 0, 1024)
	r.a.In <- reserveReq(512) // stride: header block + one block
	r.expectItem(t, stages.ItemHole, 1024, 1024)
	r.a.In <- reserveReq(513) // three blocks
	r.expectItem(t, stages.ItemHole, 2048, 1536)

	tail := uint64(allocSize - 608)
	r2 := newAllocRig(t, tail-4096, tail)
	q := reserveReq(100)
	r2.a.In <- q
	r2.expectItem(t, stages.ItemPad, tail, 608)
	r2.expectItem(t, stages.ItemHole, allocSize, 1024)
	waitDone(t, &q.Waiter, "reservation")
	if q.Pos != allocSize || q.Err != nil {
		t.Fatalf("reservation at %d, %v", q.Pos, q.Err)
	}
}

func TestAllocatorParksFIFOAndResumes(t *testing.T) {
	r := newAllocRig(t, 0, allocSize-1024)
	big := appendReq(2048 - 32) // does not fit in the 1024 left
	r.a.In <- big
	r.parkedAgain(t)
	small := appendReq(0) // would fit, but must wait behind big
	r.a.In <- small
	r.parkedAgain(t)
	r.expectNoItem(t)
	// small waits for space too, behind big: both are parked, once each.
	if !big.Parked.Load() || !small.Parked.Load() || r.pub.Parked.Load() != 2 || !r.pub.Full.Load() {
		t.Fatalf("parked flags %v %v, counter %d, full %v", big.Parked.Load(), small.Parked.Load(), r.pub.Parked.Load(), r.pub.Full.Load())
	}
	if isDone(&big.Waiter) || isDone(&small.Waiter) {
		t.Fatal("a parked request was finished")
	}
	// Freeing less than needed keeps both parked.
	r.a.Freed <- 1024
	r.parkedAgain(t)
	r.expectNoItem(t)
	// Room for big: it wraps to the next lap. small would then end in the
	// block the head is in, so it parks in turn.
	r.a.Freed <- 2048
	r.expectItem(t, stages.ItemPad, allocSize-1024, 1024)
	if it := r.expectItem(t, stages.ItemRecord, allocSize, 2048); it.Req != big {
		t.Fatal("first placed is not the first parked")
	}
	r.parkedAgain(t)
	r.expectNoItem(t)
	if !small.Parked.Load() || r.pub.Parked.Load() != 2 || !r.pub.Full.Load() {
		t.Fatalf("small parked %v, counter %d, full %v", small.Parked.Load(), r.pub.Parked.Load(), r.pub.Full.Load())
	}
	r.a.Freed <- 2560
	if it := r.expectItem(t, stages.ItemRecord, allocSize+2048, 32); it.Req != small {
		t.Fatal("second placed is not the second parked")
	}
	// An older head never moves the allocator's head back.
	r.a.Freed <- 0
	r.a.In <- appendReq(0)
	r.expectItem(t, stages.ItemRecord, allocSize+2048+32, 32)
	if r.pub.Full.Load() {
		t.Fatal("full with nothing waiting")
	}
}

func TestAllocatorBlockSlack(t *testing.T) {
	// The writer rewrites the whole block the tail ends in, so a record that
	// would end in the block the head is in must wait even though its bytes
	// alone fit.
	head := uint64(allocSize + 480)
	r := newAllocRig(t, head, 2*allocSize)
	q := appendReq(0)
	r.a.In <- q
	r.parkedAgain(t)
	r.expectNoItem(t)
	r.a.Freed <- allocSize + 512
	r.expectItem(t, stages.ItemRecord, 2*allocSize, 32)
}

func TestAllocatorSkipsCancelled(t *testing.T) {
	r := newAllocRig(t, 0, 0)
	c := appendReq(10)
	c.State.Store(stages.Cancelled)
	a := appendReq(20)
	r.a.In <- c
	r.a.In <- a
	if it := r.expectItem(t, stages.ItemRecord, 0, 64); it.Req != a {
		t.Fatal("cancelled request was placed")
	}
	if isDone(&c.Waiter) {
		t.Fatal("cancelled request finished by the allocator")
	}

	// A parked request cancelled by its caller (who then pokes) unblocks
	// the queue behind it.
	r2 := newAllocRig(t, 0, allocSize-1024)
	big, small := appendReq(4000), appendReq(0)
	r2.a.In <- big
	r2.parkedAgain(t)
	r2.a.In <- small
	r2.parkedAgain(t)
	if !big.State.CompareAndSwap(stages.Waiting, stages.Cancelled) {
		t.Fatal("parked request was not waiting")
	}
	r2.a.Poke <- struct{}{}
	if it := r2.expectItem(t, stages.ItemRecord, allocSize-1024, 32); it.Req != small {
		t.Fatal("request behind the cancelled one was not placed")
	}
	if isDone(&big.Waiter) {
		t.Fatal("cancelled request finished by the allocator")
	}
}

func TestAllocatorClosedOnQuit(t *testing.T) {
	r := newAllocRig(t, 0, allocSize-64)
	big, small, gone := appendReq(4000), reserveReq(100), appendReq(4000)
	gone.State.Store(stages.Cancelled)
	for _, q := range []*stages.Request{big, gone, small} {
		r.a.In <- q
		r.parkedAgain(t)
	}
	r.stop()
	for _, q := range []*stages.Request{big, small} {
		waitDone(t, &q.Waiter, "parked request")
		if !errors.Is(q.Err, stages.ErrClosed) {
			t.Fatalf("parked request finished with %v, want ErrClosed", q.Err)
		}
	}
	if isDone(&gone.Waiter) {
		t.Fatal("cancelled request finished at quit")
	}
	r.expectNoItem(t)
}

func TestAllocatorQuitWhileSending(t *testing.T) {
	// The writer stops reading after the padding that precedes a
	// reservation: the allocator is then blocked sending the hole, and must
	// still stop on quit, finishing the request it was placing.
	out := make(chan stages.Item) // unbuffered
	pub := new(stages.Published)
	a := stages.NewAllocator(layout.Geometry{DataSize: allocSize}, allocBS, 0, 96, out, make(chan struct{}, 1), pub)
	stop := runStage(t, a.Run)
	q := reserveReq(100)
	a.In <- q
	if it := recv(t, out, "padding"); it.Kind != stages.ItemPad || it.Pos != 96 || it.Span != 512-96 {
		t.Fatalf("first item %+v, want padding [96, 512)", it)
	}
	stop()
	waitDone(t, &q.Waiter, "request at quit")
	if !errors.Is(q.Err, stages.ErrClosed) {
		t.Fatalf("request finished with %v, want ErrClosed", q.Err)
	}
}

func TestAllocatorPublishesTailBeforeHandingOver(t *testing.T) {
	// Once the writer holds an item, the record can become durable and its
	// caller return before the allocator runs again: the published tail
	// must already cover it, or Stats would show Durable > Tail.
	out := make(chan stages.Item) // unbuffered: the receive is the hand-over
	pub := new(stages.Published)
	a := stages.NewAllocator(layout.Geometry{DataSize: allocSize}, allocBS, 0, 0, out, make(chan struct{}, 1), pub)
	runStage(t, a.Run)
	for i := range 50 {
		kind := stages.KindAppend
		if i%5 == 4 {
			kind = stages.KindReserve
		}
		a.In <- stages.NewRequest(kind, make([]byte, i*37), i*37+1)
		for {
			it := recv(t, out, "item")
			if it.Kind == stages.ItemPad {
				continue
			}
			if tail := pub.Tail.Load(); tail < it.Pos+it.Span {
				t.Fatalf("item [%d, %d) handed over with the published tail at %d", it.Pos, it.Pos+it.Span, tail)
			}
			a.Freed <- it.Pos + it.Span
			break
		}
	}
}
