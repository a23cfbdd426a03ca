package wal

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/internal/testhooks"
)

// committer is the journal's single goroutine: it owns the area, the batch
// sequence and the order of transactions.
type committer struct {
	j        *Journal
	app      *applier
	bs       int64
	area     int64
	maxBatch int

	pending map[uint64]*Tx // queued transactions by Begin order
	nextTx  uint64         // Begin sequence of the next transaction to take effect
	seq     uint64         // sequence of the next batch
	pos     int64          // next free byte of the area
	gen     uint64
	curSlot int
	failed  error
	// lost is the first failed sync (or apply) of a batch still in flight:
	// no batch is written after it, the flights are released failed, and
	// once none is left the journal fails (failed), with everything queued.
	lost error

	buf      []byte // aligned batch buffer
	group    []*Tx
	applied  []write
	deferred []write // with DeferApply: home writes not yet applied, in order

	// Batches written whose sync is in flight, oldest first. They are
	// released strictly in this order, whatever order their syncs return
	// in: a batch is acknowledged only once it and every batch before it
	// is durable, and once every sync that overlapped its own has
	// returned too (overlapped).
	flights []*flight
	started uint64       // syncs started
	spare   []*flight    // flights not in use, with their group slices
	syncReq chan *flight // to the sync workers
	synced  chan *flight // from the sync workers
	workers sync.WaitGroup

	onSynced func() // tests: called once a sync's return is handled
}

// flight is one batch between its write and its release.
type flight struct {
	group  []*Tx
	err    error // the sync's outcome
	synced bool
	seq    uint64 // order in which the syncs started
	// upTo is the seq of the last sync started before this one returned:
	// the flight is released only once every sync up to it has returned
	// (overlapped).
	upTo uint64
}

// maxDeferred bounds the deferred writes kept before they are applied anyway.
const maxDeferred = 1024

func newCommitter(j *Journal, st recovered) *committer {
	area := j.size - 2*slot
	mb := int(area)
	if j.opts.MaxBatch > 0 && j.opts.MaxBatch < mb {
		mb = j.opts.MaxBatch
	}
	depth := max(j.opts.MaxInFlight, 1)
	c := &committer{
		j: j, app: newApplier(j.dev), bs: int64(j.dev.BlockSize()), area: area, maxBatch: mb,
		pending: make(map[uint64]*Tx),
		seq:     st.startSeq, gen: st.gen, curSlot: st.curSlot,
		syncReq: make(chan *flight, depth), synced: make(chan *flight, depth),
	}
	if h := testhooks.SyncHandled.Load(); h != nil {
		c.onSynced = *h
	}
	return c
}

// depth is how many batches may be syncing at once.
func (c *committer) depth() int { return cap(c.syncReq) }

// syncWorker syncs the device for each batch it is handed. A second batch
// can be written and its sync started while the first one's is still in
// flight: on a disk that overlaps flushes, that is more groups per second.
func (c *committer) syncWorker() {
	defer c.workers.Done()
	for f := range c.syncReq {
		f.err = c.j.sync()
		c.synced <- f
	}
}

func (c *committer) run() {
	if c.depth() > 1 {
		for range c.depth() {
			c.workers.Add(1)
			go c.syncWorker()
		}
	}
	defer func() {
		close(c.syncReq)
		c.workers.Wait()
		close(c.j.done)
		// A Submit that raced with the exit may have queued a transaction
		// after the last look: it, or this, gives it its outcome.
		c.refuseQueued()
	}()
	for {
		select {
		case tx := <-c.j.submit:
			c.add(tx)
			c.gather()
		case f := <-c.synced:
			c.returned(f)
			c.release()
			if c.onSynced != nil {
				c.onSynced()
			}
		case <-c.j.quit:
			c.drain()
			c.shutdown()
			return
		}
		c.flush()
	}
}

