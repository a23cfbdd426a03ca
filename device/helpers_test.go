package device_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/ringlog/ringlog/device"
)

// fill overwrites p with bytes drawn from a PRNG seeded with seed.
func fill(p []byte, seed uint64) {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var w [8]byte
	for i := 0; i < len(p); i += 8 {
		binary.LittleEndian.PutUint64(w[:], r.Uint64())
		copy(p[i:], w[:])
	}
}

// pattern returns n bytes drawn from a PRNG seeded with seed.
func pattern(n int, seed uint64) []byte {
	p := make([]byte, n)
	fill(p, seed)
	return p
}

// invert returns the bitwise complement of p: a buffer that differs from p in
// every byte.
func invert(p []byte) []byte {
	q := make([]byte, len(p))
	for i, b := range p {
		q[i] = ^b
	}
	return q
}

// readAll reads the whole device into a buffer aligned for O_DIRECT.
func readAll(t testing.TB, d device.Device) []byte {
	t.Helper()
	p := device.AlignedBuffer(int(d.Size()))
	n, err := d.ReadAt(p, 0)
	if err != nil || n != len(p) {
		t.Fatalf("ReadAt(all %d bytes) = %d, %v", len(p), n, err)
	}
	return p
}

// firstDiff describes the first byte where a and b differ, for messages.
func firstDiff(a, b []byte) string {
	if len(a) != len(b) {
		return fmt.Sprintf("lengths differ: %d vs %d", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			return fmt.Sprintf("first difference at byte %d: %#02x vs %#02x", i, a[i], b[i])
		}
	}
	return "equal"
}

func mustEqual(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %s", what, firstDiff(got, want))
	}
}

// directSupported reports whether dir's filesystem accepts O_DIRECT; a
// filesystem that does not (tmpfs before Linux 6.6, for one) fails the open
// with EINVAL.
func directSupported(t testing.TB, dir string) bool {
	t.Helper()
	f, err := device.OpenFile(filepath.Join(dir, "direct-probe"), device.FileOptions{Size: device.DirectAlign, Direct: true})
	if errors.Is(err, syscall.EINVAL) {
		return false
	}
	if err != nil {
		t.Fatalf("probing O_DIRECT: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("closing O_DIRECT probe: %v", err)
	}
	return true
}

// openFile opens a device file or fails the test; the file is closed at the
// end of the test unless the test closed it already.
func openFile(t testing.TB, path string, opts device.FileOptions) *device.File {
	t.Helper()
	f, err := device.OpenFile(path, opts)
	if err != nil {
		t.Fatalf("OpenFile(%s, %+v): %v", path, opts, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// mustWrite writes p at off or fails the test.
func mustWrite(t testing.TB, d device.Device, p []byte, off int64) {
	t.Helper()
	n, err := d.WriteAt(p, off)
	if err != nil || n != len(p) {
		t.Fatalf("WriteAt(%d bytes at %d) = %d, %v", len(p), off, n, err)
	}
}

// mustRead reads n bytes at off or fails the test.
func mustRead(t testing.TB, d device.Device, n int, off int64) []byte {
	t.Helper()
	p := device.AlignedBuffer(n)
	m, err := d.ReadAt(p, off)
	if err != nil || m != n {
		t.Fatalf("ReadAt(%d bytes at %d) = %d, %v", n, off, m, err)
	}
	return p
}

func mustSync(t testing.TB, d device.Device) {
	t.Helper()
	if err := d.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}
