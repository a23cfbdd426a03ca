package pipeline

import (
	"context"
	"errors"
	"fmt"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/internal/layout"
	"github.com/ringlog/ringlog/internal/testhooks"
	"github.com/ringlog/ringlog/stages"
	"github.com/ringlog/ringlog/wal"
)

// Open recovers the log in the region cfg describes and starts its
// goroutines. Recovery replays the journal, picks the newest valid copy of
// the superblock and of the head and tail records, then verifies every
// record from the last tail known to be synced (or the head, if further) up
// to the journal's tail bound — bytes the last groups' fdatasyncs may not
// have covered, or that were never written, since the bound runs ahead of
// the data — and ends the tail at the first one that fails (checksum,
// position, epoch, or an end past the bound). Nothing past that point was
// ever acknowledged. A read that fails, rather than finding no valid frame,
// fails Open with ErrUnreadable and commits no new tail (unless
// Config.TruncateUnreadable). The new tail is committed under a new epoch
// before Open returns.
func Open(dev device.Device, cfg Config) (*Log, error) {
	g, err := readSuperblock(dev, cfg)
	if err != nil {
		return nil, err
	}
	j, err := wal.Open(dev, g.geo.JournalOff, g.geo.JournalSize, wal.Options{DeferApply: true, MaxInFlight: cfg.syncsInFlight()})
	if err != nil {
		if errors.Is(err, wal.ErrBadFormat) {
			return nil, fmt.Errorf("%w: journal: %w", ErrBadFormat, err)
		}
		return nil, fmt.Errorf("ringlog: open journal: %w", err)
	}
	l, err := recoverLog(dev, j, g, cfg)
	if err != nil {
		j.Close()
		return nil, err
	}
	return l, nil
}

type formatted struct {
	geo layout.Geometry
	id  uint64
}

func readSuperblock(dev device.Device, cfg Config) (formatted, error) {
	if !device.BlockSizeOK(dev.BlockSize()) {
		return formatted{}, badBlockSize(dev)
	}
	if cfg.Offset < 0 || cfg.Offset%layout.Align != 0 || cfg.Offset+2*layout.Align > dev.Size() {
		return formatted{}, fmt.Errorf("%w: offset %d does not leave room for a superblock on a device of %d bytes", ErrBadConfig, cfg.Offset, dev.Size())
	}
	buf := device.AlignedBuffer(2 * layout.Align)
	if _, err := dev.ReadAt(buf, cfg.Offset); err != nil {
		return formatted{}, fmt.Errorf("ringlog: read superblock: %w", err)
	}
	var best layout.Superblock
	found := false
	var why error
	for i := range 2 {
		sb, err := layout.DecodeSuperblock(buf[i*layout.Align:])
		if err != nil {
			why = err
			continue
		}
		if !found || sb.Gen > best.Gen {
			best, found = sb, true
		}
	}
	if !found {
		return formatted{}, fmt.Errorf("%w: %w", ErrBadFormat, why)
	}
	g := best.Geometry
	switch {
	case g.Offset != cfg.Offset:
		return formatted{}, fmt.Errorf("%w: superblock says the region starts at %d, config says %d", ErrBadConfig, g.Offset, cfg.Offset)
	case cfg.Size != 0 && cfg.Size != g.Size:
		return formatted{}, fmt.Errorf("%w: superblock says the region is %d bytes, config says %d", ErrBadConfig, g.Size, cfg.Size)
	case cfg.JournalSize != 0 && cfg.JournalSize != g.JournalSize:
		return formatted{}, fmt.Errorf("%w: superblock says the journal is %d bytes, config says %d", ErrBadConfig, g.JournalSize, cfg.JournalSize)
	case g.Offset+g.Size > dev.Size():
		return formatted{}, fmt.Errorf("%w: region [%d, %d) is beyond the device's %d bytes", ErrBadFormat, g.Offset, g.Offset+g.Size, dev.Size())
	case g.DataSize < minDataSize || g.JournalSize < wal.MinSize:
		return formatted{}, fmt.Errorf("%w: impossible geometry in superblock", ErrBadFormat)
	}
	return formatted{geo: g, id: best.FormatID}, nil
}

