package wal

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/ringlog/ringlog/device"
)

// Options tune a Journal. The zero value is ready to use.
type Options struct {
	// MaxBatch caps the bytes of transactions written in one group (0: the
	// whole journal area). Smaller batches bound the latency of a group.
	MaxBatch int
	// DeferApply keeps home writes in memory until the next checkpoint (or
	// Close) instead of applying them before Commit returns. The journal's
	// fdatasync then flushes only the batch, not the home blocks the
	// previous group dirtied, which matters when every group rewrites the
	// same few blocks. Reading a home offset from the device while the
	// journal is open may see an older value; replay on Open applies
	// everything committed.
	DeferApply bool
	// MaxInFlight is how many batches may be syncing at once (0 or 1:
	// one; each batch is written only after the previous one is durable).
	// With more, the next batch is written and its sync started while
	// earlier syncs are in flight, which on a disk that overlaps flushes
	// commits more groups per second. Transactions still take effect and
	// succeed in Begin order, each only once every batch up to its own is
	// durable and every sync that overlapped its own has returned: Linux
	// reports a failed writeback once, to whichever sync asks first, so a
	// sync's nil means nothing while another that overlapped it may yet
	// report the failure. After a failed sync no batch is written; the
	// batches in flight fail as they are released, and the transactions
	// queued behind them once none is left.
	MaxInFlight int
}

// Stats are counters of a Journal since Open.
type Stats struct {
	Commits     uint64 // transactions made durable
	Groups      uint64 // batches written, each with one sync
	Syncs       uint64 // device syncs issued, checkpoints included
	Checkpoints uint64
	Replayed    uint64 // batches replayed by Open
}

// Journal is an open write-ahead journal. Its methods are safe for
// concurrent use.
type Journal struct {
	dev    device.Device
	offset int64
	size   int64
	opts   Options

	submit chan *Tx
	quit   chan struct{}
	done   chan struct{}

	mu      sync.Mutex // guards nextTx, closed, stats
	nextTx  uint64
	closed  bool
	stats   Stats
	failErr error // set once by the committer goroutine, read under mu

	// syncMu orders the device syncs: Sync holds it alone, the commit
	// goroutine's hold it shared. Linux reports a failed writeback once,
	// to whichever sync asks first, so a nil from the device after another
	// sync failed proves nothing: every sync that fails records its error
	// in syncErr before it lets go of syncMu, and every sync that gets nil
	// checks syncErr after. The goroutine's syncs can overlap each other
	// (Options.MaxInFlight > 1), and there one can get nil before an
	// overlapping one has recorded the error it took: the goroutine holds
	// each batch until every sync that overlapped its own has returned.
	syncMu  sync.RWMutex
	syncErr atomic.Pointer[error]
}

