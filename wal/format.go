package wal

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cespare/xxhash/v2"
	"github.com/ringlog/ringlog/device"
)

// Version is the on-disk format version of the journal (docs/FORMAT.md).
const Version = 1

const (
	headerMagic = 0x484a4c52 // "RLJH"
	batchMagic  = 0x424a4c52 // "RLJB"
	// slot is the room one header copy takes: one O_DIRECT block, so that
	// writing one copy can never tear the other.
	slot = device.DirectAlign
	// headerLen is the encoded size of a header copy.
	headerLen = 48
	// batchHeaderLen is the encoded size of a batch header.
	batchHeaderLen = 32
	// MinSize is the smallest journal region: two header slots and room for
	// a few batches.
	MinSize = 2*slot + 4*slot
)

var (
	// ErrBadFormat reports a region that does not hold a journal of this
	// version (bad magic, version, geometry or both header copies corrupt).
	ErrBadFormat = errors.New("wal: not a valid journal")
	// ErrFailed reports a journal that refuses commits after a failed write
	// or sync; reopen it.
	ErrFailed = errors.New("wal: journal failed; reopen it")
	// ErrClosed reports use of a closed journal.
	ErrClosed = errors.New("wal: journal closed")
	// ErrTooLarge reports a transaction that cannot fit in the journal.
	ErrTooLarge = errors.New("wal: transaction larger than the journal")
	// ErrBadWrite reports a Tx.Write outside the device or inside the
	// journal's own region.
	ErrBadWrite = errors.New("wal: write outside the usable device")
	// ErrDiscarded reports Commit of a discarded or already used Tx.
	ErrDiscarded = errors.New("wal: transaction already committed or discarded")
)

// header is one copy of the journal header.
type header struct {
	gen      uint64 // generation: the copy with the higher valid one is current
	startSeq uint64 // first batch sequence to replay
	area     uint64 // bytes of the batch area, for validation
}

func (h header) encode(b []byte) {
	clear(b[:headerLen])
	binary.LittleEndian.PutUint32(b[0:], headerMagic)
	binary.LittleEndian.PutUint32(b[4:], Version)
	binary.LittleEndian.PutUint64(b[8:], h.gen)
	binary.LittleEndian.PutUint64(b[16:], h.startSeq)
	binary.LittleEndian.PutUint64(b[24:], h.area)
	binary.LittleEndian.PutUint64(b[40:], xxhash.Sum64(b[:40]))
}

// decodeHeader returns the header in b, or an error saying why it is not one.
func decodeHeader(b []byte) (header, error) {
	if binary.LittleEndian.Uint32(b[0:]) != headerMagic {
		return header{}, fmt.Errorf("%w: bad header magic", ErrBadFormat)
	}
	if binary.LittleEndian.Uint64(b[40:]) != xxhash.Sum64(b[:40]) {
		return header{}, fmt.Errorf("%w: header checksum mismatch", ErrBadFormat)
	}
	if v := binary.LittleEndian.Uint32(b[4:]); v != Version {
		return header{}, fmt.Errorf("%w: format version %d, this build reads %d", ErrBadFormat, v, Version)
	}
	return header{
		gen:      binary.LittleEndian.Uint64(b[8:]),
		startSeq: binary.LittleEndian.Uint64(b[16:]),
		area:     binary.LittleEndian.Uint64(b[24:]),
	}, nil
}

// batchHeader precedes every batch of transactions in the area.
type batchHeader struct {
	seq     uint64
	ntx     uint32
	payload uint32 // bytes of encoded writes after the header
	padded  uint32 // bytes the batch occupies, header included: a block multiple
}

func (h batchHeader) encode(b []byte, payload []byte) {
	binary.LittleEndian.PutUint32(b[0:], batchMagic)
	binary.LittleEndian.PutUint32(b[4:], h.ntx)
	binary.LittleEndian.PutUint64(b[8:], h.seq)
	binary.LittleEndian.PutUint32(b[16:], h.payload)
	binary.LittleEndian.PutUint32(b[20:], h.padded)
	d := xxhash.New()
	d.Write(b[:24])
	d.Write(payload)
	binary.LittleEndian.PutUint64(b[24:], d.Sum64())
}