// gather takes every transaction already queued into the next group: that
// is the whole of group commit, with no timer. Callers released with the
// last group have been woken but may not have run yet: it yields to them,
// and goes on yielding while that brings in more (up to a channel's
// worth), so that they join this group instead of waiting a whole sync for
// the next one.
func (c *committer) gather() {
	for gathered := 1; ; {
	drain:
		for {
			select {
			case tx := <-c.j.submit:
				c.add(tx)
				gathered++
			default:
				break drain
			}
		}
		if gathered >= cap(c.j.submit) {
			return
		}
		runtime.Gosched()
		if len(c.j.submit) == 0 {
			return
		}
	}
}

func (c *committer) add(tx *Tx) {
	if c.failed != nil {
		tx.finish(fmt.Errorf("%w: %w", ErrFailed, c.failed))
		return
	}
	c.pending[tx.seq] = tx
}

// flush writes every transaction that is ready in Begin order, in groups
// bounded by maxBatch, while fewer than depth batches are syncing.
func (c *committer) flush() {
	for c.failed == nil && c.lost == nil && len(c.flights) < c.depth() {
		c.group = c.group[:0]
		size := batchHeaderLen
		for {
			tx, ok := c.pending[c.nextTx]
			if !ok {
				break
			}
			if tx.state.Load() == txCancelled {
				delete(c.pending, c.nextTx)
				c.nextTx++
				continue
			}
			if tx.err != nil {
				if tx.state.CompareAndSwap(txQueued, txTaken) {
					tx.finish(tx.err)
				}
				delete(c.pending, c.nextTx)
				c.nextTx++
				continue
			}
			n := encodedLen(tx.writes)
			if len(c.group) > 0 && size+n > c.maxBatch {
				break
			}
			if !tx.state.CompareAndSwap(txQueued, txTaken) {
				continue // cancelled just now; the check above removes it
			}
			delete(c.pending, c.nextTx)
			c.nextTx++
			c.group = append(c.group, tx)
			size += n
		}
		if len(c.group) == 0 {
			return
		}
		if err := c.writeGroup(c.group); err != nil {
			c.fail(err)
			err = fmt.Errorf("%w: %w", ErrFailed, err)
			for _, tx := range c.group {
				tx.finish(err)
			}
		}
	}
}

// returned records that f's sync has returned. A failure condemns the
// flights older than f too, which are not yet released: Linux reports a
// failed writeback once, to whichever sync asks first, so the writes f's
// sync lost may be an older batch's, whose own sync, overlapping f's, got
// nil.
func (c *committer) returned(f *flight) {
	f.synced, f.upTo = true, c.started
	if f.err != nil {
		c.lose(fmt.Errorf("wal: sync batch: %w", f.err))
	}
}

// lose records the first failure of a batch in flight (lost), and reports
// it through Journal.Err at once.
func (c *committer) lose(err error) {
	if c.lost != nil {
		return
	}
	c.lost = err
	c.j.mu.Lock()
	if c.j.failErr == nil {
		c.j.failErr = err
	}
	c.j.mu.Unlock()
}

// overlapped reports whether every sync that started before f's returned
// has returned itself: until then one of them may yet report a failure
// that f's nil hid.
func (c *committer) overlapped(f *flight) bool {
	for _, g := range c.flights {
		if g.seq > f.upTo {
			break
		}
		if !g.synced {
			return false
		}
	}
	return true
}

// release acknowledges, oldest first, every batch whose sync has returned
// and that has no unsynced batch before it, nor an overlapping sync still
// running.
func (c *committer) release() {
	for len(c.flights) > 0 && c.flights[0].synced && c.overlapped(c.flights[0]) {
		f := c.flights[0]
		n := copy(c.flights, c.flights[1:]) // reuses the array for ever
		c.flights[n] = nil
		c.flights = c.flights[:n]
		var err error
		if f.err == nil && c.lost == nil && c.failed == nil {
			// (A failed sync is in lost already: returned.)
			if err = c.durable(f.group); err != nil {
				c.lose(err)
			}
		}
		cause := c.failed
		if cause == nil {
			cause = c.lost
		}
		if cause != nil {
			// Once one sync failed, another that succeeded proves
			// nothing: the failed one's writes may be gone.
			err = fmt.Errorf("%w: %w", ErrFailed, cause)
		}
		for _, tx := range f.group {
			tx.finish(err)
		}
		clear(f.group)
		f.group, f.err, f.synced = f.group[:0], nil, false
		c.spare = append(c.spare, f)
	}
	if c.lost != nil && c.failed == nil && len(c.flights) == 0 {
		// Every batch before the queued transactions has its outcome.
		c.fail(c.lost)
	}
}

