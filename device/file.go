package device

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"unsafe"

	"github.com/ncw/directio"
)

// DirectAlign is the alignment O_DIRECT needs of offsets, lengths and buffer
// addresses.
const DirectAlign = directio.AlignSize

// FileOptions says how OpenFile opens a path.
type FileOptions struct {
	// Size is the size of the device in bytes. A regular file is created if
	// missing (and its directory synced, so that its name survives a power
	// cut) and extended to Size if shorter; 0 keeps the current size, and
	// a missing path is then an error matching fs.ErrNotExist, so that a
	// mistyped block device path does not become a new regular file. Size
	// is ignored for block devices, whose size is their own.
	Size int64
	// Direct opens with O_DIRECT: I/O bypasses the page cache, and every
	// offset, length and buffer must be aligned to DirectAlign (use
	// AlignedBuffer), or the call fails with a *MisalignedError.
	Direct bool
}

// File is a Device on a regular file or a raw block device. It is safe for
// concurrent use.
type File struct {
	f      *os.File
	size   int64
	direct bool
	closed atomic.Bool
}

// OpenFile opens path as a Device. For a regular file the device's size is
// opts.Size (or the file's size when opts.Size is 0); for a block device it
// is found by seeking to the end, since stat reports 0 for one.
func OpenFile(path string, opts FileOptions) (*File, error) {
	if opts.Size < 0 {
		return nil, fmt.Errorf("device: open %s: %w: size %d", path, ErrOutOfRange, opts.Size)
	}
	open := func(flag int) (*os.File, error) {
		if opts.Direct {
			return directio.OpenFile(path, flag, 0o644)
		}
		return os.OpenFile(path, flag, 0o644)
	}
	f, err := open(os.O_RDWR)
	created := false
	if errors.Is(err, fs.ErrNotExist) && opts.Size > 0 {
		f, err = open(os.O_RDWR | os.O_CREATE | os.O_EXCL)
		created = err == nil
		if errors.Is(err, fs.ErrExist) { // created meanwhile by another
			f, err = open(os.O_RDWR)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("device: open %s: %w", path, err)
	}
	fail := func(err error) (*File, error) {
		f.Close()
		return nil, fmt.Errorf("device: open %s: %w", path, err)
	}
	if created {
		// fdatasync makes a file's bytes durable, not its name: without
		// this a power cut could take the whole log with the directory
		// entry.
		if err := syncDir(filepath.Dir(path)); err != nil {
			return fail(err)
		}
	}
	st, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	var size int64
	switch {
	case st.Mode()&os.ModeDevice != 0:
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			return fail(err)
		}
	case st.Mode().IsRegular():
		size = st.Size()
		if opts.Size > size {
			if err := f.Truncate(opts.Size); err != nil {
				return fail(err)
			}
		}
		if opts.Size > 0 {
			size = opts.Size
		}
	default:
		return fail(fmt.Errorf("not a regular file or block device (mode %v)", st.Mode()))
	}
	if opts.Direct && size%DirectAlign != 0 {
		return fail(&MisalignedError{Op: "open", What: "size", Value: size, Align: DirectAlign})
	}
	return &File{f: f, size: size, direct: opts.Direct}, nil
}

// syncDir makes the entries of directory dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// AlignedBuffer returns a zeroed buffer of n bytes whose address is aligned
// for O_DIRECT. n should be a multiple of DirectAlign for direct I/O.
func AlignedBuffer(n int) []byte {
	if n == 0 {
		return []byte{}
	}
	return directio.AlignedBlock(n)
}

func (d *File) check(op string, p []byte, off int64) error {
	if d.closed.Load() {
		return ErrClosed
	}
	if err := checkRange(op, off, len(p), d.size); err != nil {
		return err
	}
	if !d.direct {
		return nil
	}
	switch {
	case off%DirectAlign != 0:
		return &MisalignedError{Op: op, What: "offset", Value: off, Align: DirectAlign}
	case len(p)%DirectAlign != 0:
		return &MisalignedError{Op: op, What: "length", Value: int64(len(p)), Align: DirectAlign}
	case len(p) > 0 && uintptr(unsafe.Pointer(&p[0]))%DirectAlign != 0:
		return &MisalignedError{Op: op, What: "buffer", Value: int64(uintptr(unsafe.Pointer(&p[0]))), Align: DirectAlign}
	}
	return nil
}

// ReadAt implements io.ReaderAt.
func (d *File) ReadAt(p []byte, off int64) (int, error) {
	if err := d.check("read", p, off); err != nil {
		return 0, err
	}
	n, err := d.f.ReadAt(p, off)
	if err == io.EOF && n < len(p) {
		// A file shorter than the device (Size of 0 at a later open, or a
		// truncation by someone else) reads as zeros, like the fresh device.
		clear(p[n:])
		return len(p), nil
	}
	return n, err
}

// WriteAt implements io.WriterAt.
func (d *File) WriteAt(p []byte, off int64) (int, error) {
	if err := d.check("write", p, off); err != nil {
		return 0, err
	}
	return d.f.WriteAt(p, off)
}

// Sync makes completed writes durable with fdatasync.
func (d *File) Sync() error {
	if d.closed.Load() {
		return ErrClosed
	}
	return fdatasync(d.f)
}

// Size implements Device.
func (d *File) Size() int64 { return d.size }

// BlockSize is DirectAlign for a direct file and SectorSize otherwise.
func (d *File) BlockSize() int {
	if d.direct {
		return DirectAlign
	}
	return SectorSize
}

// Direct reports whether the file was opened with O_DIRECT.
func (d *File) Direct() bool { return d.direct }

// Close closes the file. It does not sync.
func (d *File) Close() error {
	if d.closed.Swap(true) {
		return ErrClosed
	}
	return d.f.Close()
}
