package stages

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"github.com/ringlog/ringlog/internal/layout"
	"github.com/ringlog/ringlog/internal/testhooks"
	"github.com/ringlog/ringlog/wal"
)

// Checker decides whether a record is garbage (pipeline.GarbageChecker).
type Checker interface {
	IsGarbage(pos uint64, payload []byte) (bool, error)
}

// yieldEvery is how many bytes of frames a pass walks between yields.
const yieldEvery = 256 << 10

// readAhead is how much the collector reads at once while it walks frames.
const readAhead = 1 << 20

// PositionChecker is an optional Checker interface: a checker that decides
// by position alone spares the collector reading payloads.
type PositionChecker interface {
	IsGarbageAt(pos uint64) (bool, error)
}

// CollectRequest asks the collector for a pass; the outcome arrives on Reply
// (capacity 1).
type CollectRequest struct {
	Reply chan error
}

// Collector reclaims space at the head. It walks frames from the head to the
// durable tail, reading their headers itself (with a PositionChecker, only
// where the allocator's FrameBatches do not say what they are), skips
// padding, asks the checker about each record, and stops at the first live
// one. It persists the new head through the journal before telling the
// allocator, so space is never reused while a crash could still bring back
// the old head.
type Collector struct {
	Requests chan CollectRequest
	Pressure chan struct{} // capacity 1
	Freed    chan<- uint64 // to the allocator

	Journal  *wal.Journal
	Reader   FrameReader
	Checker  Checker
	FormatID uint64
	Interval time.Duration
	Pub      *Published
	// OnFail, if set, is called from the collector's goroutine when a head
	// commit fails: the journal then refuses every later transaction, so
	// no space will ever be freed and the log must stop taking writes.
	OnFail func(error)

	// Frames, if set, brings the frames the allocator placed: with a
	// PositionChecker the collector then reads none it is told of.
	Frames *FrameRuns

	frames   frameCursor
	runCheck *FrameReader // testhooks.CheckRuns
	gen      uint64       // generation of the last head record
	head     uint64
	buf      [layout.StateLen]byte
	tx       *wal.Tx // reused for every head record
	quit     <-chan struct{}
}

// NewCollector returns a collector whose durable head is head, the last
// head record having generation gen.
func NewCollector(j *wal.Journal, r FrameReader, checker Checker, formatID uint64, interval time.Duration, gen, head uint64, freed chan<- uint64, pub *Published) *Collector {
	pub.Head.Store(head)
	if r.Ahead == 0 {
		r.Ahead = readAhead
	}
	return &Collector{
		Requests: make(chan CollectRequest), Pressure: make(chan struct{}, 1), Freed: freed,
		Journal: j, Reader: r, Checker: checker, FormatID: formatID, Interval: interval, Pub: pub,
		gen: gen, head: head,
	}
}

// Run is the collector's goroutine.
func (c *Collector) Run(quit <-chan struct{}) {
	c.quit = quit
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	for {
		select {
		case req := <-c.Requests:
			req.Reply <- c.pass()
		case <-c.Pressure:
			c.pass()
		case <-t.C:
			c.pass()
		case <-c.framesHalf():
			c.takeRuns()
		case <-quit:
			return
		}
	}
}

// pass advances the head as far as garbage and padding allow and makes the
// new head durable once, at the end: each head commit is a sync of its own
// (committing every sixteenth of the area, with 64 writers of 4 KiB about
// one sync in sixteen was a head commit). While writers wait for space
// (Published.Full) it makes the head durable and frees space every
// sixteenth of the area, so that they resume while a long pass is still
// reading.
func (c *Collector) pass() error {
	c.Pub.Passes.Add(1)
	durable := c.Pub.Durable.Load()
	c.Reader.Limit = durable
	step := uint64(c.Reader.Geo.DataSize / 16)
	pc, byPos := c.Checker.(PositionChecker)
	c.takeRuns()
	cur := c.head
	yielded := cur
	var collected uint64
	var stop error
	for cur < durable {
		var (
			h       layout.Header
			payload []byte
			err     error
		)
		switch stride, pad, known := c.known(cur); {
		case byPos && known:
			h = knownHeader(cur, stride, pad)
			if testhooks.CheckRuns.Load() {
				c.checkRun(h)
			}
		case byPos:
			h, err = c.Reader.Header(cur)
		default:
			h, payload, err = c.Reader.Read(cur)
		}
		if err != nil {
			stop = fmt.Errorf("ringlog: collect at position %d: %w", cur, err)
			break
		}
		if h.Kind == layout.KindRecord {
			if c.Checker == nil {
				break
			}
			var garbage bool
			if byPos {
				garbage, err = pc.IsGarbageAt(cur)
			} else {
				garbage, err = c.Checker.IsGarbage(cur, payload)
			}
			if err != nil {
				stop = fmt.Errorf("ringlog: garbage checker at position %d: %w", cur, err)
				break
			}
			if !garbage && !testhooks.CollectLive.Load() {
				break
			}
			collected++
		}
		cur += h.Stride()
		if cur-yielded >= yieldEvery {
			// The collector is background work: every so often it steps
			// back so that a stage on the commit path, woken meanwhile, does
			// not wait behind a long pass for a processor.
			yielded = cur
			runtime.Gosched()
		}
		if cur-c.head >= step && c.Pub.Full.Load() {
			if err := c.advance(cur, &collected); err != nil {
				return err
			}
		}
	}
	if err := c.advance(cur, &collected); err != nil {
		return err
	}
	return stop
}

// knownHeader stands for the header of a frame the allocator placed: all
// the walk asks of it is its kind and stride.
func knownHeader(pos, stride uint64, pad bool) layout.Header {
	if pad {
		return layout.Header{Pos: pos, Kind: layout.KindPadding, Length: uint32(stride)}
	}
	return layout.Header{Pos: pos, Kind: layout.KindRecord, DataOff: layout.HeaderLen, Length: uint32(stride - layout.HeaderLen)}
}

// advance makes head durable through the journal, then frees the space.
func (c *Collector) advance(head uint64, collected *uint64) error {
	if head == c.head {
		return nil
	}
	if err := c.commitHead(head); err != nil {
		if c.OnFail != nil {
			c.OnFail(err)
		}
		return err
	}
	c.head = head
	c.Pub.Head.Store(head)
	c.Pub.Collected.Add(*collected)
	*collected = 0
	send(c.Freed, head, c.quit)
	return nil
}

func (c *Collector) commitHead(head uint64) error {
	h := layout.Head{Gen: c.gen + 1, FormatID: c.FormatID, Head: head}
	h.Encode(c.buf[:])
	tx := c.Journal.BeginWith(c.tx)
	c.tx = tx
	tx.Write(c.Reader.Geo.HeadSlot(0), c.buf[:])
	tx.Write(c.Reader.Geo.HeadSlot(1), c.buf[:])
	if err := c.Journal.Commit(context.Background(), tx); err != nil {
		return fmt.Errorf("ringlog: commit head: %w", err)
	}
	c.gen = h.Gen
	return nil
}