// drain waits for every sync in flight and releases its batch.
func (c *committer) drain() {
	for len(c.flights) > 0 {
		f := <-c.synced
		c.returned(f)
		c.release()
	}
}

// writeGroup writes one batch and starts its sync. The batch is applied and
// its transactions finished by release, once it is durable.
func (c *committer) writeGroup(group []*Tx) error {
	payloadLen, writes := 0, 0
	for _, tx := range group {
		payloadLen += encodedLen(tx.writes)
		writes += len(tx.writes)
	}
	if writes == 0 {
		// Only empty transactions: sync barriers. Their sync makes
		// durable what was written before it, with no batch to write.
		return c.startFlight(group)
	}
	padded := (int64(batchHeaderLen+payloadLen) + c.bs - 1) / c.bs * c.bs
	if padded > c.area {
		return fmt.Errorf("%w: batch of %d bytes", ErrTooLarge, padded)
	}
	if int64(len(c.buf)) < padded {
		c.buf = device.AlignedBuffer(int(max(padded, 64<<10)))
	}
	b := c.buf[:padded]
	payload := b[batchHeaderLen:batchHeaderLen]
	for _, tx := range group {
		payload = appendWrites(payload, tx.writes)
	}
	clear(b[batchHeaderLen+payloadLen:])
	batchHeader{seq: c.seq, ntx: uint32(len(group)), payload: uint32(payloadLen), padded: uint32(padded)}.encode(b, payload)

	if c.pos+padded > c.area {
		// The new header must not start replay past a batch that is
		// not yet durable and applied.
		c.drain()
		if c.failed != nil {
			return c.failed
		}
		if err := c.checkpoint(); err != nil {
			return err
		}
	}
	areaStart := c.j.offset + 2*slot
	if _, err := c.j.dev.WriteAt(b, areaStart+c.pos); err != nil {
		return fmt.Errorf("wal: write batch: %w", err)
	}
	c.pos += padded
	c.seq++
	return c.startFlight(group)
}

// startFlight starts the sync that makes group durable, its batch (if it
// had one) written.
func (c *committer) startFlight(group []*Tx) error {
	var f *flight
	if n := len(c.spare); n > 0 {
		f, c.spare = c.spare[n-1], c.spare[:n-1]
	} else {
		f = new(flight)
	}
	f.group = append(f.group, group...)
	c.started++
	f.seq = c.started
	c.flights = append(c.flights, f)
	if c.depth() == 1 {
		// Nothing could overlap this sync: spare the hand-off.
		f.err = c.j.sync()
		c.returned(f)
		c.release()
		return nil
	}
	c.syncReq <- f // never blocks: at most depth flights exist
	return nil
}

// durable applies a batch that has reached the disk: at once, or with
// DeferApply at the next checkpoint.
func (c *committer) durable(group []*Tx) error {
	if c.j.opts.DeferApply {
		for _, tx := range group {
			for _, w := range tx.writes {
				c.deferWrite(w)
			}
		}
		if len(c.deferred) > maxDeferred {
			if err := c.applyDeferred(); err != nil {
				return err
			}
		}
	} else {
		c.applied = c.applied[:0]
		for _, tx := range group {
			c.applied = append(c.applied, tx.writes...)
		}
		if err := c.app.apply(c.applied); err != nil {
			return fmt.Errorf("wal: committed but not applied: %w", err)
		}
	}
	c.j.mu.Lock()
	c.j.stats.Commits += uint64(len(group))
	c.j.stats.Groups++
	c.j.mu.Unlock()
	return nil
}

