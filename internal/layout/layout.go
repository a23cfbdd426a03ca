// Package layout is ringlog's on-disk format: the superblock, the head and
// tail state records, and the frame that precedes every record and padding
// marker in the data area. docs/FORMAT.md describes the same bytes in prose.
package layout

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cespare/xxhash/v2"
)

// Version is the format version written in the superblock. Change it with
// any change to the bytes this package reads or writes.
const Version = 2

// Align is the unit of the region's geometry: offsets and sizes of the
// superblock, journal, state and data area are multiples of it, so the same
// log can be opened buffered or with O_DIRECT.
const Align = 4096

var (
	// ErrBadFormat reports bytes that are not a ringlog structure of this
	// version.
	ErrBadFormat = errors.New("ringlog: bad format")
)

// Geometry places the parts of a log inside its region. All offsets are
// absolute device offsets.
type Geometry struct {
	Offset, Size   int64 // the whole region
	JournalOff     int64
	JournalSize    int64
	StateOff       int64 // four state blocks: tail A, tail B, head A, head B
	DataOff        int64
	DataSize       int64
	SuperblockSize int64
}

// StateSize is the bytes the state blocks take.
const StateSize = 4 * Align

// NewGeometry lays out a region of size bytes at offset with a journal of
// journalSize bytes.
func NewGeometry(offset, size, journalSize int64) Geometry {
	g := Geometry{Offset: offset, Size: size, SuperblockSize: 2 * Align}
	g.JournalOff = offset + g.SuperblockSize
	g.JournalSize = journalSize
	g.StateOff = g.JournalOff + journalSize
	g.DataOff = g.StateOff + StateSize
	g.DataSize = offset + size - g.DataOff
	return g
}

// TailSlot and HeadSlot are the device offsets of copy i (0 or 1) of the
// tail and head state records.
func (g Geometry) TailSlot(i int) int64 { return g.StateOff + int64(i)*Align }

// HeadSlot: see TailSlot.
func (g Geometry) HeadSlot(i int) int64 { return g.StateOff + int64(2+i)*Align }

// Phys is the device offset of virtual position pos.
func (g Geometry) Phys(pos uint64) int64 { return g.DataOff + int64(pos%uint64(g.DataSize)) }

// MaxStride is the largest record stride that always fits: with at most
// half the data area less a block (the writer's slack past the tail), a
// record fits in an empty log wherever its tail is. It also keeps every
// padding marker's length within 32 bits.
func (g Geometry) MaxStride() int64 { return min(g.DataSize/2-Align, 1<<31) }

// ---- superblock ----

const (
	sbMagic = 0x00474f4c474e4952 // "RINGLOG\0"
	sbLen   = 96
)

// Superblock identifies a formatted region. Two copies are kept, one per
// Align block at the start of the region.
type Superblock struct {
	Gen       uint64
	Geometry  Geometry
	FormatID  uint64 // random at Format, so state of an earlier format is never trusted
	BlockSize uint32 // Align at format time
}

// Encode writes the superblock into b (at least sbLen bytes).
func (s Superblock) Encode(b []byte) {
	clear(b[:sbLen])
	le := binary.LittleEndian
	le.PutUint64(b[0:], sbMagic)
	le.PutUint32(b[8:], Version)
	le.PutUint32(b[12:], s.BlockSize)
	le.PutUint64(b[16:], s.Gen)
	le.PutUint64(b[24:], uint64(s.Geometry.Offset))
	le.PutUint64(b[32:], uint64(s.Geometry.Size))
	le.PutUint64(b[40:], uint64(s.Geometry.JournalSize))
	le.PutUint64(b[48:], uint64(s.Geometry.DataSize))
	le.PutUint64(b[56:], s.FormatID)
	le.PutUint64(b[sbLen-8:], xxhash.Sum64(b[:sbLen-8]))
}