// readState returns the newest valid copies of the tail and head records.
func readState(dev device.Device, f formatted) (layout.Tail, layout.Head, error) {
	buf := device.AlignedBuffer(layout.StateSize)
	if _, err := dev.ReadAt(buf, f.geo.StateOff); err != nil {
		return layout.Tail{}, layout.Head{}, fmt.Errorf("ringlog: read state: %w", err)
	}
	var tail layout.Tail
	var head layout.Head
	okT, okH := false, false
	for i := range 2 {
		if t, ok := layout.DecodeTail(buf[int64(i)*layout.Align:]); ok && t.FormatID == f.id && (!okT || t.Gen > tail.Gen) {
			tail, okT = t, true
		}
		if h, ok := layout.DecodeHead(buf[int64(2+i)*layout.Align:]); ok && h.FormatID == f.id && (!okH || h.Gen > head.Gen) {
			head, okH = h, true
		}
	}
	switch {
	case !okT || !okH:
		return tail, head, fmt.Errorf("%w: no valid copy of the %s record", ErrCorrupt, map[bool]string{true: "head", false: "tail"}[okT])
	case tail.Synced > tail.Tail || head.Head > tail.Tail || tail.Tail-head.Head > uint64(f.geo.DataSize) ||
		// Every frame starts on a header boundary; a position anywhere
		// else was never written by a log.
		(tail.Tail|tail.Synced|head.Head)%layout.HeaderLen != 0:
		return tail, head, fmt.Errorf("%w: inconsistent state: head %d, synced %d, tail %d", ErrCorrupt, head.Head, tail.Synced, tail.Tail)
	}
	return tail, head, nil
}

// recoverLog restores head and tail, verifies the unsynced stretch, commits
// the new epoch and starts the stages.
func recoverLog(dev device.Device, j *wal.Journal, f formatted, cfg Config) (*Log, error) {
	tail, head, err := readState(dev, f)
	if err != nil {
		return nil, err
	}
	r := stages.FrameReader{Dev: dev, Geo: f.geo, Ahead: scanAhead, Limit: tail.Tail}
	// The walk starts at the head when the head is past synced: the
	// collector frees space up to the durable tail, which runs ahead of
	// the synced position the tail record keeps (the record is rewritten
	// only when the bound moves), and the next lap may already have
	// overwritten frames between the two. Every frame below the durable
	// head was acknowledged, so none of them needs verifying.
	end := max(tail.Synced, head.Head)
	if testhooks.WalkFromSynced.Load() {
		end = tail.Synced
	}
	for end < tail.Tail {
		h, _, err := r.Read(end)
		if testhooks.TrustJournalTail.Load() {
			end = tail.Tail
			break
		}
		if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorrupt) && !cfg.TruncateUnreadable {
			// A read that failed says nothing about the frame. Ending
			// the tail here would drop acknowledged records for good,
			// so Open fails and commits no new tail.
			return nil, fmt.Errorf("%w: verifying the log's end at position %d: %w", ErrUnreadable, end, err)
		}
		if err != nil || h.Epoch != tail.Epoch || end+h.Stride() > tail.Tail {
			break
		}
		end += h.Stride()
	}
	next := layout.Tail{Gen: tail.Gen + 1, FormatID: f.id, Tail: end, Synced: end, Epoch: tail.Epoch + 1}
	var b [layout.StateLen]byte
	next.Encode(b[:])
	tx := j.Begin()
	tx.Write(f.geo.TailSlot(0), b[:])
	tx.Write(f.geo.TailSlot(1), b[:])
	if err := j.Commit(context.Background(), tx); err != nil {
		return nil, fmt.Errorf("ringlog: commit recovered tail: %w", err)
	}
	return start(dev, j, f, cfg, next, head, tail.Tail-end)
}
