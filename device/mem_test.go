package device_test

import (
	"bytes"
	"errors"
	"sync"
	"testing"

	"github.com/ringlog/ringlog/device"
)

// The Device interface is met by every implementation.
var (
	_ device.Device = (*device.File)(nil)
	_ device.Device = (*device.Mem)(nil)
	_ device.Device = (*device.Crash)(nil)
	_ device.Device = (*device.Faulty)(nil)
)

func TestMem(t *testing.T) {
	m := device.NewMem(1024)
	if m.Size() != 1024 || m.BlockSize() != device.SectorSize {
		t.Fatalf("Size() = %d, BlockSize() = %d", m.Size(), m.BlockSize())
	}
	mustEqual(t, "fresh", m.Bytes(), make([]byte, 1024))
	mustWrite(t, m, []byte("abc"), 1021)
	mustEqual(t, "read", mustRead(t, m, 4, 1020), []byte("\x00abc"))
	// Bytes is a copy.
	b := m.Bytes()
	b[1021] = 'x'
	if got := m.Bytes()[1021]; got != 'a' {
		t.Fatalf("Bytes() aliases the device: byte is %q", got)
	}
	for _, tc := range []struct {
		off int64
		n   int
	}{{-1, 1}, {1024, 1}, {1023, 2}, {0, 1025}, {2000, 0}} {
		if n, err := m.WriteAt(make([]byte, tc.n), tc.off); !errors.Is(err, device.ErrOutOfRange) || n != 0 {
			t.Errorf("WriteAt(%d bytes at %d) = %d, %v; want ErrOutOfRange", tc.n, tc.off, n, err)
		}
		if n, err := m.ReadAt(make([]byte, tc.n), tc.off); !errors.Is(err, device.ErrOutOfRange) || n != 0 {
			t.Errorf("ReadAt(%d bytes at %d) = %d, %v; want ErrOutOfRange", tc.n, tc.off, n, err)
		}
	}
	if n, err := m.ReadAt(nil, 1024); err != nil || n != 0 {
		t.Errorf("empty ReadAt at the end = %d, %v", n, err)
	}
	mustSync(t, m)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ReadAt(make([]byte, 1), 0); !errors.Is(err, device.ErrClosed) {
		t.Errorf("ReadAt after Close = %v", err)
	}
	if _, err := m.WriteAt(make([]byte, 1), 0); !errors.Is(err, device.ErrClosed) {
		t.Errorf("WriteAt after Close = %v", err)
	}
	if err := m.Sync(); !errors.Is(err, device.ErrClosed) {
		t.Errorf("Sync after Close = %v", err)
	}
}

func TestMemConcurrent(t *testing.T) {
	const workers = 4
	m := device.NewMem(workers * 256)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			p := bytes.Repeat([]byte{byte(w + 1)}, 256)
			for range 100 {
				if _, err := m.WriteAt(p, int64(w*256)); err != nil {
					t.Error(err)
				}
				q := make([]byte, 256)
				if _, err := m.ReadAt(q, int64(w*256)); err != nil || !bytes.Equal(p, q) {
					t.Errorf("worker %d: read back %v, %v", w, q[:4], err)
				}
				m.Sync()
				m.Bytes()
			}
		})
	}
	wg.Wait()
}
