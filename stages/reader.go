package stages

import (
	"fmt"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/internal/layout"
	"github.com/ringlog/ringlog/internal/testhooks"
)

// FrameReader reads and verifies frames of the data area with aligned I/O.
// It is not safe for concurrent use; each goroutine has its own.
type FrameReader struct {
	Dev device.Device
	Geo layout.Geometry
	// Ahead, if positive, makes sequential reads cheap: a miss reads up to
	// Ahead bytes, and later frames inside them are served from memory.
	// A read ahead that fails sets it to 0.
	// Only bytes below Limit are kept, since below the durable tail the
	// data cannot change until it is collected, while the block the tail
	// ends in is still being rewritten.
	Ahead int
	Limit uint64

	buf        []byte
	lastStride uint64 // of the previous frame: Header skips read-ahead after a large one
	winPos     uint64 // virtual position of buf[0]
	winLen     int64  // bytes of buf that may be served again
}

// Read returns the frame at pos and, for a record, its payload, which
// aliases the reader's buffer until the next Read. Errors wrap ErrNotFound
// (no frame of that position there) or ErrCorrupt (a frame whose checksum
// fails).
func (r *FrameReader) Read(pos uint64) (layout.Header, []byte, error) {
	return r.frame(pos, true)
}

// Header returns the frame header at pos, verified where it can be without
// the payload: position, bounds, and a padding marker's checksum. Where the
// last frame was large it reads only the header's block, not ahead.
func (r *FrameReader) Header(pos uint64) (layout.Header, error) {
	h, _, err := r.frame(pos, false)
	return h, err
}

func (r *FrameReader) frame(pos uint64, withPayload bool) (layout.Header, []byte, error) {
	if pos%layout.HeaderLen != 0 {
		// Every frame starts on a header boundary; anywhere else a header
		// could also run past the block read below.
		return layout.Header{}, nil, fmt.Errorf("%w: position %d is not on a frame boundary", ErrNotFound, pos)
	}
	bs := int64(r.Dev.BlockSize())
	phys := r.Geo.Phys(pos)
	blk := phys / bs * bs
	// Reading ahead for headers only pays while frames are small, or where
	// every read waits for the device (O_DIRECT): there one large read
	// costs less than a header read per frame.
	ahead := withPayload || r.lastStride < headerAheadMax || isDirect(r.Dev)
	head, err := r.read(pos-uint64(phys-blk), blk, bs, ahead)
	if err != nil {
		return layout.Header{}, nil, err
	}
	hb := head[phys-blk:]
	h, ok := layout.DecodeHeader(hb)
	if !ok {
		return h, nil, fmt.Errorf("%w: no frame header at position %d", ErrNotFound, pos)
	}
	if h.Pos != pos {
		return h, nil, fmt.Errorf("%w: frame at position %d says position %d", ErrNotFound, pos, h.Pos)
	}
	r.lastStride = h.Stride()
	if err := r.checkHeader(h, hb, pos); err != nil || h.Kind == layout.KindPadding || !withPayload {
		return h, nil, err
	}
	end := phys + int64(h.DataOff) + int64(h.Length)
	whole, err := r.read(pos-uint64(phys-blk), blk, (end-blk+bs-1)/bs*bs, true)
	if err != nil {
		return h, nil, err
	}
	hb = whole[phys-blk:]
	payload := hb[h.DataOff : int64(h.DataOff)+int64(h.Length)]
	if layout.Checksum(hb, payload) != h.Sum {
		return h, nil, fmt.Errorf("%w: record checksum at position %d", ErrCorrupt, pos)
	}
	return h, payload, nil
}

// read returns n bytes at device offset off, whose virtual position is vpos
// (block-aligned, inside one lap).
func (r *FrameReader) read(vpos uint64, off, n int64, ahead bool) ([]byte, error) {
	if vpos >= r.winPos && int64(vpos-r.winPos)+n <= r.winLen {
		i := int64(vpos - r.winPos)
		return r.buf[i : i+n], nil
	}
	want, keep := n, int64(0)
	if ahead && r.Ahead > 0 && r.Limit > vpos {
		size := uint64(r.Geo.DataSize)
		end := min(r.Limit, (vpos/size+1)*size) // never past the lap's end
		keep = int64(end - vpos)
		want = max(n, min(int64(r.Ahead), keep))
		bs := int64(r.Dev.BlockSize())
		want = (want + bs - 1) / bs * bs
	}
	if int64(len(r.buf)) < want {
		r.buf = device.AlignedBuffer(int(max(want, 64<<10)))
	}
	r.winLen = 0
	b := r.buf[:want]
	if _, err := r.Dev.ReadAt(b, off); err != nil {
		if want == n {
			return nil, fmt.Errorf("ringlog: read at %d: %w", off, err)
		}
		// The bytes ahead may be what failed (an unreadable sector the
		// log has not reached yet): that is no reason to fail this frame.
		// Nor to try them again for every frame that follows, each try
		// perhaps seconds of a disk's retries: this reader reads ahead
		// no more.
		r.Ahead, keep, b = 0, 0, r.buf[:n]
		if _, err := r.Dev.ReadAt(b, off); err != nil {
			return nil, fmt.Errorf("ringlog: read at %d: %w", off, err)
		}
	}
	r.winPos, r.winLen = vpos, min(keep, want)
	return b[:n], nil
}

// isDirect reports whether dev bypasses the page cache.
func isDirect(dev device.Device) bool {
	d, ok := dev.(directDevice)
	return ok && d.Direct()
}

// headerAheadMax is the frame size from which Header stops reading ahead.
const headerAheadMax = 16 << 10

// checkHeader verifies what a header says about itself.
func (r *FrameReader) checkHeader(h layout.Header, hb []byte, pos uint64) error {
	stride := h.Stride()
	if inLap := pos % uint64(r.Geo.DataSize); inLap+stride > uint64(r.Geo.DataSize) || stride > uint64(r.Geo.MaxStride()) {
		return fmt.Errorf("%w: frame at position %d is %d bytes, past the end of the area", ErrCorrupt, pos, stride)
	}
	if h.Kind == layout.KindPadding && layout.Checksum(hb, nil) != h.Sum && !testhooks.UncheckedPadding.Load() {
		return fmt.Errorf("%w: padding checksum at position %d", ErrCorrupt, pos)
	}
	return nil
}