// DecodeSuperblock parses b, saying what is wrong if it is not a superblock
// of this version.
func DecodeSuperblock(b []byte) (Superblock, error) {
	le := binary.LittleEndian
	if le.Uint64(b[0:]) != sbMagic {
		return Superblock{}, fmt.Errorf("%w: no ringlog superblock (magic %#x)", ErrBadFormat, le.Uint64(b[0:]))
	}
	if le.Uint64(b[sbLen-8:]) != xxhash.Sum64(b[:sbLen-8]) {
		return Superblock{}, fmt.Errorf("%w: superblock checksum mismatch", ErrBadFormat)
	}
	if v := le.Uint32(b[8:]); v != Version {
		return Superblock{}, fmt.Errorf("%w: format version %d, this build reads version %d", ErrBadFormat, v, Version)
	}
	s := Superblock{
		BlockSize: le.Uint32(b[12:]),
		Gen:       le.Uint64(b[16:]),
		FormatID:  le.Uint64(b[56:]),
	}
	s.Geometry = NewGeometry(int64(le.Uint64(b[24:])), int64(le.Uint64(b[32:])), int64(le.Uint64(b[40:])))
	if s.Geometry.DataSize != int64(le.Uint64(b[48:])) || s.BlockSize != Align {
		return Superblock{}, fmt.Errorf("%w: inconsistent superblock geometry", ErrBadFormat)
	}
	return s, nil
}

// ---- state records ----

const (
	tailMagic = 0x4c54_4c52 // "RLTL"
	headMagic = 0x4448_4c52 // "RLHD"
	// StateLen is the encoded size of a state record.
	StateLen = 48
)

// Tail is the committer's durable state: the tail, the position up to which
// data is known synced, and the epoch of the incarnation that wrote the
// records in [Synced, Tail).
type Tail struct {
	Gen      uint64
	FormatID uint64
	Tail     uint64
	Synced   uint64
	Epoch    uint32
}

// Head is the collector's durable state.
type Head struct {
	Gen      uint64
	FormatID uint64
	Head     uint64
}

func encodeState(b []byte, magic uint32, gen, id, a, c uint64, e uint32) {
	clear(b[:StateLen])
	le := binary.LittleEndian
	le.PutUint32(b[0:], magic)
	le.PutUint32(b[4:], e)
	le.PutUint64(b[8:], gen)
	le.PutUint64(b[16:], id)
	le.PutUint64(b[24:], a)
	le.PutUint64(b[32:], c)
	le.PutUint64(b[40:], xxhash.Sum64(b[:40]))
}

func decodeState(b []byte, magic uint32) (gen, id, a, c uint64, e uint32, ok bool) {
	le := binary.LittleEndian
	if le.Uint32(b[0:]) != magic || le.Uint64(b[40:]) != xxhash.Sum64(b[:40]) {
		return 0, 0, 0, 0, 0, false
	}
	return le.Uint64(b[8:]), le.Uint64(b[16:]), le.Uint64(b[24:]), le.Uint64(b[32:]), le.Uint32(b[4:]), true
}

// Encode writes t into b (at least StateLen bytes).
func (t Tail) Encode(b []byte) {
	encodeState(b, tailMagic, t.Gen, t.FormatID, t.Tail, t.Synced, t.Epoch)
}

// DecodeTail parses a tail record.
func DecodeTail(b []byte) (Tail, bool) {
	gen, id, a, c, e, ok := decodeState(b, tailMagic)
	return Tail{Gen: gen, FormatID: id, Tail: a, Synced: c, Epoch: e}, ok
}

// Encode writes h into b (at least StateLen bytes).
func (h Head) Encode(b []byte) { encodeState(b, headMagic, h.Gen, h.FormatID, h.Head, 0, 0) }

// DecodeHead parses a head record.
func DecodeHead(b []byte) (Head, bool) {
	gen, id, a, _, _, ok := decodeState(b, headMagic)
	return Head{Gen: gen, FormatID: id, Head: a}, ok
}