// decodeBatchHeader parses b without checking the payload checksum.
func decodeBatchHeader(b []byte) (batchHeader, bool) {
	if binary.LittleEndian.Uint32(b[0:]) != batchMagic {
		return batchHeader{}, false
	}
	return batchHeader{
		ntx:     binary.LittleEndian.Uint32(b[4:]),
		seq:     binary.LittleEndian.Uint64(b[8:]),
		payload: binary.LittleEndian.Uint32(b[16:]),
		padded:  binary.LittleEndian.Uint32(b[20:]),
	}, true
}

func batchChecksumOK(b []byte, payload []byte) bool {
	d := xxhash.New()
	d.Write(b[:24])
	d.Write(payload)
	return d.Sum64() == binary.LittleEndian.Uint64(b[24:])
}

// write is one home write of a transaction.
type write struct {
	off  int64
	data []byte
}

// writeHeaderLen is the encoded size of a write's offset and length.
const writeHeaderLen = 12

func encodedLen(ws []write) int {
	n := 4
	for _, w := range ws {
		n += writeHeaderLen + len(w.data)
	}
	return n
}

// appendWrites encodes one transaction's writes.
func appendWrites(b []byte, ws []write) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(ws)))
	for _, w := range ws {
		b = binary.LittleEndian.AppendUint64(b, uint64(w.off))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(w.data)))
		b = append(b, w.data...)
	}
	return b
}

// decodeWrites parses the transactions of a verified batch payload. The
// returned writes alias p.
func decodeWrites(p []byte, ntx uint32) ([]write, error) {
	var ws []write
	for range ntx {
		if len(p) < 4 {
			return nil, fmt.Errorf("%w: truncated batch", ErrBadFormat)
		}
		n := binary.LittleEndian.Uint32(p)
		p = p[4:]
		for range n {
			if len(p) < writeHeaderLen {
				return nil, fmt.Errorf("%w: truncated write", ErrBadFormat)
			}
			off := int64(binary.LittleEndian.Uint64(p))
			l := binary.LittleEndian.Uint32(p[8:])
			p = p[writeHeaderLen:]
			if uint64(l) > uint64(len(p)) || off < 0 {
				return nil, fmt.Errorf("%w: bad write in batch", ErrBadFormat)
			}
			ws = append(ws, write{off: off, data: p[:l]})
			p = p[l:]
		}
	}
	return ws, nil
}

// Format writes an empty journal into [offset, offset+size) of dev and syncs
// it. offset and size must be multiples of device.DirectAlign and size at
// least MinSize.
func Format(dev device.Device, offset, size int64) error {
	if err := checkGeometry(dev, offset, size); err != nil {
		return err
	}
	buf := device.AlignedBuffer(2 * slot)
	h := header{gen: 1, startSeq: 1, area: uint64(size - 2*slot)}
	h.encode(buf)
	h.gen = 0 // the second copy is an older, equally valid generation
	h.encode(buf[slot:])
	if _, err := dev.WriteAt(buf, offset); err != nil {
		return fmt.Errorf("wal: format: %w", err)
	}
	// Clear the start of the area so no batch of an earlier journal at the
	// same place could be mistaken for ours.
	clear(buf)
	if _, err := dev.WriteAt(buf[:slot], offset+2*slot); err != nil {
		return fmt.Errorf("wal: format: %w", err)
	}
	if err := dev.Sync(); err != nil {
		return fmt.Errorf("wal: format: %w", err)
	}
	return nil
}

func checkGeometry(dev device.Device, offset, size int64) error {
	switch {
	case offset < 0 || offset%slot != 0:
		return fmt.Errorf("%w: offset %d is not a multiple of %d", ErrBadFormat, offset, slot)
	case size < MinSize || size%slot != 0:
		return fmt.Errorf("%w: size %d must be a multiple of %d and at least %d", ErrBadFormat, size, slot, MinSize)
	case offset+size > dev.Size():
		return fmt.Errorf("%w: region [%d, %d) does not fit a device of %d bytes", ErrBadFormat, offset, offset+size, dev.Size())
	case !device.BlockSizeOK(dev.BlockSize()):
		return fmt.Errorf("%w: device block size %d is not a power of two from %d to %d", ErrBadFormat, dev.BlockSize(), device.SectorSize, device.MaxBlockSize)
	}
	return nil
}