// checkpoint makes every applied home write durable, then writes a new
// header generation that starts replay at the next batch, so the area can be
// reused from its start. The header is synced before any new batch is
// written over the old ones. Otherwise a new batch could land in part, over
// an old batch in the middle of the area, with the old header still current:
// replay would then repeat the old batches before it, rolling back home
// writes that later ones had made. That happens with two batches in flight
// (the second lands alone), and with one: the pages of a batch of several
// sectors reach the disk in no fixed order, so its first sector, the one
// that would have stopped replay at the area's start, may be the one that
// did not land.
func (c *committer) checkpoint() error {
	if err := c.applyDeferred(); err != nil {
		return err
	}
	if err := c.j.sync(); err != nil {
		return fmt.Errorf("wal: checkpoint sync: %w", err)
	}
	h := header{gen: c.gen + 1, startSeq: c.seq, area: uint64(c.area)}
	other := 1 - c.curSlot
	buf := device.AlignedBuffer(slot)
	h.encode(buf)
	if _, err := c.j.dev.WriteAt(buf, c.j.offset+int64(other)*slot); err != nil {
		return fmt.Errorf("wal: checkpoint header: %w", err)
	}
	if err := c.j.sync(); err != nil {
		return fmt.Errorf("wal: checkpoint header sync: %w", err)
	}
	c.gen, c.curSlot, c.pos = h.gen, other, 0
	c.j.mu.Lock()
	c.j.stats.Checkpoints++
	c.j.mu.Unlock()
	return nil
}

func (c *committer) fail(err error) {
	c.failed = err
	c.j.mu.Lock()
	c.j.failErr = err
	c.j.mu.Unlock()
	for seq, tx := range c.pending {
		delete(c.pending, seq)
		if tx.state.CompareAndSwap(txQueued, txTaken) {
			tx.finish(fmt.Errorf("%w: %w", ErrFailed, err))
		}
	}
}

func (c *committer) shutdown() {
	if c.failed == nil {
		// Best effort: what does not reach its home is replayed by Open.
		c.applyDeferred()
	}
	for seq, tx := range c.pending {
		delete(c.pending, seq)
		if tx.state.CompareAndSwap(txQueued, txTaken) {
			tx.finish(ErrClosed)
		}
	}
	c.refuseQueued()
}

// refuseQueued finishes with ErrClosed every transaction still queued.
func (c *committer) refuseQueued() {
	for {
		select {
		case tx := <-c.j.submit:
			if tx.state.CompareAndSwap(txQueued, txTaken) {
				tx.finish(ErrClosed)
			}
		default:
			return
		}
	}
}

// IsFailed reports whether err says the journal failed.
func IsFailed(err error) bool { return errors.Is(err, ErrFailed) }

// deferWrite queues a copy of w (its Tx may be reused) for the next
// applyDeferred, dropping queued writes it entirely covers: applying those
// first would change nothing. A dropped write's buffer holds the copy when
// it is large enough, so rewriting the same home block allocates nothing.
func (c *committer) deferWrite(w write) {
	end := w.off + int64(len(w.data))
	kept := c.deferred[:0]
	var spare []byte
	for _, d := range c.deferred {
		if d.off >= w.off && d.off+int64(len(d.data)) <= end {
			if cap(d.data) >= len(w.data) {
				spare = d.data[:0]
			}
			continue
		}
		kept = append(kept, d)
	}
	clear(c.deferred[len(kept):])
	c.deferred = append(kept, write{off: w.off, data: append(spare, w.data...)})
}

// applyDeferred writes the deferred home writes, in commit order.
func (c *committer) applyDeferred() error {
	if len(c.deferred) == 0 {
		return nil
	}
	if err := c.app.apply(c.deferred); err != nil {
		return fmt.Errorf("wal: apply deferred writes: %w", err)
	}
	clear(c.deferred)
	c.deferred = c.deferred[:0]
	return nil
}
