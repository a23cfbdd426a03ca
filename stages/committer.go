package stages

import (
	"container/heap"
	"context"
	"fmt"
	"time"

	"github.com/ringlog/ringlog/internal/layout"
	"github.com/ringlog/ringlog/wal"
)

// Committer makes the tail durable in order. Writes complete out of order
// (reservations are committed whenever their callers finish); the committer
// keeps them in a min-heap by position, takes the contiguous run that starts
// where the last group ended, and submits one journal transaction for it.
// That transaction's single fdatasync covers the run's data too, since the
// data was written before it.
//
// The tail record is a bound, not the tail itself: recovery verifies every
// frame up to it and ends the tail at the first that fails, so a bound past
// the data costs nothing but a longer walk at Open. When a group ends past
// the bound, its transaction sets a new one Ahead bytes further; the groups
// after it, until one crosses that, commit with an empty transaction, a
// sync barrier (wal.Journal), which writes nothing to the journal. On a
// disk that serves one request at a time, the journal's extra write costs
// each group commit about a tenth of its time.
//
// Up to Depth groups are in flight at once: while earlier syncs are still
// running the next group is submitted, so a disk that overlaps flushes
// serves more groups per second. Groups are released strictly in order,
// each once its own sync, every earlier one and every later one that
// overlapped it have returned (wal.Options.MaxInFlight).
//
// With Depth 1 and Marks, one group at a time: the committer waits for the
// callers it wakes to append again (Marks) and syncs a group that needs no
// new bound itself (wal.Journal.Sync), which takes two goroutine hand-offs
// off every group commit.
type Committer struct {
	In chan Completion
	// Idle, if set, gets a token whenever a slot for a group is free, or
	// stays free after the groups the committer has are submitted, with
	// nothing to put in it (Writer.Idle).
	Idle chan<- struct{}
	// Recycle, if set, takes waiter lists back to the writer.
	Recycle chan<- []*Waiter
	// Marks, if set, is Allocator.Marks, for a committer of Depth 1.
	// After each group it releases, the committer has a mark asked for
	// and submits the next group only once the mark has come back
	// through the writer. The group's callers ask for it: the last one
	// woken (FinishChain) sends the token as it passes on, so that the
	// allocator marks only once every caller of the group has had its
	// turn; the allocator yields before it marks (Allocator.gather), so
	// the last caller's own next append, made just after, joins too, as
	// do the others that append again at once. Without the wait that
	// group would be submitted with the first of them only, the rest would
	// wait for its sync, and the callers would stay split in two groups
	// for good, each paying a whole flush. Asked for by the committer
	// itself, the mark came while the chain was still running whenever
	// the allocator got the other processor: groups of 64 callers
	// averaged about 53 records, and the rest waited a flush.
	Marks chan<- struct{}
	// MarkWait bounds that wait for the callers (0: DefaultMarkWait). Once
	// it has passed since the group was released, the committer asks for
	// the mark itself: the chain moves only as its callers get a processor
	// (each runs its own code before the next does), and on a busy process
	// one slow caller would otherwise hold back every other writer's next
	// group.
	MarkWait time.Duration

	Journal  *wal.Journal
	Geo      layout.Geometry
	FormatID uint64
	Epoch    uint32
	Pub      *Published
	// Depth is how many groups may be in flight at once (at least 1; the
	// journal's MaxInFlight should be as large, or its syncs do not
	// overlap).
	Depth int
	// Ahead is how far past a group's end a new tail bound is set (0: the
	// bound is the group's end, a tail record per group). The bound never
	// passes the head by more than the data area: Open rejects that.
	Ahead uint64
	// OnFail is called once, from the committer's goroutine, when the log
	// must stop accepting writes.
	OnFail func(error)

	gen     uint64 // generation of the last tail record submitted
	durable uint64 // end of the last group released
	issued  uint64 // end of the last group submitted
	bound   uint64 // tail of the last tail record submitted
	pending completionHeap
	flights []*tailFlight // submitted, oldest first
	synced  []*tailFlight // durable, their waiters not yet woken
	spare   []*tailFlight
	failed  error
	marking bool // a mark was asked for and has not come back
	// markTimer, while markDue, runs for the mark being waited for
	// (MarkWait).
	markTimer *time.Timer
	markDue   bool
	buf       [layout.StateLen]byte
	onIdle    func() // tests: called each time Run is about to wait
}

