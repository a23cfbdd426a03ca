package stages

import (
	"fmt"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/internal/layout"
	"github.com/ringlog/ringlog/internal/testhooks"
)

// maxStage is how many staged bytes the writer gathers before it writes
// without waiting for the input to run dry: large enough for sequential
// bandwidth, small enough that a group's first bytes reach the disk early.
const maxStage = 1 << 20

// earlyFlush is how many unwritten bytes the writer lets pile up while the
// committer is busy before it writes them anyway: writing during the sync
// in flight takes the copy into the page cache off the next group's path,
// while one write per 64 KiB keeps system calls rare. With O_DIRECT a write
// waits for the device, so there the writer gathers a whole stage.
const earlyFlush = 64 << 10

// directDevice is implemented by devices that bypass the page cache.
type directDevice interface{ Direct() bool }

// Writer frames records into an aligned staging buffer, coalesces neighbours
// into one large sequential write, and reports each write to the committer.
//
// It writes whole device blocks (O_DIRECT accepts nothing else). The block a
// write ends in stays staged and is written again, with more records, by the
// next write; the bytes it already held are rewritten unchanged.
type Writer struct {
	In     chan Item // from the allocator, in position order
	Blocks chan Item // reservation header blocks, in any order
	// Idle receives a token whenever the committer has a free slot for a
	// group and nothing to put in it. The writer stages records while
	// every slot is taken and writes them once one is free: one large
	// write per group instead of one per record, and nothing lost since
	// the data could not have been synced any earlier. Capacity 1.
	Idle chan struct{}
	// Recycle brings spent waiter lists back from the committer.
	Recycle chan []*Waiter
	// Failed, if set, reports the error that failed the log: a
	// reservation's header block is then not written, since nothing may
	// become durable any more, and a record written now could come back
	// at the next Open.
	Failed func() error
	Out    chan<- Completion

	Dev   device.Device
	Geo   layout.Geometry
	Epoch uint32
	Pub   *Published

	bs              uint64
	buf             []byte // staging; buf[0] is virtual position start
	start, end      uint64 // staged bytes: [start, end); start is block aligned
	from            uint64 // first position not yet reported to the committer
	waiters         []*Waiter
	failed          error
	quit            <-chan struct{}
	quitting        bool
	idle            bool  // the committer waits for data
	mark            bool  // the next completion carries Mark
	early           int64 // unwritten bytes that trigger a write while the committer is busy
	completionsSent uint64
}

// NewWriter returns a writer that continues the data area at tail. It reads
// the block tail falls in, since rewriting it must keep the bytes before tail.
func NewWriter(dev device.Device, geo layout.Geometry, epoch uint32, tail uint64, out chan<- Completion, pub *Published) (*Writer, error) {
	w := &Writer{
		In: make(chan Item, 4096), Blocks: make(chan Item, 256), Idle: make(chan struct{}, 1), Recycle: make(chan []*Waiter, 64), Out: out,
		Dev: dev, Geo: geo, Epoch: epoch, Pub: pub, bs: uint64(dev.BlockSize()),
		buf: device.AlignedBuffer(maxStage + 2*dev.BlockSize()),
	}
	w.early = earlyFlush
	if isDirect(dev) {
		w.early = maxStage
	}
	if err := w.reset(tail); err != nil {
		return nil, err
	}
	return w, nil
}

// reset starts staging at pos, loading the bytes of pos's block before it.
func (w *Writer) reset(pos uint64) error {
	w.start, w.end, w.from = pos&^(w.bs-1), pos, pos
	if w.end > w.start {
		if _, err := w.Dev.ReadAt(w.buf[:w.bs], w.Geo.Phys(w.start)); err != nil {
			return fmt.Errorf("ringlog: writer: read tail block: %w", err)
		}
	}
	return nil
}

// Run is the writer's goroutine.
func (w *Writer) Run(quit <-chan struct{}) {
	w.quit = quit
	defer w.closeAll()
	for !w.quitting {
		select {
		case it := <-w.In:
			w.handle(it)
		case it := <-w.Blocks:
			w.block(it)
		case <-w.Idle:
			w.idle = true
		case <-quit:
			return
		}
	gather:
		for !w.quitting {
			select {
			case it := <-w.In:
				w.handle(it)
			case it := <-w.Blocks:
				w.block(it)
			case <-w.Idle:
				w.idle = true
			default:
				break gather
			}
		}
		if (w.idle || int64(w.end-w.from) >= w.early) && (w.end > w.from || len(w.waiters) > 0) {
			w.idle = false
			w.flush(w.end)
		}
	}
}

func (w *Writer) closeAll() {
	for _, wt := range w.waiters {
		wt.Finish(0, ErrClosed)
	}
	w.waiters = nil
}

