package stages

import (
	"container/heap"
	"context"
	"fmt"

	"github.com/ringlog/ringlog/internal/layout"
	"github.com/ringlog/ringlog/wal"
)

// Committer makes the tail durable in order. Writes complete out of order
// (reservations are committed whenever their callers finish); the committer
// keeps them in a min-heap by position, takes the contiguous run that starts
// at the durable tail, and commits one journal transaction with the new tail.
// That transaction's single fdatasync covers the run's data too, since the
// data was written before it. While it is in flight the next group gathers
// in the input channel.
type Committer struct {
	In chan Completion
	// Idle, if set, gets a token whenever the committer has nothing to
	// commit (Writer.Idle).
	Idle chan<- struct{}
	// Recycle, if set, takes waiter lists back to the writer.
	Recycle chan<- []*Waiter

	Journal  *wal.Journal
	Geo      layout.Geometry
	FormatID uint64
	Epoch    uint32
	Pub      *Published
	// OnFail is called once, from the committer's goroutine, when the log
	// must stop accepting writes.
	OnFail func(error)

	gen     uint64 // generation of the last tail record written
	durable uint64
	pending completionHeap
	group   []*Waiter
	failed  error
	buf     [layout.StateLen]byte
	tx      *wal.Tx // reused for every tail record
}

// NewCommitter returns a committer whose durable tail is tail, the last
// tail record having generation gen.
func NewCommitter(j *wal.Journal, geo layout.Geometry, formatID uint64, epoch uint32, gen, tail uint64, pub *Published) *Committer {
	pub.Durable.Store(tail)
	return &Committer{In: make(chan Completion, 1024), Journal: j, Geo: geo, FormatID: formatID, Epoch: epoch, Pub: pub, gen: gen, durable: tail}
}

// Run is the committer's goroutine.
func (c *Committer) Run(quit <-chan struct{}) {
	defer c.closeAll()
	c.signalIdle()
	for {
		select {
		case x := <-c.In:
			c.push(x)
		case <-quit:
			return
		}
	gather:
		for {
			select {
			case x := <-c.In:
				c.push(x)
			default:
				break gather
			}
		}
		c.advance()
		if len(c.pending) == 0 || c.pending[0].Start > c.durable {
			c.signalIdle()
		}
	}
}

// push and pop keep the heap with container/heap's Fix, which, unlike Push
// and Pop, does not box each completion into an interface: no allocation
// per group.
func (c *Committer) push(x Completion) {
	c.pending = append(c.pending, x)
	heap.Fix(&c.pending, len(c.pending)-1)
}

func (c *Committer) pop() Completion {
	x := c.pending[0]
	n := len(c.pending) - 1
	c.pending.Swap(0, n)
	c.pending[n] = Completion{}
	c.pending = c.pending[:n]
	if n > 0 {
		heap.Fix(&c.pending, 0)
	}
	return x
}

// recycle hands a spent waiter list back to the writer for reuse.
func (c *Committer) recycle(ws []*Waiter) {
	if c.Recycle == nil || cap(ws) == 0 {
		return
	}
	clear(ws)
	select {
	case c.Recycle <- ws[:0]:
	default:
	}
}

func (c *Committer) signalIdle() {
	if c.Idle == nil {
		return
	}
	select {
	case c.Idle <- struct{}{}:
	default:
	}
}

func (c *Committer) closeAll() {
	for _, x := range c.pending {
		for _, w := range x.Waiters {
			w.Finish(w.Pos, ErrClosed)
		}
	}
	c.pending = nil
}

// advance commits the contiguous run at the durable tail, if any.
func (c *Committer) advance() {
	c.group = c.group[:0]
	cursor := c.durable
	records := uint64(0)
	var werr error
	for len(c.pending) > 0 && (c.pending[0].Start <= cursor || c.failed != nil) {
		x := c.pop()
		cursor = max(cursor, x.End)
		c.group = append(c.group, x.Waiters...)
		records += uint64(len(x.Waiters))
		c.recycle(x.Waiters)
		if x.Err != nil && werr == nil {
			werr = x.Err
		}
	}
	if werr != nil && c.failed == nil {
		c.fail(werr)
	}
	if c.failed != nil {
		c.takeRest()
		for _, w := range c.group {
			w.Finish(w.Pos, fmt.Errorf("%w: %w", ErrFailed, c.failed))
		}
		return
	}
	if cursor == c.durable {
		for _, w := range c.group { // only possible for empty completions
			w.Finish(w.Pos, nil)
		}
		return
	}
	if err := c.commitTail(cursor); err != nil {
		c.fail(err)
		c.takeRest()
		for _, w := range c.group {
			w.Finish(w.Pos, fmt.Errorf("%w: %w", ErrFailed, err))
		}
		return
	}
	c.Pub.Bytes.Add(cursor - c.durable)
	c.durable = cursor
	c.Pub.Durable.Store(cursor)
	c.Pub.Appends.Add(records)
	c.Pub.Groups.Add(1)
	for _, w := range c.group {
		w.Finish(w.Pos, nil)
	}
}

// takeRest moves every completion still pending, contiguous or not, into
// the group: once the log has failed none can become durable, and their
// callers must not wait for the gaps before them to be filled.
func (c *Committer) takeRest() {
	for len(c.pending) > 0 {
		x := c.pop()
		c.group = append(c.group, x.Waiters...)
		c.recycle(x.Waiters)
	}
}

// commitTail writes both copies of the tail record in one transaction.
func (c *Committer) commitTail(tail uint64) error {
	t := layout.Tail{Gen: c.gen + 1, FormatID: c.FormatID, Tail: tail, Synced: c.durable, Epoch: c.Epoch}
	t.Encode(c.buf[:])
	tx := c.Journal.BeginWith(c.tx)
	c.tx = tx
	tx.Write(c.Geo.TailSlot(0), c.buf[:])
	tx.Write(c.Geo.TailSlot(1), c.buf[:])
	if err := c.Journal.Commit(context.Background(), tx); err != nil {
		return fmt.Errorf("ringlog: commit tail: %w", err)
	}
	c.gen = t.Gen
	return nil
}

func (c *Committer) fail(err error) {
	c.failed = err
	if c.OnFail != nil {
		c.OnFail(err)
	}
}
