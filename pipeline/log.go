package pipeline

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/internal/layout"
	"github.com/ringlog/ringlog/internal/testhooks"
	"github.com/ringlog/ringlog/stages"
	"github.com/ringlog/ringlog/wal"
)

// Log is an open ringlog. Its methods are safe for concurrent use.
type Log struct {
	dev   device.Device
	geo   layout.Geometry
	bs    int
	epoch uint32
	j     *wal.Journal
	pub   stages.Published

	alloc     *stages.Allocator
	writer    *stages.Writer
	committer *stages.Committer
	collector *stages.Collector

	quit    chan struct{} // closed by Close: stages stop
	stopped chan struct{} // closed once every stage has returned
	wg      sync.WaitGroup

	closeMu    sync.Mutex
	closed     bool
	closedDone chan struct{} // closed when the first Close returns
	failed     atomic.Pointer[error]
	truncated  uint64
	readers    sync.Pool
}

// checkerFunc adapts a GarbageChecker to the collector's interface.
type checkerFunc struct{ c GarbageChecker }

func (c checkerFunc) IsGarbage(pos uint64, p []byte) (bool, error) {
	return c.c.IsGarbage(Position(pos), p)
}

// posCheckerFunc adapts a GarbageChecker that is also a PositionChecker.
type posCheckerFunc struct {
	checkerFunc
	p PositionChecker
}

func (c posCheckerFunc) IsGarbageAt(pos uint64) (bool, error) { return c.p.IsGarbageAt(Position(pos)) }

// start wires the stages together and launches their goroutines.
func start(dev device.Device, j *wal.Journal, f formatted, cfg Config, t layout.Tail, h layout.Head, truncated uint64) (*Log, error) {
	l := &Log{
		dev: dev, geo: f.geo, bs: dev.BlockSize(), epoch: t.Epoch, j: j,
		quit: make(chan struct{}), stopped: make(chan struct{}), closedDone: make(chan struct{}), truncated: truncated,
	}
	l.readers.New = func() any { return &stages.FrameReader{Dev: dev, Geo: f.geo} }
	l.committer = stages.NewCommitter(j, f.geo, f.id, t.Epoch, t.Gen, t.Tail, &l.pub)
	// With overlapping syncs, one group more than there are syncs: when
	// a sync returns, the next group is already queued at the journal,
	// whose goroutine starts its sync at once. One sync at a time is one
	// group at a time, which waits for the callers of the last (Marks).
	l.committer.Depth = cfg.syncsInFlight() + 1
	if cfg.syncsInFlight() == 1 {
		l.committer.Depth = 1
	}
	l.committer.Ahead = tailAhead(f.geo)
	l.committer.OnFail = func(err error) {
		l.failed.Store(&err)
		select {
		case l.alloc.Poke <- struct{}{}: // fail the requests parked for space
		default:
		}
	}
	w, err := stages.NewWriter(dev, f.geo, t.Epoch, t.Tail, l.committer.In, &l.pub)
	if err != nil {
		return nil, err
	}
	l.writer = w
	l.committer.Idle = w.Idle
	l.committer.Recycle = w.Recycle
	pressure := make(chan struct{}, 1)
	l.alloc = stages.NewAllocator(f.geo, l.bs, h.Head, t.Tail, w.In, pressure, &l.pub)
	if l.committer.Depth == 1 {
		l.committer.Marks = l.alloc.Marks
	}
	l.alloc.Failed = func() error {
		if p := l.failed.Load(); p != nil {
			return *p
		}
		return nil
	}
	l.writer.Failed = l.alloc.Failed
	var checker stages.Checker
	if cfg.Checker != nil {
		checker = checkerFunc{cfg.Checker}
		if p, ok := cfg.Checker.(PositionChecker); ok {
			checker = posCheckerFunc{checkerFunc{cfg.Checker}, p}
		}
	}
	interval := cfg.CollectInterval
	if interval <= 0 {
		interval = defaultCollectInterval
	}
	l.collector = stages.NewCollector(j, stages.FrameReader{Dev: dev, Geo: f.geo}, checker, f.id, interval, h.Gen, h.Head, l.alloc.Freed, &l.pub)
	l.collector.Pressure = pressure
	if _, ok := checker.(stages.PositionChecker); ok {
		frames := stages.NewFrameRuns(f.geo)
		l.alloc.Frames, l.collector.Frames = frames, frames
	}
	l.collector.OnFail = l.committer.OnFail // a failed head commit fails the journal
	for _, run := range []func(<-chan struct{}){l.alloc.Run, l.writer.Run, l.committer.Run, l.collector.Run} {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			run(l.quit)
		}()
	}
	return l, nil
}

