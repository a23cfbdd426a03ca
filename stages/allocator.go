package stages

import (
	"fmt"
	"runtime"

	"github.com/ringlog/ringlog/internal/layout"
)

// Allocator owns the tail. It places requests at increasing virtual
// positions in arrival order, emits padding so that no frame straddles the
// end of the area (and so that reservations start on a block), and parks
// requests, first come first served, while the log is full.
type Allocator struct {
	In    chan *Request // from the API
	Freed chan uint64   // from the collector: the new durable head
	Poke  chan struct{} // a parked request was cancelled; capacity 1
	// Marks asks for a mark (Committer.Marks; the last caller woken of a
	// group sends it): the allocator lets the callers that are runnable
	// submit, places what it can, and sends an ItemMark after it.
	// Capacity 1.
	Marks    chan struct{}
	Out      chan<- Item // to the writer
	Pressure chan<- struct{}
	// Frames, if set, gets the frames placed, as runs.
	Frames *FrameRuns

	Geo       layout.Geometry
	BlockSize uint64 // alignment of reservations
	Pub       *Published
	// Failed, if set, reports the error that failed the log; queued
	// requests then end with it instead of waiting for space that a
	// failed journal will never free. Poke after it starts failing.
	Failed func() error

	head, tail uint64
	queue      []*Request
	parked     int         // queue[:parked] are marked Parked
	spare      []*Request  // backing array the queue restarts on when empty
	batch      *FrameBatch // placed frames not yet sent on Frames
	run        FrameRun    // the batch's last run, not yet encoded
}

// NewAllocator returns an allocator whose log holds [head, tail).
func NewAllocator(geo layout.Geometry, blockSize int, head, tail uint64, out chan<- Item, pressure chan<- struct{}, pub *Published) *Allocator {
	a := &Allocator{
		In: make(chan *Request, 1024), Freed: make(chan uint64, 16), Poke: make(chan struct{}, 1), Marks: make(chan struct{}, 1),
		Out: out, Pressure: pressure, Geo: geo, BlockSize: uint64(blockSize), Pub: pub,
		head: head, tail: tail, spare: make([]*Request, 0, 64),
	}
	a.queue = a.spare[:0]
	pub.Tail.Store(tail)
	return a
}

// Stride is the bytes a request takes in the data area, padding excluded.
func Stride(kind int, n int, blockSize uint64) uint64 {
	if kind == KindReserve {
		return layout.RoundUp(blockSize+uint64(n), blockSize)
	}
	return layout.RoundUp(layout.HeaderLen+uint64(n), layout.HeaderLen)
}

// Run is the allocator's goroutine; it returns when quit closes, finishing
// every request it still holds with ErrClosed.
func (a *Allocator) Run(quit <-chan struct{}) {
	for {
		mark := false
		select {
		case r := <-a.In:
			a.queue = append(a.queue, r)
			a.gather()
		case h := <-a.Freed:
			a.head = max(a.head, h)
		case <-a.Poke:
		case <-a.Marks:
			a.gather()
			mark = true
		case <-quit:
			a.closeAll()
			return
		}
		if !a.place(quit) || mark && !send(a.Out, Item{Kind: ItemMark}, quit) {
			a.closeAll()
			return
		}
	}
}

// gather lets callers that are runnable but have not yet submitted run
// first, then takes everything they queued: a burst of appends is placed and
// handed to the writer in one go instead of one scheduling round each.
func (a *Allocator) gather() {
	runtime.Gosched()
	for {
		select {
		case r := <-a.In:
			a.queue = append(a.queue, r)
		default:
			return
		}
	}
}

func (a *Allocator) closeAll() {
	for _, r := range a.queue {
		if r.State.CompareAndSwap(Waiting, Cancelled) {
			r.Finish(0, ErrClosed)
		}
	}
	a.queue, a.parked = nil, 0
}

