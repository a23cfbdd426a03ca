package wal

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/ringlog/ringlog/device"
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

	buf      []byte // aligned batch buffer
	group    []*Tx
	applied  []write
	deferred []write // with DeferApply: home writes not yet applied, in order
}

// maxDeferred bounds the deferred writes kept before they are applied anyway.
const maxDeferred = 1024

func newCommitter(j *Journal, st recovered) *committer {
	area := j.size - 2*slot
	mb := int(area)
	if j.opts.MaxBatch > 0 && j.opts.MaxBatch < mb {
		mb = j.opts.MaxBatch
	}
	return &committer{
		j: j, app: newApplier(j.dev), bs: int64(j.dev.BlockSize()), area: area, maxBatch: mb,
		pending: make(map[uint64]*Tx),
		seq:     st.startSeq, gen: st.gen, curSlot: st.curSlot,
	}
}

func (c *committer) run() {
	defer close(c.j.done)
	for {
		select {
		case tx := <-c.j.submit:
			c.add(tx)
		case <-c.j.quit:
			c.shutdown()
			return
		}
		// Everything already queued joins this group: that is the whole of
		// group commit, with no timer. Callers released with the last group
		// have been woken but may not have run yet: yield to them, and go
		// on yielding while that brings in more (up to a channel's worth),
		// so that they join this group instead of waiting a whole sync for
		// the next one.
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
				break
			}
			runtime.Gosched()
			if len(c.j.submit) == 0 {
				break
			}
		}
		c.flush()
	}
}

func (c *committer) add(tx *Tx) {
	if c.failed != nil {
		c.finish(tx, fmt.Errorf("%w: %w", ErrFailed, c.failed))
		return
	}
	c.pending[tx.seq] = tx
}

func (c *committer) finish(tx *Tx, err error) {
	tx.result = err
	tx.done <- struct{}{} // capacity 1, sent once: the Tx can be reused
}

// flush writes every transaction that is ready in Begin order, in groups
// bounded by maxBatch.
func (c *committer) flush() {
	for c.failed == nil {
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
					c.finish(tx, tx.err)
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
		err := c.commitGroup(c.group)
		if err != nil {
			c.fail(err)
			err = fmt.Errorf("%w: %w", ErrFailed, err)
		}
		for _, tx := range c.group {
			c.finish(tx, err)
		}
	}
}

// commitGroup writes one batch, syncs once, and applies it.
func (c *committer) commitGroup(group []*Tx) error {
	payloadLen := 0
	for _, tx := range group {
		payloadLen += encodedLen(tx.writes)
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
		if err := c.checkpoint(); err != nil {
			return err
		}
	}
	areaStart := c.j.offset + 2*slot
	if _, err := c.j.dev.WriteAt(b, areaStart+c.pos); err != nil {
		return fmt.Errorf("wal: write batch: %w", err)
	}
	if err := c.j.dev.Sync(); err != nil {
		return fmt.Errorf("wal: sync batch: %w", err)
	}
	c.pos += padded
	c.seq++

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
	c.j.stats.Syncs++
	c.j.mu.Unlock()
	return nil
}

// checkpoint makes every applied home write durable, then writes a new
// header generation that starts replay at the next batch, so the area can be
// reused from its start. The header reaches the disk with the sync of the
// batch that follows it: if only the header lands, replay finds no batch of
// the new sequence; if only the batch lands, the old header's sequence does
// not match it. Either way nothing acknowledged is lost, since home writes
// were synced first.
func (c *committer) checkpoint() error {
	if err := c.applyDeferred(); err != nil {
		return err
	}
	if err := c.j.dev.Sync(); err != nil {
		return fmt.Errorf("wal: checkpoint sync: %w", err)
	}
	h := header{gen: c.gen + 1, startSeq: c.seq, area: uint64(c.area)}
	other := 1 - c.curSlot
	buf := device.AlignedBuffer(slot)
	h.encode(buf)
	if _, err := c.j.dev.WriteAt(buf, c.j.offset+int64(other)*slot); err != nil {
		return fmt.Errorf("wal: checkpoint header: %w", err)
	}
	c.gen, c.curSlot, c.pos = h.gen, other, 0
	c.j.mu.Lock()
	c.j.stats.Checkpoints++
	c.j.stats.Syncs++
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
			c.finish(tx, fmt.Errorf("%w: %w", ErrFailed, err))
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
			c.finish(tx, ErrClosed)
		}
	}
	for {
		select {
		case tx := <-c.j.submit:
			if tx.state.CompareAndSwap(txQueued, txTaken) {
				c.finish(tx, ErrClosed)
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