// tailFlight is one group between the submission of its transaction and
// its release.
type tailFlight struct {
	tx      *wal.Tx // reused through BeginWith
	group   []*Waiter
	end     uint64
	records uint64
}

// NewCommitter returns a committer whose durable tail is tail, the last
// tail record having generation gen.
func NewCommitter(j *wal.Journal, geo layout.Geometry, formatID uint64, epoch uint32, gen, tail uint64, pub *Published) *Committer {
	pub.Durable.Store(tail)
	return &Committer{In: make(chan Completion, 1024), Journal: j, Geo: geo, FormatID: formatID, Epoch: epoch, Pub: pub, Depth: 1,
		gen: gen, durable: tail, issued: tail, bound: tail}
}

// Run is the committer's goroutine.
func (c *Committer) Run(quit <-chan struct{}) {
	defer c.closeAll()
	for {
		// Everything already queued joins the next group: that is the
		// whole of group commit, with no timer.
	gather:
		for {
			select {
			case x := <-c.In:
				c.push(x)
			default:
				break gather
			}
		}
		// Whatever this goroutine readies last runs first on its processor
		// once it blocks. So the callers of released groups are woken
		// first (the head of each chain: FinishChain), the writer's token
		// comes next, and the journal's goroutine, which starts the next
		// group's sync, is readied last.
		c.wake()
		// The writer is told to write what it has staged only when a slot
		// will be free with nothing in it: a token sent while completions
		// sit unread in In would have it write early for nothing.
		tokened := false
		for c.ready() && len(c.flights) < c.depth() && (!c.marking || c.failed != nil) {
			if !tokened && len(c.flights)+1 < c.depth() {
				// A slot stays free after this group (gather has taken
				// every completion there was).
				signal(c.Idle)
				tokened = true
			}
			c.submit()
		}
		if !tokened && len(c.flights) < c.depth() && !c.marking {
			signal(c.Idle)
		}
		if len(c.synced) > 0 {
			continue // synced here (inline): wake its callers first
		}
		var oldest <-chan struct{}
		if len(c.flights) > 0 {
			oldest = c.flights[0].tx.Done()
		}
		if c.onIdle != nil {
			c.onIdle()
		}
		var late <-chan time.Time
		if c.markDue {
			late = c.markTimer.C
		}
		select {
		case x := <-c.In:
			c.push(x)
		case <-oldest:
			c.release()
		case <-late:
			c.markDue = false
			signal(c.Marks) // the callers' token, if it comes, adds a mark
		case <-quit:
			return
		}
	}
}

// DefaultMarkWait is Committer.MarkWait's default: some twenty times what
// waking 64 callers one after another takes.
const DefaultMarkWait = time.Millisecond

// awaitMark starts the wait for the mark the next group needs.
func (c *Committer) awaitMark() {
	c.marking = true
	wait := c.MarkWait
	if wait <= 0 {
		wait = DefaultMarkWait
	}
	if c.markTimer == nil {
		c.markTimer = time.NewTimer(wait)
	} else {
		c.markTimer.Reset(wait)
	}
	c.markDue = true
}

// markCame ends the wait for a mark.
func (c *Committer) markCame() {
	c.marking = false
	if c.markDue {
		c.markTimer.Stop()
		c.markDue = false
	}
}

func (c *Committer) depth() int { return max(c.Depth, 1) }

// ready reports whether submit has something to do: a completion where the
// last group ended, or, once failed, any completion at all.
func (c *Committer) ready() bool {
	return len(c.pending) > 0 && (c.pending[0].Start <= c.issued || c.failed != nil)
}

