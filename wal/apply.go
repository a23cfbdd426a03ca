package wal

import (
	"fmt"
	"sort"

	"github.com/ringlog/ringlog/device"
)

// applier writes transactions to their home offsets in whole device blocks:
// O_DIRECT accepts nothing else, and merging the writes of a group that
// share a block turns many small writes into one read and one write.
type applier struct {
	dev   device.Device
	bs    int64
	buf   []byte // aligned scratch, grown as needed
	spans []span
}

type span struct{ start, end int64 } // block-aligned [start, end)

func newApplier(dev device.Device) *applier {
	return &applier{dev: dev, bs: int64(dev.BlockSize())}
}

// apply writes ws (in order: later ones win) to the device.
func (a *applier) apply(ws []write) error {
	if len(ws) == 0 {
		return nil
	}
	// Merge the block-aligned ranges the writes touch into disjoint spans.
	a.spans = a.spans[:0]
	for _, w := range ws {
		if len(w.data) == 0 {
			continue
		}
		s := w.off / a.bs * a.bs
		e := (w.off + int64(len(w.data)) + a.bs - 1) / a.bs * a.bs
		// The last block of a device whose size is not a block multiple
		// (possible only without O_DIRECT) ends at the device's end.
		e = min(e, a.dev.Size())
		a.spans = append(a.spans, span{s, e})
	}
	sort.Slice(a.spans, func(i, j int) bool { return a.spans[i].start < a.spans[j].start })
	merged := a.spans[:0]
	for _, s := range a.spans {
		if n := len(merged); n > 0 && s.start <= merged[n-1].end {
			merged[n-1].end = max(merged[n-1].end, s.end)
			continue
		}
		merged = append(merged, s)
	}
	for _, s := range merged {
		n := int(s.end - s.start)
		if len(a.buf) < n {
			a.buf = device.AlignedBuffer(n)
		}
		b := a.buf[:n]
		if !a.covered(ws, s) {
			if _, err := a.dev.ReadAt(b, s.start); err != nil {
				return fmt.Errorf("wal: apply: read home block at %d: %w", s.start, err)
			}
		}
		for _, w := range ws {
			if w.off+int64(len(w.data)) > s.start && w.off < s.end {
				copy(b[w.off-s.start:], w.data)
			}
		}
		if _, err := a.dev.WriteAt(b, s.start); err != nil {
			return fmt.Errorf("wal: apply: write home block at %d: %w", s.start, err)
		}
	}
	return nil
}

// covered reports whether a single write fills span s, so that reading the
// old contents is pointless.
func (a *applier) covered(ws []write, s span) bool {
	for _, w := range ws {
		if w.off <= s.start && w.off+int64(len(w.data)) >= s.end {
			return true
		}
	}
	return false
}
