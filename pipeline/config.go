package pipeline

import (
	"fmt"
	"time"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/internal/layout"
	"github.com/ringlog/ringlog/internal/testhooks"
	"github.com/ringlog/ringlog/wal"
)

// Config places a log on a device and tunes it. The zero value uses the
// whole device.
type Config struct {
	Offset          int64          // start of the log's region on dev (default 0)
	Size            int64          // bytes of the region (0: to the end of dev)
	JournalSize     int64          // bytes for the journal inside the region (0: a default)
	Checker         GarbageChecker // nil: nothing is garbage
	CollectInterval time.Duration  // 0: a default; the collector also runs under pressure
	// SyncsInFlight is how many group commits may be syncing at once (0: a
	// default of 1). A group is acknowledged only once its sync and every
	// earlier one have returned.
	//
	// With 1, one group at a time: once a group is durable the log lets
	// the callers it just acknowledged append again before it starts the
	// next group, so writers that append in a loop share one sync instead
	// of splitting into two groups that each pay a whole flush; a group
	// inside the journal's tail bound is synced without a hand-off to the
	// journal's goroutine. On a disk that serves one request at a time
	// (the virtual disks here) that is 1.03 to 1.07 times the appends per
	// second of 2 with 64 writers of 4 KiB.
	//
	// More overlaps the syncs, which pays on a disk that works on several
	// flushes at once. A group is then acknowledged once every sync that
	// overlapped its own has returned as well (wal.Options.MaxInFlight):
	// a failed writeback is reported to one sync only, which may be
	// another group's.
	SyncsInFlight int
	// TruncateUnreadable makes Open end the log at a frame it cannot read
	// in the stretch it verifies after a crash, as it does at a frame that
	// fails a check, instead of failing with ErrUnreadable. Records from
	// that frame on are lost, acknowledged ones too: it is the way to open
	// a log whose device has an unreadable sector there (a write torn by a
	// power cut can leave one), once Open has failed with ErrUnreadable.
	TruncateUnreadable bool
}

// syncsInFlight is cfg.SyncsInFlight or its default.
func (cfg Config) syncsInFlight() int {
	if cfg.SyncsInFlight > 0 {
		return cfg.SyncsInFlight
	}
	return defaultSyncsInFlight
}

// Position is a record's virtual position: it only ever increases, and the
// position of an acknowledged record is never reused, so it names that
// record for the life of the log. (Positions past the tail Open recovers,
// which no acknowledged record holds, are handed out again after a crash,
// or after a Close with a reservation still open or an Append cut short.)
type Position uint64

// GarbageChecker tells the collector whether the record at pos may be
// reclaimed. It is called from the collector's goroutine, oldest record
// first; once it says true for a record, that record may disappear at any
// time. An error stops the pass (Collect returns it).
//
// The collector may ask about a record as soon as it is durable, which can
// be before its Append returns: a checker must call a record it does not
// know yet live. The collector stops at the first live record, so one
// long-lived record at the head holds back all reclaiming behind it; an
// application that keeps some records for ever copies them forward (as
// examples/kvstore does) so that their old copies become garbage.
type GarbageChecker interface {
	IsGarbage(pos Position, payload []byte) (bool, error)
}

// PositionChecker is an optional interface of a GarbageChecker whose answer
// depends on the position alone (an index that maps keys to positions knows
// which positions are stale). The collector then reads no payloads, and of
// the records this Log appended since Open it learns the sizes from the
// allocator instead of the device: it reads almost nothing back, instead
// of every byte written. It keeps the sizes in about a byte per small
// record, up to a MiB (a million records of mixed sizes; records of one
// size take next to nothing), and reads what they do not cover, as it
// reads reservations and whatever was written before Open.
type PositionChecker interface {
	IsGarbageAt(pos Position) (bool, error)
}

// GarbageFunc adapts a function to GarbageChecker.
type GarbageFunc func(pos Position, payload []byte) (bool, error)

// IsGarbage calls f.
func (f GarbageFunc) IsGarbage(pos Position, payload []byte) (bool, error) { return f(pos, payload) }

const (
	defaultCollectInterval = time.Second
	defaultSyncsInFlight   = 1
	minDataSize            = 4 * layout.Align
	maxJournalSize         = 4 << 20
)

func badBlockSize(dev device.Device) error {
	return fmt.Errorf("%w: device block size %d is not a power of two from %d to %d", ErrBadConfig, dev.BlockSize(), device.SectorSize, device.MaxBlockSize)
}

// geometry validates cfg against dev and lays the region out.
func (cfg Config) geometry(dev device.Device) (layout.Geometry, error) {
	size := cfg.Size
	if size == 0 {
		size = dev.Size() - cfg.Offset
	}
	switch {
	case cfg.Offset < 0 || cfg.Offset%layout.Align != 0:
		return layout.Geometry{}, fmt.Errorf("%w: offset %d is not a non-negative multiple of %d", ErrBadConfig, cfg.Offset, layout.Align)
	case size <= 0 || size%layout.Align != 0:
		return layout.Geometry{}, fmt.Errorf("%w: size %d is not a positive multiple of %d", ErrBadConfig, size, layout.Align)
	case cfg.Offset+size > dev.Size():
		return layout.Geometry{}, fmt.Errorf("%w: region [%d, %d) is beyond the device's %d bytes", ErrBadConfig, cfg.Offset, cfg.Offset+size, dev.Size())
	case !device.BlockSizeOK(dev.BlockSize()):
		return layout.Geometry{}, badBlockSize(dev)
	case cfg.JournalSize < 0 || cfg.JournalSize%layout.Align != 0:
		return layout.Geometry{}, fmt.Errorf("%w: journal size %d is not a multiple of %d", ErrBadConfig, cfg.JournalSize, layout.Align)
	}
	js := cfg.JournalSize
	if js == 0 {
		js = min(max(size/32/layout.Align*layout.Align, wal.MinSize), maxJournalSize)
	}
	if js < wal.MinSize {
		return layout.Geometry{}, fmt.Errorf("%w: journal size %d is below the minimum %d", ErrBadConfig, js, wal.MinSize)
	}
	g := layout.NewGeometry(cfg.Offset, size, js)
	if g.DataSize < minDataSize {
		return layout.Geometry{}, fmt.Errorf("%w: region of %d bytes leaves %d for data, need at least %d", ErrBadConfig, size, g.DataSize, minDataSize)
	}
	return g, nil
}

// tailAhead is how far the journal's tail bound is set past the group that
// crosses it: one tail record per MiB of appends instead of one per group
// commit. The price is a walk over at most that much at Open after a crash,
// in which a damaged acknowledged frame cannot be told from one never
// written (docs/FORMAT.md). Four times as far was no faster for 64 writers
// of 4 KiB, and about 5% faster for 16 writers of 64 KiB (a bound per group
// and a half there, against one per six); a quarter as far was 4% slower
// for 4 KiB. The shorter walk is worth the 5%. A small log keeps the bound
// to an eighth of its data area.
func tailAhead(g layout.Geometry) uint64 {
	if testhooks.ExactTail.Load() {
		return 0
	}
	return min(1<<20, uint64(g.DataSize)/8) &^ (layout.HeaderLen - 1)
}
