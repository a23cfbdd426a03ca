package stages

import (
	"fmt"

	"github.com/ringlog/ringlog/internal/layout"
)

// FrameRun describes frames the allocator placed: Count frames of Stride
// bytes from Start, all padding markers (Pad) or all appended records.
type FrameRun struct {
	Start, Stride, Count uint64
	Pad                  bool
}

// End is the position after the run's last frame.
func (f FrameRun) End() uint64 { return f.Start + f.Stride*f.Count }

// FrameRuns carries FrameRuns from the allocator to the collector.
//
// The collector of a log whose checker decides by position needs only the
// kind and size of each frame, and of the frames this process placed the
// allocator knew both. Without the runs the collector read every byte
// written back (reading ahead copies the payloads too, and a header read
// per frame costs more), from the page cache, or with O_DIRECT from the
// device itself.
//
// Runs save most where records come in runs of one size: a single size is
// one run per runBytes, and the collector reads only the run the allocator
// still holds. Of records whose sizes change from one to the next, each is
// a run of its own; the collector keeps maxRuns of them, the allocator
// drops those the channel has no room for, and the collector reads what
// they would have covered.
//
// The collector trusts a run as it trusts the allocator: below the durable
// tail every frame is on the device as placed. What no run covers it reads:
// frames placed before Open, reservations (their headers are the callers'
// to commit), the run the allocator is still building, and runs dropped.
type FrameRuns struct {
	c    chan FrameRun
	half chan struct{} // capacity 1: c is half full, the collector should take
	// runBytes is the most a run the allocator holds back covers.
	runBytes uint64
}

// frameRunsCap is the room in FrameRuns for runs the collector has not
// taken yet; it takes them at every pass and when half of it is used.
const frameRunsCap = 1024

// maxRuns bounds the runs a collector keeps (32 bytes each). A collector
// held up by a live record keeps those of everything placed after it, up to
// this; with records of one size that covers the whole area (runBytes).
const maxRuns = 1 << 14

// NewFrameRuns returns the channel between the allocator and the collector
// of a data area of geo (Allocator.Frames, Collector.Frames).
func NewFrameRuns(geo layout.Geometry) *FrameRuns {
	// A pass that walks up to the tail reads at most runBytes, once, for
	// the run not yet sent.
	rb := max(256<<10, uint64(geo.DataSize)/(maxRuns/2))
	return &FrameRuns{c: make(chan FrameRun, frameRunsCap), half: make(chan struct{}, 1), runBytes: rb}
}

// hint adds a placed frame to the run being built, or sends that run and
// starts a new one.
func (a *Allocator) hint(pos, stride uint64, pad bool) {
	if a.Frames == nil {
		return
	}
	r := &a.run
	if r.Count > 0 && r.Pad == pad && r.Stride == stride && r.End() == pos {
		r.Count++
		if r.Stride*r.Count >= a.Frames.runBytes {
			a.sendRun()
		}
		return
	}
	a.sendRun()
	*r = FrameRun{Start: pos, Stride: stride, Count: 1, Pad: pad}
}

// sendRun sends the run being built, if any, without waiting: if the
// collector has left no room, it reads those frames instead.
func (a *Allocator) sendRun() {
	if a.run.Count == 0 {
		return
	}
	select {
	case a.Frames.c <- a.run:
	default:
	}
	a.run = FrameRun{}
	if len(a.Frames.c) >= frameRunsCap/2 {
		signal(a.Frames.half)
	}
}

// framesHalf is the signal to take runs, or nil.
func (c *Collector) framesHalf() <-chan struct{} {
	if c.Frames == nil {
		return nil
	}
	return c.Frames.half
}

// takeRuns moves the runs the allocator sent into c.runs, joining
// neighbours of one kind and size.
func (c *Collector) takeRuns() {
	if c.Frames == nil {
		return
	}
	if c.first > 0 && c.first >= len(c.runs)/2 {
		c.runs = c.runs[:copy(c.runs, c.runs[c.first:])]
		c.first = 0
	}
	for {
		select {
		case r := <-c.Frames.c:
			if n := len(c.runs); n > c.first {
				if last := &c.runs[n-1]; last.End() == r.Start && last.Pad == r.Pad && last.Stride == r.Stride {
					last.Count += r.Count
					continue
				}
			}
			if len(c.runs)-c.first < maxRuns {
				c.runs = append(c.runs, r)
			}
		default:
			return
		}
	}
}

// known returns the stride of the frame at pos and whether it is padding,
// if a run covers pos. Runs behind pos are discarded: a pass that starts
// behind where the last one ended (after a failed head commit) reads.
func (c *Collector) known(pos uint64) (stride uint64, pad, ok bool) {
	for {
		for c.first < len(c.runs) && c.runs[c.first].End() <= pos {
			c.first++
		}
		if c.first < len(c.runs) {
			break
		}
		c.runs, c.first = c.runs[:0], 0
		c.takeRuns()
		if len(c.runs) == 0 {
			return 0, false, false
		}
	}
	r := c.runs[c.first]
	if pos < r.Start || (pos-r.Start)%r.Stride != 0 {
		return 0, false, false // placed before Open, a reservation, or its run was dropped
	}
	return r.Stride, r.Pad, true
}

// checkRun compares what a run said of a frame with the device
// (testhooks.CheckRuns). A read that fails proves nothing either way.
func (c *Collector) checkRun(h layout.Header) {
	d, err := c.Reader.Header(h.Pos)
	if err == nil && (d.Kind != h.Kind || d.Stride() != h.Stride()) {
		panic(fmt.Sprintf("stages: a frame run says kind %d, %d bytes at position %d; the device says kind %d, %d bytes", h.Kind, h.Stride(), h.Pos, d.Kind, d.Stride()))
	}
}