// writable reports why the log cannot take writes, if it cannot.
func (l *Log) writable() error {
	if p := l.failed.Load(); p != nil {
		return fmt.Errorf("%w: %w", ErrFailed, *p)
	}
	select {
	case <-l.quit:
		return ErrClosed
	default:
		return nil
	}
}

// Append writes payload as one record and returns its position once it is
// durable. Concurrent Appends share fdatasyncs. ctx bounds the wait for room
// in the log: if the log stays full until ctx ends, Append returns an error
// matching both ErrNoSpace and ctx.Err(). Once the record has a position its
// bytes are on their way and Append waits for the outcome (or Close).
// payload must not be modified until Append returns.
func (l *Log) Append(ctx context.Context, payload []byte) (Position, error) {
	if err := l.writable(); err != nil {
		return 0, err
	}
	if uint64(len(payload)) > math.MaxUint32 || stages.Stride(stages.KindAppend, len(payload), uint64(l.bs)) > uint64(l.geo.MaxStride()) {
		return 0, fmt.Errorf("%w: %d bytes, at most %d fit", ErrTooLarge, len(payload), l.MaxRecord())
	}
	r := stages.NewRequest(stages.KindAppend, payload, len(payload))
	if err := l.submit(ctx, r); err != nil {
		return 0, err
	}
	pos, err := l.await(ctx, r)
	return Position(pos), err
}

// MaxRecord is the largest payload Append accepts.
func (l *Log) MaxRecord() int {
	return int(l.geo.MaxStride()) - layout.HeaderLen
}

func (l *Log) submit(ctx context.Context, r *stages.Request) error {
	// Room in the queue is the common case: a send alone spares the
	// select's locking of the other channels.
	select {
	case l.alloc.In <- r:
		return nil
	default:
	}
	select {
	case l.alloc.In <- r:
		return nil
	case <-ctx.Done():
		if l.pub.Full.Load() {
			return fmt.Errorf("%w: %w", ErrNoSpace, ctx.Err())
		}
		return ctx.Err()
	case <-l.quit:
		return ErrClosed
	}
}

// await waits for a request's outcome. Before placement ctx can cancel it;
// after placement only Close can end the wait early.
func (l *Log) await(ctx context.Context, r *stages.Request) (uint64, error) {
	select {
	case <-r.Done:
		r.PassOn()
		return r.Pos, r.Err
	case <-l.stopped:
		return l.closedResult(&r.Waiter)
	case <-ctx.Done():
		cancelled := r.State.CompareAndSwap(stages.Waiting, stages.Cancelled)
		if !cancelled && testhooks.CancelPlaced.Load() {
			r.Abandon()
			return 0, ctx.Err()
		}
		if cancelled {
			select {
			case l.alloc.Poke <- struct{}{}:
			default:
			}
			if r.Parked.Load() || l.pub.Full.Load() {
				// Parked, or queued behind one that is (Full): it
				// waited for space, even if the allocator had not
				// yet seen it.
				return 0, fmt.Errorf("%w: %w", ErrNoSpace, ctx.Err())
			}
			return 0, ctx.Err()
		}
	}
	select {
	case <-r.Done:
		r.PassOn()
		return r.Pos, r.Err
	case <-l.stopped:
		return l.closedResult(&r.Waiter)
	}
}

// closedResult is a waiter's outcome once every stage has stopped: the one
// it was given if a stage finished it, ErrClosed otherwise.
func (l *Log) closedResult(w *stages.Waiter) (uint64, error) {
	select {
	case <-w.Done:
		w.PassOn()
		return w.Pos, w.Err
	default:
		// Finished in a group whose callers were still being woken one
		// by one: the outcome is there, only the wake-up is not.
		recorded := w.Recorded()
		w.Abandon()
		if recorded {
			return w.Pos, w.Err
		}
		return 0, ErrClosed
	}
}

