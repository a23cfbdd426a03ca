package device

import (
	"errors"
	"sync"
	"syscall"
)

// Op is the kind of operation a Fault applies to.
type Op int

// The operations a Faulty device can fail.
const (
	OpRead Op = iota
	OpWrite
	OpSync
)

func (o Op) String() string {
	switch o {
	case OpRead:
		return "read"
	case OpWrite:
		return "write"
	case OpSync:
		return "sync"
	}
	return "op?"
}

// Errors a Fault commonly injects.
var (
	EIO    error = syscall.EIO
	ENOSPC error = syscall.ENOSPC
)

// Fault fails the Nth operation of kind Op (counting from 1, per kind), and
// every later one too when Sticky.
type Fault struct {
	Op     Op
	N      int64
	Err    error
	Sticky bool
	// Land, for a write, is how many of its first bytes reach the device
	// before it fails, rounded down to whole blocks: a write that fails
	// part way (EIO at a later sector, ENOSPC) leaves them behind, and
	// WriteAt reports them as written along with the error. 0 lands none.
	Land int
}

// Faulty wraps a Device and fails chosen operations.
//
// A failed Sync behaves as on Linux: the error is reported once and the
// dirty pages are dropped, so every write since the last successful Sync is
// undone on the wrapped device (as if it never reached the medium), and the
// next Sync succeeds unless another fault says otherwise. A failed write
// changes nothing but the blocks its Fault lands, which a failed Sync undoes
// too.
//
// On Linux some of those writes may have reached the medium all the same.
// Over a Crash device the undo is itself a set of pending writes, so a crash
// image can still show any of them landed; over Mem only the outcome with
// all of them dropped exists. Tests of what a reopen finds after a failed
// sync need Crash underneath.
type Faulty struct {
	inner  Device
	mu     sync.Mutex
	faults []Fault
	counts [3]int64
	undo   []pendingWrite // pre-images of writes since the last good sync, oldest first
}

// NewFaulty wraps dev with the given faults.
func NewFaulty(dev Device, faults ...Fault) *Faulty {
	return &Faulty{inner: dev, faults: faults}
}

// Inject adds faults; operation counts continue from where they are.
func (f *Faulty) Inject(faults ...Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, faults...)
}

// Count reports how many operations of kind op have been attempted.
func (f *Faulty) Count(op Op) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[op]
}

// fault counts one operation and returns the fault to inject, if any,
// with its error set.
func (f *Faulty) fault(op Op) (Fault, bool) {
	f.counts[op]++
	n := f.counts[op]
	for _, ft := range f.faults {
		if ft.Op == op && (n == ft.N || (ft.Sticky && n > ft.N)) {
			if ft.Err == nil {
				ft.Err = EIO
			}
			return ft, true
		}
	}
	return Fault{}, false
}

// ReadAt implements io.ReaderAt.
func (f *Faulty) ReadAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	ft, failed := f.fault(OpRead)
	f.mu.Unlock()
	if failed {
		return 0, &FaultError{Op: OpRead, Off: off, Err: ft.Err}
	}
	return f.inner.ReadAt(p, off)
}

// WriteAt implements io.WriterAt.
func (f *Faulty) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ft, failed := f.fault(OpWrite); failed {
		bs := f.inner.BlockSize()
		n := min(ft.Land, len(p)) / bs * bs
		if n > 0 {
			if _, err := f.write(p[:n], off); err != nil {
				return 0, err
			}
		}
		return n, &FaultError{Op: OpWrite, Off: off, Err: ft.Err}
	}
	return f.write(p, off)
}

// write writes p through, keeping what it overwrites for a failed Sync to
// restore.
func (f *Faulty) write(p []byte, off int64) (int, error) {
	old := make([]byte, len(p))
	if _, err := f.inner.ReadAt(old, off); err == nil {
		f.undo = append(f.undo, pendingWrite{off: off, data: old})
	}
	return f.inner.WriteAt(p, off)
}

// Sync implements Device; an injected failure drops every write since the
// last good sync.
func (f *Faulty) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ft, failed := f.fault(OpSync); failed {
		for i := len(f.undo) - 1; i >= 0; i-- {
			f.inner.WriteAt(f.undo[i].data, f.undo[i].off)
		}
		f.undo = nil
		return &FaultError{Op: OpSync, Off: -1, Err: ft.Err}
	}
	if err := f.inner.Sync(); err != nil {
		return err
	}
	f.undo = nil
	return nil
}

// Size implements Device.
func (f *Faulty) Size() int64 { return f.inner.Size() }

// BlockSize implements Device.
func (f *Faulty) BlockSize() int { return f.inner.BlockSize() }

// Close closes the wrapped device.
func (f *Faulty) Close() error { return f.inner.Close() }

// FaultError is an injected failure.
type FaultError struct {
	Op  Op
	Off int64 // -1 for sync
	Err error
}

func (e *FaultError) Error() string {
	return "device: injected " + e.Op.String() + " failure: " + e.Err.Error()
}

// Unwrap returns the injected error (EIO, ENOSPC, ...).
func (e *FaultError) Unwrap() error { return e.Err }

// IsInjected reports whether err is, or wraps, an injected fault.
func IsInjected(err error) bool {
	var fe *FaultError
	return errors.As(err, &fe)
}
