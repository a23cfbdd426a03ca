package stages

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/ringlog/ringlog/internal/layout"
)

// FrameRun is Count frames of Stride bytes from Start, all padding markers
// (Pad) or all appended records.
type FrameRun struct {
	Start, Stride, Count uint64
	Pad                  bool
}

// End is the position after the run's last frame.
func (f FrameRun) End() uint64 { return f.Start + f.Stride*f.Count }

// FrameBatch describes frames the allocator placed one after another, from
// Start to End, as runs of one kind and size, encoded (appendRun).
type FrameBatch struct {
	Start, End uint64
	codes      []byte
}

// appendRun encodes a run of count frames: uvarint(stride/32<<2 | pad<<1 |
// many), then uvarint(count) if many. A small record alone takes one byte.
func (b *FrameBatch) appendRun(stride uint64, pad bool, count uint64) {
	x := stride / layout.HeaderLen << 2
	if pad {
		x |= 2
	}
	if count > 1 {
		x |= 1
	}
	b.codes = binary.AppendUvarint(b.codes, x)
	if count > 1 {
		b.codes = binary.AppendUvarint(b.codes, count)
	}
}

// run decodes the run at codes[off:] and returns the offset after it.
func (b *FrameBatch) run(off int) (stride uint64, pad bool, count uint64, next int) {
	x, n := binary.Uvarint(b.codes[off:])
	if n <= 0 {
		panic("stages: a frame batch that does not decode")
	}
	off += n
	count = 1
	if x&1 != 0 {
		count, n = binary.Uvarint(b.codes[off:])
		if n <= 0 {
			panic("stages: a frame batch that does not decode")
		}
		off += n
	}
	return x >> 2 * layout.HeaderLen, x&2 != 0, count, off
}

// FrameRuns carries FrameBatches from the allocator to the collector.
//
// The collector of a log whose checker decides by position needs only the
// kind and size of each frame, and of the frames this process placed the
// allocator knew both. Without them the collector read every byte written
// back (reading ahead copies the payloads too, and a header read per frame
// costs more), from the page cache, or with O_DIRECT from the device itself.
// Told, it reads none of them back: a batch costs about a byte per record
// of a few hundred bytes, next to nothing for records of one size, and the
// collector keeps maxKept bytes of them.
//
// The collector trusts a batch as it trusts the allocator: below the
// durable tail every frame is on the device as placed. What no batch covers
// it reads: frames placed before Open, reservations (their headers are the
// callers' to commit; a reservation ends a batch), the batch the allocator
// is still building, and batches dropped because the channel or the
// collector's store was full.
type FrameRuns struct {
	c    chan *FrameBatch
	free chan *FrameBatch // spent batches, back to the allocator
	half chan struct{}    // capacity 1: c is half full, the collector should take
	// span: the allocator sends a batch once it covers this much.
	span uint64
}

const (
	// batchesCap is the room in FrameRuns for batches the collector has
	// not taken yet; it takes them at every pass and when half is used.
	batchesCap = 256
	// batchCodes is the most a batch encodes before it is sent.
	batchCodes = 4 << 10
	// maxKept bounds the memory a collector keeps batches in, counting
	// each as the capacity of its codes and batchCost: a collector held up
	// by a live record keeps the batches of what was placed after it, up
	// to this, and reads the rest.
	maxKept   = 1 << 20
	batchCost = 64
)

// NewFrameRuns returns the channel between the allocator and the collector
// of a data area of geo (Allocator.Frames, Collector.Frames).
func NewFrameRuns(geo layout.Geometry) *FrameRuns {
	// A pass that walks up to the tail reads at most span, once, for the
	// batch not yet sent; records of one size cost a batch per span, so
	// the area takes some 8k of them.
	span := max(256<<10, uint64(geo.DataSize)/8192)
	return &FrameRuns{c: make(chan *FrameBatch, batchesCap), free: make(chan *FrameBatch, batchesCap),
		half: make(chan struct{}, 1), span: span}
}

// hint adds a placed frame to the batch being built. A frame that does not
// follow the batch's last one (a reservation came between) ends it.
func (a *Allocator) hint(pos, stride uint64, pad bool) {
	if a.Frames == nil {
		return
	}
	b := a.batch
	if b != nil && b.End != pos {
		a.sendBatch()
		b = nil
	}
	if b == nil {
		select {
		case b = <-a.Frames.free:
			b.codes = b.codes[:0]
		default:
			b = &FrameBatch{codes: make([]byte, 0, 64)}
		}
		b.Start = pos
		a.batch = b
	}
	r := &a.run
	if r.Count > 0 && r.Stride == stride && r.Pad == pad {
		r.Count++
	} else {
		if r.Count > 0 {
			b.appendRun(r.Stride, r.Pad, r.Count)
		}
		*r = FrameRun{Start: pos, Stride: stride, Count: 1, Pad: pad}
	}
	b.End = pos + stride
	if b.End-b.Start >= a.Frames.span || len(b.codes) >= batchCodes {
		a.sendBatch()
	}
}

