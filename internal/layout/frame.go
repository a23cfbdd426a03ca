package layout

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
)

// HeaderLen is the size of a frame header; record strides are multiples of
// it, so any gap in the data area can hold a padding marker.
const HeaderLen = 32

const frameMagic = 0x4352_4c52 // "RLRC"

// Kind tells a record from a padding marker.
type Kind uint8

// Frame kinds.
const (
	KindRecord  Kind = 1
	KindPadding Kind = 2
)

// Header precedes every record and padding marker.
//
// For a record, Length is the payload size and the payload starts DataOff
// bytes after the header's start (HeaderLen for appended records, a block
// size for zero-copy reservations so the caller's payload is aligned). For
// padding, Length is the whole span the marker covers, header included.
// The checksum is xxhash64 over header bytes 8..32 followed by the payload.
type Header struct {
	Sum     uint64
	Pos     uint64
	Length  uint32
	Epoch   uint32
	DataOff uint16
	Kind    Kind
}

// Stride is the number of bytes of the data area the frame takes.
func (h Header) Stride() uint64 {
	if h.Kind == KindPadding {
		return uint64(h.Length)
	}
	// DataOff is HeaderLen or a block size: a power of two that is also the
	// alignment of the record's end, so a reservation ends on a block.
	return RoundUp(uint64(h.DataOff)+uint64(h.Length), uint64(h.DataOff))
}

// RoundUp rounds n up to a multiple of a (a power of two).
func RoundUp(n, a uint64) uint64 { return (n + a - 1) &^ (a - 1) }

// PutHeader writes every field of h except the checksum into b.
func PutHeader(b []byte, h Header) {
	le := binary.LittleEndian
	le.PutUint64(b[8:], h.Pos)
	le.PutUint32(b[16:], h.Length)
	le.PutUint32(b[20:], h.Epoch)
	le.PutUint16(b[24:], h.DataOff)
	b[26] = byte(h.Kind)
	b[27] = 0
	le.PutUint32(b[28:], frameMagic)
}

// SealInline computes and stores the checksum of a record whose payload
// directly follows its header in b (or of a padding marker, with payload
// length 0), returning it.
func SealInline(b []byte, payloadLen int) uint64 {
	s := xxhash.Sum64(b[8 : HeaderLen+payloadLen])
	binary.LittleEndian.PutUint64(b, s)
	return s
}

// Seal computes and stores the checksum of a header whose payload lives
// elsewhere.
func Seal(b []byte, payload []byte) uint64 {
	s := Checksum(b, payload)
	binary.LittleEndian.PutUint64(b, s)
	return s
}

// Checksum is the checksum a frame with header bytes b and the given
// payload must carry.
func Checksum(b []byte, payload []byte) uint64 {
	var d xxhash.Digest
	d.Reset()
	d.Write(b[8:HeaderLen])
	d.Write(payload)
	return d.Sum64()
}

// DecodeHeader parses a frame header; ok is false when the magic or the
// field values cannot be a frame. The checksum is not verified.
func DecodeHeader(b []byte) (h Header, ok bool) {
	le := binary.LittleEndian
	if le.Uint32(b[28:]) != frameMagic || b[27] != 0 {
		return Header{}, false
	}
	h = Header{
		Sum:     le.Uint64(b[0:]),
		Pos:     le.Uint64(b[8:]),
		Length:  le.Uint32(b[16:]),
		Epoch:   le.Uint32(b[20:]),
		DataOff: le.Uint16(b[24:]),
		Kind:    Kind(b[26]),
	}
	switch h.Kind {
	case KindRecord:
		ok = h.DataOff >= HeaderLen && h.DataOff&(h.DataOff-1) == 0
	case KindPadding:
		ok = h.Length >= HeaderLen && h.Length%HeaderLen == 0 && h.DataOff == 0
	}
	return h, ok
}
