package stages

import (
	"fmt"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/internal/layout"
)

// FrameReader reads and verifies frames of the data area with aligned I/O.
// It is not safe for concurrent use; each goroutine has its own.
type FrameReader struct {
	Dev device.Device
	Geo layout.Geometry
	buf []byte
}

// Read returns the frame at pos and, for a record, its payload, which
// aliases the reader's buffer until the next Read. Errors wrap ErrNotFound
// (no frame of that position there) or ErrCorrupt (a frame whose checksum
// fails).
func (r *FrameReader) Read(pos uint64) (layout.Header, []byte, error) {
	bs := int64(r.Dev.BlockSize())
	phys := r.Geo.Phys(pos)
	blk := phys / bs * bs
	head, err := r.read(blk, bs)
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
	stride := h.Stride()
	if inLap := pos % uint64(r.Geo.DataSize); inLap+stride > uint64(r.Geo.DataSize) || stride > uint64(r.Geo.MaxStride()) {
		return h, nil, fmt.Errorf("%w: frame at position %d is %d bytes, past the end of the area", ErrCorrupt, pos, stride)
	}
	if h.Kind == layout.KindPadding {
		if layout.Checksum(hb, nil) != h.Sum {
			return h, nil, fmt.Errorf("%w: padding checksum at position %d", ErrCorrupt, pos)
		}
		return h, nil, nil
	}
	end := phys + int64(h.DataOff) + int64(h.Length)
	whole, err := r.read(blk, (end-blk+bs-1)/bs*bs)
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

func (r *FrameReader) read(off, n int64) ([]byte, error) {
	if int64(len(r.buf)) < n {
		r.buf = device.AlignedBuffer(int(max(n, 64<<10)))
	}
	b := r.buf[:n]
	if _, err := r.Dev.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("ringlog: read at %d: %w", off, err)
	}
	return b, nil
}
