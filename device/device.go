// Package device is the storage ringlog runs on: a byte-addressed region that
// can be read, written and made durable.
//
// Besides the real thing (File, a regular file or a raw block device, buffered
// or O_DIRECT) it provides three test doubles that the rest of ringlog is
// verified against: Mem (plain memory), Crash (memory that can show every
// state a power cut could leave) and Faulty (a wrapper that injects I/O
// errors the way Linux reports them).
package device

import (
	"errors"
	"fmt"
	"io"
)

// Device is a fixed-size, byte-addressed store.
//
// ReadAt and WriteAt follow io.ReaderAt and io.WriterAt. A write is durable
// only once a later Sync has returned nil; after a failed Sync, writes made
// since the last successful Sync may be lost, and Sync must not be retried as
// if they were not.
type Device interface {
	io.ReaderAt
	io.WriterAt
	// Sync makes every completed write durable (fdatasync on a file).
	Sync() error
	// Size is the number of addressable bytes.
	Size() int64
	// BlockSize is the alignment, in bytes, that offsets, lengths and (for
	// O_DIRECT) buffers of reads and writes must respect for best (or, with
	// O_DIRECT, any) results. It is a power of two; a log needs one that
	// BlockSizeOK accepts and refuses any other with an error.
	BlockSize() int
	// Close releases the device. Data not synced may be lost.
	Close() error
}

// SectorSize is the unit a torn write is made of: after a power cut each
// 512-byte sector of an interrupted write holds either its old or its new
// contents.
const SectorSize = 512

// MaxBlockSize is the largest block size a log or journal works on: the
// alignment of everything it lays out.
const MaxBlockSize = 4096

// BlockSizeOK reports whether a log or journal can work on blocks of bs
// bytes: a power of two, no smaller than the sector a torn write is made of
// (which also holds a frame or batch header), no larger than MaxBlockSize.
func BlockSizeOK(bs int) bool {
	return bs >= SectorSize && bs <= MaxBlockSize && bs&(bs-1) == 0
}

var (
	// ErrMisaligned is matched (errors.Is) by a *MisalignedError.
	ErrMisaligned = errors.New("device: misaligned I/O")
	// ErrOutOfRange reports an access beyond the end of the device.
	ErrOutOfRange = errors.New("device: access out of range")
	// ErrClosed reports use of a closed device.
	ErrClosed = errors.New("device: closed")
)

// MisalignedError names the value that broke a direct-I/O alignment rule, so
// that a caller sees which argument to fix instead of an EINVAL from the
// kernel.
type MisalignedError struct {
	Op    string // "read" or "write"
	What  string // "offset", "length" or "buffer"
	Value int64  // the offending offset, length or buffer address
	Align int    // the alignment required
}

func (e *MisalignedError) Error() string {
	return fmt.Sprintf("device: %s %s %d (0x%x) is not a multiple of %d", e.Op, e.What, e.Value, e.Value, e.Align)
}

// Is makes errors.Is(err, ErrMisaligned) true.
func (e *MisalignedError) Is(target error) bool { return target == ErrMisaligned }

// checkRange returns ErrOutOfRange (wrapped with the request) when
// [off, off+n) does not lie inside a device of the given size.
func checkRange(op string, off int64, n int, size int64) error {
	if off < 0 || n < 0 || off > size || int64(n) > size-off {
		return fmt.Errorf("%w: %s of %d bytes at %d on a device of %d bytes", ErrOutOfRange, op, n, off, size)
	}
	return nil
}
