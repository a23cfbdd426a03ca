package device

import (
	"sync"
)

// Mem is an in-memory Device. Sync does nothing: every write is durable as
// soon as WriteAt returns. It is safe for concurrent use.
type Mem struct {
	mu        sync.RWMutex
	buf       []byte
	blockSize int
	closed    bool
}

// NewMem returns a zero-filled in-memory device of size bytes with a block
// size of SectorSize.
func NewMem(size int64) *Mem {
	return &Mem{buf: make([]byte, size), blockSize: SectorSize}
}

// ReadAt implements io.ReaderAt.
func (m *Mem) ReadAt(p []byte, off int64) (int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return 0, ErrClosed
	}
	if err := checkRange("read", off, len(p), int64(len(m.buf))); err != nil {
		return 0, err
	}
	return copy(p, m.buf[off:]), nil
}

// WriteAt implements io.WriterAt.
func (m *Mem) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	if err := checkRange("write", off, len(p), int64(len(m.buf))); err != nil {
		return 0, err
	}
	return copy(m.buf[off:], p), nil
}

// Sync implements Device; memory is always durable.
func (m *Mem) Sync() error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return ErrClosed
	}
	return nil
}

// Size implements Device.
func (m *Mem) Size() int64 { return int64(len(m.buf)) }

// BlockSize implements Device.
func (m *Mem) BlockSize() int { return m.blockSize }

// Close implements Device. Reads and writes after Close fail with ErrClosed.
func (m *Mem) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

// Bytes returns a copy of the device's contents.
func (m *Mem) Bytes() []byte {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return append([]byte(nil), m.buf...)
}
