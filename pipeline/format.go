package pipeline

import (
	"fmt"
	"math/rand/v2"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/internal/layout"
	"github.com/ringlog/ringlog/wal"
)

// Format writes an empty log into the region cfg describes. It writes every
// byte of the region once — zeros, then the structures — so that the log
// afterwards only overwrites: on a file, an overwrite costs half as much per
// fdatasync as an append that grows it. An interrupted Format leaves a
// region that Open rejects: any superblock already there is zeroed and
// synced first, before anything else changes, and the new one is written
// last.
func Format(dev device.Device, cfg Config) error {
	g, err := cfg.geometry(dev)
	if err != nil {
		return err
	}
	const chunk = 1 << 20
	zero := device.AlignedBuffer(chunk)
	// Without this, a power cut could keep an old log's superblock and
	// journal over a data area partly zeroed, which Open would accept.
	if _, err := dev.WriteAt(zero[:2*layout.Align], g.Offset); err != nil {
		return fmt.Errorf("ringlog: format: %w", err)
	}
	if err := dev.Sync(); err != nil {
		return fmt.Errorf("ringlog: format: %w", err)
	}
	for off := g.Offset; off < g.Offset+g.Size; off += chunk {
		n := min(chunk, g.Offset+g.Size-off)
		if _, err := dev.WriteAt(zero[:n], off); err != nil {
			return fmt.Errorf("ringlog: format: %w", err)
		}
	}
	if err := wal.Format(dev, g.JournalOff, g.JournalSize); err != nil {
		return fmt.Errorf("ringlog: format: %w", err)
	}
	id := rand.Uint64()
	block := device.AlignedBuffer(layout.Align)
	writeBlock := func(off int64, encode func([]byte)) error {
		clear(block)
		encode(block)
		if _, err := dev.WriteAt(block, off); err != nil {
			return fmt.Errorf("ringlog: format: %w", err)
		}
		return nil
	}
	for i := range 2 {
		if err := writeBlock(g.TailSlot(i), layout.Tail{Gen: 1, FormatID: id, Epoch: 1}.Encode); err != nil {
			return err
		}
		if err := writeBlock(g.HeadSlot(i), layout.Head{Gen: 1, FormatID: id}.Encode); err != nil {
			return err
		}
	}
	if err := dev.Sync(); err != nil {
		return fmt.Errorf("ringlog: format: %w", err)
	}
	sb := layout.Superblock{Gen: 1, Geometry: g, FormatID: id, BlockSize: layout.Align}
	for i := range 2 {
		if err := writeBlock(g.Offset+int64(i)*layout.Align, sb.Encode); err != nil {
			return err
		}
	}
	if err := dev.Sync(); err != nil {
		return fmt.Errorf("ringlog: format: %w", err)
	}
	return nil
}