// push and pop keep the heap with container/heap's Fix, which, unlike Push
// and Pop, does not box each completion into an interface: no allocation
// per group.
func (c *Committer) push(x Completion) {
	if x.Err != nil && c.failed == nil {
		// A failed write fails the log at once, wherever it lies: the
		// callers of completions past a gap (an open reservation) must
		// not wait for the gap to be filled, and new writes must be
		// refused now, not once it is.
		c.fail(x.Err)
	}
	if x.Mark {
		c.markCame()
		if x.Start == x.End && len(x.Waiters) == 0 && x.Err == nil {
			return
		}
	}
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

// closeAll runs when the log closes. The journal outlives the stages, so
// the groups in flight get their real outcome; completions not yet
// submitted get ErrClosed.
func (c *Committer) closeAll() {
	c.markCame()
	for len(c.flights) > 0 {
		<-c.flights[0].tx.Done()
		c.release()
		c.wake() // in order: a later group may fail
	}
	for _, x := range c.pending {
		for _, w := range x.Waiters {
			w.Finish(w.Pos, ErrClosed)
		}
	}
	c.pending = nil
	c.exactTail()
}

// flight returns a tailFlight for the next group, reusing a released one.
func (c *Committer) flight() *tailFlight {
	if n := len(c.spare); n > 0 {
		f := c.spare[n-1]
		c.spare = c.spare[:n-1]
		return f
	}
	return new(tailFlight)
}

// submit takes the contiguous run that starts where the last group ended
// and submits its transaction: a new tail bound if the run ends past the
// current one, a sync barrier otherwise.
func (c *Committer) submit() {
	f := c.flight()
	cursor := c.issued
	for len(c.pending) > 0 && (c.pending[0].Start <= cursor || c.failed != nil) {
		x := c.pop()
		cursor = max(cursor, x.End)
		f.group = append(f.group, x.Waiters...)
		f.records += uint64(len(x.Waiters))
		c.recycle(x.Waiters)
	}
	if c.failed != nil { // push failed the log on any completion with Err
		c.failGroup(f)
		return
	}
	if cursor == c.issued {
		// Only empty completions: durable once every group before them is.
		if n := len(c.flights); n > 0 {
			last := c.flights[n-1]
			last.group = append(last.group, f.group...)
			last.records += f.records
			c.reuse(f)
			return
		}
		c.finish(f, nil)
		return
	}
	if cursor <= c.bound && c.inline() {
		// Nothing in flight and no bound to write: the sync is the
		// whole commit, and this goroutine would only wait for it.
		f.end, c.issued = cursor, cursor
		if err := c.Journal.Sync(); err != nil {
			c.fail(fmt.Errorf("ringlog: commit tail: %w", err))
			c.failGroup(f)
			return
		}
		c.durableGroup(f)
		return
	}
	f.tx = c.Journal.BeginWith(f.tx)
	gen, bound := c.gen, c.bound
	if cursor > c.bound {
		gen, bound = c.gen+1, c.boundFor(cursor)
		c.writeTail(f.tx, layout.Tail{Gen: gen, FormatID: c.FormatID, Tail: bound, Synced: c.durable, Epoch: c.Epoch})
	}
	if err := c.Journal.Submit(f.tx); err != nil {
		c.fail(fmt.Errorf("ringlog: commit tail: %w", err))
		c.failGroup(f)
		return
	}
	c.gen, c.bound = gen, bound
	f.end = cursor
	c.issued = cursor
	c.flights = append(c.flights, f)
}

// boundFor is the tail bound for a group that ends at cursor.
func (c *Committer) boundFor(cursor uint64) uint64 {
	// The head is published once it is durable, so the head Open finds is
	// never behind it.
	limit := c.Pub.Head.Load() + uint64(c.Geo.DataSize)
	b := min(cursor+c.Ahead, limit) &^ (layout.HeaderLen - 1)
	return max(b, cursor)
}

// writeTail adds tail record t to tx, in both slots.
func (c *Committer) writeTail(tx *wal.Tx, t layout.Tail) {
	t.Encode(c.buf[:])
	tx.Write(c.Geo.TailSlot(0), c.buf[:])
	tx.Write(c.Geo.TailSlot(1), c.buf[:])
}

// exactTail, at Close, brings the tail bound back to the durable tail, so
// that the next Open has nothing to verify. It is best effort: a bound
// ahead is safe, only slower to open.
func (c *Committer) exactTail() {
	if c.failed != nil || c.bound == c.durable {
		return
	}
	tx := c.Journal.Begin()
	c.writeTail(tx, layout.Tail{Gen: c.gen + 1, FormatID: c.FormatID, Tail: c.durable, Synced: c.durable, Epoch: c.Epoch})
	if c.Journal.Commit(context.Background(), tx) == nil {
		c.gen, c.bound = c.gen+1, c.durable
	}
}

// release handles the outcome of the oldest group in flight, whose Done
// token has been received. The journal completes transactions in order, so
// a nil outcome means every earlier group is durable too.
func (c *Committer) release() {
	f := c.flights[0]
	// Shift down rather than reslice, so the array is reused for ever.
	n := copy(c.flights, c.flights[1:])
	c.flights[n] = nil
	c.flights = c.flights[:n]
	if err := f.tx.Result(); err != nil {
		if c.failed == nil {
			c.fail(fmt.Errorf("ringlog: commit tail: %w", err))
		}
		c.failGroup(f)
		return
	}
	c.durableGroup(f)
}

// inline reports whether a group that needs no new bound is synced in
// this goroutine: one group at a time, marks on.
func (c *Committer) inline() bool { return c.Marks != nil && c.depth() == 1 && len(c.flights) == 0 }

// durableGroup records that group f is durable, queues its callers to be
// woken, and, with Marks, has them ask for the mark the next group waits
// for.
func (c *Committer) durableGroup(f *tailFlight) {
	c.Pub.Bytes.Add(f.end - c.durable)
	c.durable = f.end
	c.Pub.Durable.Store(f.end)
	c.Pub.Appends.Add(f.records)
	c.Pub.Groups.Add(1)
	c.synced = append(c.synced, f)
	if c.Marks != nil {
		c.awaitMark()
	}
}

// wake finishes the waiters of every released group.
func (c *Committer) wake() {
	for i, f := range c.synced {
		// With Marks, every released group's callers ask for the next
		// mark (durableGroup is the only way into synced).
		FinishChain(f.group, nil, c.Marks)
		c.reuse(f)
		c.synced[i] = nil
	}
	c.synced = c.synced[:0]
}

// finish finishes a group's waiters and keeps the flight for reuse.
func (c *Committer) finish(f *tailFlight, err error) {
	for _, w := range f.group {
		w.Finish(w.Pos, err)
	}
	c.reuse(f)
}

// reuse empties a flight whose waiters are finished or moved elsewhere and
// keeps it for the next group; its tx stays for BeginWith.
func (c *Committer) reuse(f *tailFlight) {
	clear(f.group)
	f.group, f.records, f.end = f.group[:0], 0, 0
	c.spare = append(c.spare, f)
}

// failGroup fails f's waiters, and with them every completion still
// pending, contiguous or not: once the log has failed none can become
// durable, and their callers must not wait for the gaps before them to be
// filled. Groups already submitted fail through their own transactions.
func (c *Committer) failGroup(f *tailFlight) {
	for len(c.pending) > 0 {
		x := c.pop()
		f.group = append(f.group, x.Waiters...)
		c.recycle(x.Waiters)
	}
	c.finish(f, fmt.Errorf("%w: %w", ErrFailed, c.failed))
}

func (c *Committer) fail(err error) {
	c.failed = err
	if c.OnFail != nil {
		c.OnFail(err)
	}
}