// Open recovers the journal in [offset, offset+size) of dev — replaying
// every intact batch in sequence order onto its home offsets, syncing, and
// starting a fresh journal generation — and starts its commit goroutine.
// Recovery is idempotent: a crash during Open, then Open again, gives the
// same device.
func Open(dev device.Device, offset, size int64, opts Options) (*Journal, error) {
	if err := checkGeometry(dev, offset, size); err != nil {
		return nil, err
	}
	st, err := recoverJournal(dev, offset, size)
	if err != nil {
		return nil, err
	}
	j := &Journal{
		dev: dev, offset: offset, size: size, opts: opts,
		submit: make(chan *Tx, 256),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	j.stats.Replayed = st.replayed
	j.stats.Syncs = st.syncs
	j.stats.Checkpoints = 1
	c := newCommitter(j, st)
	go c.run()
	return j, nil
}

// Begin starts a transaction. Transactions take effect in Begin order.
func (j *Journal) Begin() *Tx {
	j.mu.Lock()
	defer j.mu.Unlock()
	t := &Tx{j: j, seq: j.nextTx, done: make(chan struct{}, 1)}
	j.nextTx++
	return t
}

// BeginWith starts a new transaction in tx, a transaction of this journal
// whose Commit has returned its outcome and that the caller holds no other
// reference to. It reuses tx's memory, so a caller that commits in a loop
// allocates nothing per transaction. Any other tx (nil, discarded, abandoned
// by a cancelled Commit, or of another journal) gets a fresh Begin.
func (j *Journal) BeginWith(tx *Tx) *Tx {
	if tx == nil || tx.j != j || tx.state.Load() != txTaken || len(tx.done) != 0 {
		return j.Begin()
	}
	clear(tx.writes)
	tx.writes, tx.arena = tx.writes[:0], tx.arena[:0]
	tx.size, tx.err, tx.result = 0, nil, nil
	tx.state.Store(txOpen)
	j.mu.Lock()
	tx.seq = j.nextTx
	j.nextTx++
	j.mu.Unlock()
	return tx
}

// Commit makes tx durable and applies it, returning when both are done. If
// ctx ends before tx was written, Commit returns ctx.Err() and tx counts as
// discarded; once tx is being written Commit waits for the outcome (one
// sync). After a failure every Commit returns an error wrapping ErrFailed.
func (j *Journal) Commit(ctx context.Context, tx *Tx) error {
	if err := j.Submit(tx); err != nil {
		return err
	}
	select {
	case <-tx.done:
		return tx.result
	case <-j.done:
		// The goroutine finishes every transaction it took before it
		// exits, so tx.done is signalled by now unless tx was never taken.
		select {
		case <-tx.done:
			return tx.result
		default:
			return ErrClosed
		}
	case <-ctx.Done():
		if tx.state.CompareAndSwap(txQueued, txCancelled) {
			return fmt.Errorf("wal: commit abandoned: %w", ctx.Err())
		}
		select {
		case <-tx.done:
			return tx.result
		case <-j.done:
			return ErrClosed
		}
	}
}

// Submit queues tx for commit and returns without waiting for it: a caller
// with several transactions in flight (Options.MaxInFlight) learns each
// outcome from tx.Done and tx.Result. Submit blocks only while the queue is
// full. Every submitted transaction gets an outcome, ErrClosed if the
// journal closes before writing it.
func (j *Journal) Submit(tx *Tx) error {
	if tx.j != j {
		return fmt.Errorf("%w: transaction of another journal", ErrDiscarded)
	}
	if !tx.state.CompareAndSwap(txOpen, txQueued) {
		return ErrDiscarded
	}
	if tx.err == nil && encodedLen(tx.writes)+batchHeaderLen > int(j.size-2*slot) {
		tx.err = fmt.Errorf("%w: %d bytes of writes, journal area %d", ErrTooLarge, encodedLen(tx.writes), j.size-2*slot)
	}
	// A bad transaction still has to pass through the goroutine so that
	// later ones are not held up waiting for its turn.
	select {
	case j.submit <- tx:
	case <-j.done:
		return ErrClosed
	}
	select {
	case <-j.done:
		// The committer may have taken its last look at the queue before
		// tx arrived; whichever of the two claims tx refuses it.
		if tx.state.CompareAndSwap(txQueued, txTaken) {
			tx.finish(ErrClosed)
		}
	default:
	}
	return nil
}

// Close stops the commit goroutine after the batch in flight. Transactions
// not yet written fail with ErrClosed. Close does not close the device.
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return ErrClosed
	}
	j.closed = true
	j.mu.Unlock()
	close(j.quit)
	<-j.done
	return nil
}

// Err returns the error that failed the journal, or nil.
func (j *Journal) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.failErr
}

// Stats returns the journal's counters.
func (j *Journal) Stats() Stats {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.stats
}

// Region returns the journal's offset and size on the device.
func (j *Journal) Region() (offset, size int64) { return j.offset, j.size }

// Sync makes every device write completed before it durable, in the
// caller's goroutine: a sync barrier, like an empty transaction, without
// the two hand-offs to the journal's goroutine and back. A caller that
// commits only barriers between its own transactions, and waits for each
// outcome before the next, saves both on every group commit.
//
// If the device's sync fails, or any other sync of the journal's failed
// before it, Sync returns an error wrapping ErrFailed, and the journal
// fails: every transaction not yet acknowledged, and every later Commit,
// ends with ErrFailed, since the failed sync may have lost their writes.
// After Close it returns ErrClosed.
func (j *Journal) Sync() error {
	j.mu.Lock()
	closed, failed := j.closed, j.failErr
	j.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case failed != nil:
		return fmt.Errorf("%w: %w", ErrFailed, failed)
	}
	j.syncMu.Lock()
	err := j.deviceSync()
	j.syncMu.Unlock()
	if err != nil {
		// Fail the goroutine too, which may have nothing in flight to
		// learn it from: an empty transaction's sync fails there at once.
		tx := j.Begin()
		if j.Submit(tx) == nil {
			<-tx.done
		}
		return fmt.Errorf("%w: wal: sync: %w", ErrFailed, err)
	}
	return nil
}

// sync is the commit goroutine's device sync.
func (j *Journal) sync() error {
	j.syncMu.RLock()
	defer j.syncMu.RUnlock()
	return j.deviceSync()
}

// deviceSync syncs the device, syncMu held: it records a failure in
// syncErr, and fails if a sync failed before, whatever the device says.
func (j *Journal) deviceSync() error {
	err := j.dev.Sync()
	j.mu.Lock()
	j.stats.Syncs++
	j.mu.Unlock()
	if err != nil {
		e := err // allocated only here
		j.syncErr.CompareAndSwap(nil, &e)
		return err
	}
	if p := j.syncErr.Load(); p != nil {
		return *p
	}
	return nil
}