// sendBatch sends the batch being built, if any, without waiting: if the
// collector has left no room, it reads those frames instead.
func (a *Allocator) sendBatch() {
	b := a.batch
	if b == nil {
		return
	}
	b.appendRun(a.run.Stride, a.run.Pad, a.run.Count)
	a.batch, a.run = nil, FrameRun{}
	select {
	case a.Frames.c <- b:
	default:
	}
	if len(a.Frames.c) >= batchesCap/2 {
		signal(a.Frames.half)
	}
}

// framesHalf is the signal to take batches, or nil.
func (c *Collector) framesHalf() <-chan struct{} {
	if c.Frames == nil {
		return nil
	}
	return c.Frames.half
}

// frameCursor is where the collector is in the batches it keeps.
type frameCursor struct {
	batches []*FrameBatch // batches[first:] are not yet behind the walk
	first   int
	kept    int // cost of batches[first:] (maxKept)
	// In batches[first], from offset off on, with the run being walked:
	// left frames of stride (pad) from pos.
	off    int
	pos    uint64
	stride uint64
	pad    bool
	left   uint64
}

// takeRuns moves the batches the allocator sent into the cursor.
func (c *Collector) takeRuns() {
	if c.Frames == nil {
		return
	}
	k := &c.frames
	if k.first > 0 && k.first >= len(k.batches)/2 {
		n := copy(k.batches, k.batches[k.first:])
		clear(k.batches[n:])
		k.batches, k.first = k.batches[:n], 0
	}
	for {
		select {
		case b := <-c.Frames.c:
			if cap(b.codes) > len(b.codes)+batchCost {
				// Kept for long, perhaps: keep no more memory than the
				// codes need.
				b.codes = slices.Clone(b.codes)
			}
			cost := cap(b.codes) + batchCost
			if k.kept+cost > maxKept {
				c.recycle(b)
				continue
			}
			if len(k.batches) == k.first {
				k.off, k.pos, k.left = 0, b.Start, 0
			}
			k.batches = append(k.batches, b)
			k.kept += cost
		default:
			return
		}
	}
}

// drop discards the batch the cursor is in and starts at the next.
func (c *Collector) drop() {
	k := &c.frames
	b := k.batches[k.first]
	k.batches[k.first] = nil
	k.first++
	k.kept -= cap(b.codes) + batchCost
	c.recycle(b)
	if k.first < len(k.batches) {
		k.off, k.pos, k.left = 0, k.batches[k.first].Start, 0
	}
}

// recycle gives a spent batch back to the allocator, if it has room.
func (c *Collector) recycle(b *FrameBatch) {
	select {
	case c.Frames.free <- b:
	default:
	}
}

// known returns the stride of the frame at pos and whether it is padding,
// if a batch covers pos. Batches behind pos are discarded: a pass that
// starts behind where the last one ended (after a failed head commit)
// reads.
func (c *Collector) known(pos uint64) (stride uint64, pad, ok bool) {
	if c.Frames == nil {
		return 0, false, false
	}
	k := &c.frames
	for {
		if k.first == len(k.batches) {
			k.batches, k.first = k.batches[:0], 0
			c.takeRuns()
			if len(k.batches) == 0 {
				return 0, false, false
			}
		}
		if k.batches[k.first].End <= pos {
			c.drop()
			continue
		}
		break
	}
	b := k.batches[k.first]
	if pos < k.pos {
		return 0, false, false // before the batch, or behind the walk
	}
	for k.left == 0 || pos >= k.pos+k.left*k.stride {
		k.pos += k.left * k.stride
		if k.off >= len(b.codes) {
			return 0, false, false // cannot be: the runs end at b.End
		}
		k.stride, k.pad, k.left, k.off = b.run(k.off)
	}
	if (pos-k.pos)%k.stride != 0 {
		return 0, false, false
	}
	return k.stride, k.pad, true
}

// checkRun compares what a batch said of a frame with the device
// (testhooks.CheckRuns). A read that fails proves nothing either way. It
// reads with a reader of its own, so that the walk's reader is left as it
// would be without the check.
func (c *Collector) checkRun(h layout.Header) {
	if c.runCheck == nil {
		c.runCheck = &FrameReader{Dev: c.Reader.Dev, Geo: c.Reader.Geo}
	}
	d, err := c.runCheck.Header(h.Pos)
	if err == nil && (d.Kind != h.Kind || d.Stride() != h.Stride()) {
		panic(fmt.Sprintf("stages: a frame batch says kind %d, %d bytes at position %d; the device says kind %d, %d bytes", h.Kind, h.Stride(), h.Pos, d.Kind, d.Stride()))
	}
}