func (w *Writer) handle(it Item) {
	switch it.Kind {
	case ItemHole:
		w.flush(it.Pos)
		w.jump(it.Pos + it.Span)
		return
	case ItemMark:
		w.mark = true
		w.flush(w.end)
		if w.mark && !w.quitting {
			w.mark = false
			if !send(w.Out, Completion{Start: w.from, End: w.from, Mark: true}, w.quit) {
				w.quitting = true
			}
		}
		return
	case ItemRecord, ItemPad:
	default:
		panic(fmt.Sprintf("stages: writer got item kind %d on In", it.Kind))
	}
	if it.Pos != w.end || (it.Pos%uint64(w.Geo.DataSize) == 0 && w.end > w.start) {
		// A new lap (or a gap): the staged bytes end here physically.
		w.flush(it.Pos)
		w.jump(it.Pos)
	}
	stage := it.Span
	if it.Kind == ItemPad {
		stage = layout.HeaderLen
	}
	if w.end-w.start+stage > maxStage {
		w.flush(w.end)
	}
	if need := w.end - w.start + stage + w.bs; need > uint64(len(w.buf)) {
		nb := device.AlignedBuffer(int(need))
		copy(nb, w.buf[:w.end-w.start])
		w.buf = nb
	}
	off := it.Pos - w.start
	b := w.buf[off : off+stage]
	if it.Kind == ItemRecord {
		p := it.Req.Payload
		layout.PutHeader(b, layout.Header{Pos: it.Pos, Length: uint32(len(p)), Epoch: w.Epoch, DataOff: layout.HeaderLen, Kind: layout.KindRecord})
		copy(b[layout.HeaderLen:], p)
		clear(b[layout.HeaderLen+len(p):])
		layout.SealInline(b, len(p))
		w.end = it.Pos + it.Span
		it.Req.Pos = it.Pos
		if w.waiters == nil {
			select {
			case w.waiters = <-w.Recycle:
			default:
			}
		}
		w.waiters = append(w.waiters, &it.Req.Waiter)
		return
	}
	layout.PutHeader(b, layout.Header{Pos: it.Pos, Length: uint32(it.Span), Epoch: w.Epoch, Kind: layout.KindPadding})
	if testhooks.UncheckedPadding.Load() {
		clear(b[:8])
	} else {
		layout.SealInline(b, 0)
	}
	w.end = it.Pos + layout.HeaderLen
	padEnd := it.Pos + it.Span
	if padEnd%w.bs == 0 && padEnd-w.start > maxStage/2 {
		// A long marker: write its header, skip its body.
		w.flush(padEnd)
		w.jump(padEnd)
		return
	}
	if need := padEnd - w.start + w.bs; need > uint64(len(w.buf)) {
		w.flush(w.end)
	}
	clear(w.buf[w.end-w.start : padEnd-w.start])
	w.end = padEnd
}

// jump restarts staging at pos after a flush left nothing pending.
func (w *Writer) jump(pos uint64) {
	if w.failed != nil {
		w.start, w.end, w.from = pos&^(w.bs-1), pos, pos
		return
	}
	if err := w.reset(pos); err != nil {
		w.failed = err
	}
}

// flush writes the staged blocks and reports [from, reportEnd) with its
// waiters; the last, partial block stays staged.
func (w *Writer) flush(reportEnd uint64) {
	if w.end > w.start && w.failed == nil && (w.end > w.from || reportEnd > w.from) {
		n := (w.end - w.start + w.bs - 1) &^ (w.bs - 1)
		clear(w.buf[w.end-w.start : n])
		if _, err := w.Dev.WriteAt(w.buf[:n], w.Geo.Phys(w.start)); err != nil {
			w.failed = fmt.Errorf("ringlog: write data at %d: %w", w.Geo.Phys(w.start), err)
		}
		w.Pub.Writes.Add(1)
	}
	if reportEnd > w.from || len(w.waiters) > 0 {
		c := Completion{Start: w.from, End: reportEnd, Waiters: w.waiters, Err: w.failed, Mark: w.mark}
		w.waiters, w.mark = nil, false
		if !send(w.Out, c, w.quit) {
			w.waiters = c.Waiters
			w.quitting = true
			return
		}
		w.completionsSent++
	}
	w.from = reportEnd
	if keep := w.end &^ (w.bs - 1); keep > w.start {
		copy(w.buf, w.buf[keep-w.start:w.end-w.start])
		w.start = keep
	}
}

// block writes a reservation's header block and reports the reservation.
func (w *Writer) block(it Item) {
	err := w.failed
	if err == nil && w.Failed != nil {
		err = w.Failed() // the committer says ErrFailed
	}
	if err == nil {
		if _, werr := w.Dev.WriteAt(it.Block, w.Geo.Phys(it.Pos)); werr != nil {
			w.failed = fmt.Errorf("ringlog: write reservation header at %d: %w", w.Geo.Phys(it.Pos), werr)
			err = w.failed
		}
		w.Pub.Writes.Add(1)
	}
	c := Completion{Start: it.Pos, End: it.Pos + it.Span, Waiters: []*Waiter{it.W}, Err: err}
	if !send(w.Out, c, w.quit) {
		it.W.Finish(0, ErrClosed)
		w.quitting = true
	}
}
