package stages

import (
	"sync/atomic"
)

// Request states, in Request.State.
const (
	Waiting   int32 = iota // queued at the allocator
	Placed                 // the allocator gave it a position
	Cancelled              // the caller gave up before placement
)

// Kind of a Request.
const (
	KindAppend  = iota // payload copied by the writer, durable when finished
	KindReserve        // zero-copy: finished once placed
)

// Request is one Append or Reserve entering the allocator.
type Request struct {
	Waiter
	Kind    int
	Payload []byte // Append: not retained after the Waiter finishes
	N       int    // Reserve: payload bytes
	State   atomic.Int32
	Parked  atomic.Bool // it waited for free space
}

// NewRequest returns an Append request for p.
func NewRequest(kind int, p []byte, n int) *Request {
	return &Request{Waiter: Waiter{Done: make(chan struct{})}, Kind: kind, Payload: p, N: n}
}

// ItemKind says what the writer does with an Item.
type ItemKind int

// Item kinds.
const (
	ItemRecord ItemKind = iota // frame Req.Payload at Pos
	ItemPad                    // write a padding marker covering [Pos, Pos+Span)
	ItemHole                   // a reservation: the caller writes it, skip it
	ItemBlock                  // a reservation's header block: write Block at Pos
	ItemMark                   // the end of a burst (Allocator.Marks): write everything staged
)

// Item is a unit of work for the writer. The allocator sends Record, Pad and
// Hole items in position order; Block items come from Reservation.Commit in
// any order.
type Item struct {
	Kind  ItemKind
	Pos   uint64
	Span  uint64
	Req   *Request // ItemRecord
	Block []byte   // ItemBlock: aligned, one device block
	W     *Waiter  // ItemBlock
}

// Completion tells the committer that [Start, End) is written (or that
// writing it failed, Err).
type Completion struct {
	Start, End uint64
	Waiters    []*Waiter
	Err        error
	// Mark: every item the allocator placed before its mark is in this
	// completion or an earlier one (Committer.Marks).
	Mark bool
}

// Published are values stages publish for observers (Stats, Read, Scan).
// Each field has exactly one writer.
type Published struct {
	Head    atomic.Uint64 // collector
	Tail    atomic.Uint64 // allocator
	Durable atomic.Uint64 // committer

	Appends   atomic.Uint64 // committer: records made durable
	Bytes     atomic.Uint64 // committer: bytes of the data area made durable
	Groups    atomic.Uint64 // committer: group commits
	Parked    atomic.Uint64 // allocator: requests that waited for space
	Full      atomic.Bool   // allocator: the oldest request not placed waits for space
	Padding   atomic.Uint64 // allocator: bytes of padding emitted
	Passes    atomic.Uint64 // collector
	Collected atomic.Uint64 // collector: records found garbage
	Writes    atomic.Uint64 // writer: device writes issued
}

// send delivers v on ch unless quit closes first.
func send[T any](ch chan<- T, v T, quit <-chan struct{}) bool {
	select {
	case ch <- v:
		return true
	case <-quit:
		return false
	}
}