// place gives positions to queued requests in order until one does not fit.
// It reports false if quit closed while it was sending.
func (a *Allocator) place(quit <-chan struct{}) bool {
	size := uint64(a.Geo.DataSize)
	if a.Failed != nil && len(a.queue) > 0 {
		if err := a.Failed(); err != nil {
			for _, r := range a.queue {
				if r.State.CompareAndSwap(Waiting, Cancelled) {
					r.Finish(0, fmt.Errorf("%w: %w", ErrFailed, err))
				}
			}
			clear(a.queue)
			a.queue, a.parked = a.queue[:0], 0
			a.Pub.Full.Store(false)
			return true
		}
	}
	for len(a.queue) > 0 {
		r := a.queue[0]
		if r.State.Load() == Cancelled {
			a.pop()
			continue
		}
		stride := Stride(r.Kind, r.N, a.BlockSize)
		pos := a.tail
		if r.Kind == KindReserve {
			pos = layout.RoundUp(pos, a.BlockSize)
		}
		if pos%size+stride > size {
			pos += size - pos%size // wrap: pad to the end of the lap
		}
		// The writer writes whole blocks, so the rest of the block the new
		// tail ends in is overwritten too: it must be free as well.
		if layout.RoundUp(pos+stride, a.BlockSize)-a.head > size {
			a.park()
			a.nudge()
			return true
		}
		if a.Pub.Full.Load() {
			// Before the writer has the item: its caller may be back
			// before this goroutine runs again.
			a.Pub.Full.Store(false)
		}
		if !r.State.CompareAndSwap(Waiting, Placed) {
			a.pop()
			continue
		}
		if !a.pad(pos, quit) {
			r.Finish(0, ErrClosed)
			return false
		}
		kind, reserve := ItemRecord, r.Kind == KindReserve
		if reserve {
			kind = ItemHole
		}
		// Publish the tail before the writer can see the item: once it has
		// it, the record may be durable, and its caller back, before this
		// goroutine runs again; Stats must never show Durable > Tail.
		a.Pub.Tail.Store(pos + stride)
		if !send(a.Out, Item{Kind: kind, Pos: pos, Span: stride, Req: r}, quit) {
			r.Finish(0, ErrClosed)
			return false
		}
		a.tail = pos + stride
		if !reserve {
			a.hint(pos, stride, false)
		}
		a.pop()
		if a.tail-a.head > size/4*3 {
			// Wake the collector before anyone has to wait for space.
			a.nudge()
		}
		if reserve {
			// An appended record may be durable, and its caller gone, by
			// now: only a reservation's request is still this goroutine's.
			r.Finish(pos, nil) // the caller now writes its bytes
		}
	}
	if a.Pub.Full.Load() {
		a.Pub.Full.Store(false) // nobody waits for space
	}
	return true
}

// pad emits padding markers covering [a.tail, to), in pieces a frame header
// can describe.
func (a *Allocator) pad(to uint64, quit <-chan struct{}) bool {
	const maxPad = 1 << 30
	for a.tail < to {
		n := to - a.tail
		if n > maxPad {
			// End the piece on a block so the writer can skip its body.
			n = (a.tail+maxPad)&^(layout.Align-1) - a.tail
		}
		if !send(a.Out, Item{Kind: ItemPad, Pos: a.tail, Span: n}, quit) {
			return false
		}
		a.Pub.Padding.Add(n)
		a.hint(a.tail, n, true)
		a.tail += n
	}
	return true
}

// park marks the request at the front, which does not fit, and every one
// queued behind it as waiting for space: they are placed first come, first
// served, so each of them waits for the front one. Each counts once in
// Published.Parked.
func (a *Allocator) park() {
	a.Pub.Full.Store(true)
	for _, r := range a.queue[a.parked:] {
		if !r.Parked.Swap(true) {
			a.Pub.Parked.Add(1)
		}
	}
	a.parked = len(a.queue)
}

func (a *Allocator) pop() {
	a.queue[0] = nil
	a.queue = a.queue[1:]
	a.parked = max(a.parked-1, 0)
	if len(a.queue) == 0 {
		clear(a.spare[:cap(a.spare)]) // stale if the queue outgrew it
		a.queue = a.spare[:0]         // restart on the first backing array
	}
}

// nudge asks the collector for a pass, without waiting.
func (a *Allocator) nudge() { signal(a.Pressure) }