// Read returns a copy of the record at pos, verified against its checksum.
// A position below the head returns ErrCollected; one that is not the start
// of a durable record returns ErrNotFound. pos should be one the log handed
// out (Append, Reservation.Position, Scan): Read finds a record by the frame
// header at pos, and a payload that holds a well-formed header for the
// position it sits at, checksum and all, reads as a record too.
func (l *Log) Read(pos Position) ([]byte, error) {
	if l.isClosed() {
		return nil, ErrClosed
	}
	p := uint64(pos)
	if p < l.pub.Head.Load() {
		return nil, fmt.Errorf("%w: position %d, head %d", ErrCollected, p, l.pub.Head.Load())
	}
	if p >= l.pub.Durable.Load() {
		return nil, fmt.Errorf("%w: position %d is at or past the durable tail %d", ErrNotFound, p, l.pub.Durable.Load())
	}
	r := l.readers.Get().(*stages.FrameReader)
	defer l.readers.Put(r)
	h, payload, err := r.Read(p)
	if p < l.pub.Head.Load() {
		return nil, fmt.Errorf("%w: position %d, head %d", ErrCollected, p, l.pub.Head.Load())
	}
	if err != nil {
		return nil, err
	}
	if h.Kind != layout.KindRecord {
		return nil, fmt.Errorf("%w: position %d holds padding", ErrNotFound, p)
	}
	return append([]byte(nil), payload...), nil
}

// scanAhead is how much Scan reads at once.
const scanAhead = 1 << 20

// Scan calls fn for every record from the head to the durable tail, in
// position order, with its verified payload. payload is valid only during
// the call. An error from fn stops the scan and is returned. Records the
// collector reclaims while Scan runs end it with ErrCollected.
func (l *Log) Scan(fn func(pos Position, payload []byte) error) error {
	if l.isClosed() {
		return ErrClosed
	}
	cur, end := l.pub.Head.Load(), l.pub.Durable.Load()
	r := &stages.FrameReader{Dev: l.dev, Geo: l.geo, Ahead: scanAhead, Limit: end}
	for cur < end {
		h, payload, err := r.Read(cur)
		if err != nil {
			if cur < l.pub.Head.Load() {
				return fmt.Errorf("%w: scan overtaken by the collector at %d", ErrCollected, cur)
			}
			return err
		}
		if h.Kind == layout.KindRecord {
			if err := fn(Position(cur), payload); err != nil {
				return err
			}
		}
		cur += h.Stride()
	}
	return nil
}

// Collect runs a collector pass now and returns when it is done: the head
// advances over padding and every leading record the checker calls garbage,
// and the new head is durable.
func (l *Log) Collect(ctx context.Context) error {
	req := stages.CollectRequest{Reply: make(chan error, 1)}
	select {
	case l.collector.Requests <- req:
	case <-ctx.Done():
		return ctx.Err()
	case <-l.quit:
		return ErrClosed
	}
	select {
	case err := <-req.Reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-l.stopped:
		return ErrClosed
	}
}

func (l *Log) isClosed() bool {
	select {
	case <-l.quit:
		return true
	default:
		return false
	}
}

// Close stops every goroutine of the log and closes its journal. Operations
// in flight return ErrClosed (an Append that returns ErrClosed may or may
// not be durable). Close leaves the device open: the caller owns it.
// Reservations still open end with it; their holders must have finished
// writing at their Offsets (see Reservation). A second Close returns
// ErrClosed once the first has finished, so that neither returns while the
// log's goroutines still use the device.
func (l *Log) Close() error {
	l.closeMu.Lock()
	if l.closed {
		l.closeMu.Unlock()
		<-l.closedDone
		return ErrClosed
	}
	l.closed = true
	l.closeMu.Unlock()
	defer close(l.closedDone)
	close(l.quit)
	l.wg.Wait()
	close(l.stopped)
	return l.j.Close()
}
