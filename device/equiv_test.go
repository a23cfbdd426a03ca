package device_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ringlog/ringlog/device"
	"pgregory.net/rapid"
)

// equivMachine drives a buffered File, a direct File (when the filesystem
// supports O_DIRECT) and a Mem with the same operations and requires them to
// agree on every result and on their whole contents after every step.
type equivMachine struct {
	size      int64
	dir       string
	id        int
	mem       *device.Mem
	buf       *device.File
	direct    *device.File // nil without O_DIRECT support
	useDirect bool
}

func (m *equivMachine) paths() (buffered, direct string) {
	return filepath.Join(m.dir, fmt.Sprintf("buffered-%d", m.id)), filepath.Join(m.dir, fmt.Sprintf("direct-%d", m.id))
}

func (m *equivMachine) open(t *rapid.T, size int64) {
	bp, dp := m.paths()
	var err error
	if m.buf, err = device.OpenFile(bp, device.FileOptions{Size: size}); err != nil {
		t.Fatalf("open buffered: %v", err)
	}
	if m.useDirect {
		if m.direct, err = device.OpenFile(dp, device.FileOptions{Size: size, Direct: true}); err != nil {
			t.Fatalf("open direct: %v", err)
		}
		if !m.direct.Direct() || m.direct.BlockSize() != device.DirectAlign {
			t.Fatalf("direct file: Direct()=%v BlockSize()=%d", m.direct.Direct(), m.direct.BlockSize())
		}
	}
	if m.buf.Direct() || m.buf.BlockSize() != device.SectorSize {
		t.Fatalf("buffered file: Direct()=%v BlockSize()=%d", m.buf.Direct(), m.buf.BlockSize())
	}
}

func (m *equivMachine) close(t *rapid.T) {
	if err := m.buf.Close(); err != nil {
		t.Fatalf("close buffered: %v", err)
	}
	if m.direct != nil {
		if err := m.direct.Close(); err != nil {
			t.Fatalf("close direct: %v", err)
		}
	}
}

func (m *equivMachine) devices() []device.Device {
	ds := []device.Device{m.mem, m.buf}
	if m.direct != nil {
		ds = append(ds, m.direct)
	}
	return ds
}

var devNames = []string{"mem", "buffered", "direct"}

// alignedRange draws a block-aligned [off, off+n) inside the device, at most
// four blocks long.
func (m *equivMachine) alignedRange(t *rapid.T) (off int64, n int) {
	blocks := int(m.size / device.DirectAlign)
	first := rapid.IntRange(0, blocks-1).Draw(t, "block")
	count := rapid.IntRange(1, min(4, blocks-first)).Draw(t, "blocks")
	return int64(first) * device.DirectAlign, count * device.DirectAlign
}

func (m *equivMachine) Write(t *rapid.T) {
	off, n := m.alignedRange(t)
	p := device.AlignedBuffer(n)
	fill(p, rapid.Uint64().Draw(t, "seed"))
	for i, d := range m.devices() {
		if got, err := d.WriteAt(p, off); err != nil || got != n {
			t.Fatalf("%s: WriteAt(%d bytes at %d) = %d, %v", devNames[i], n, off, got, err)
		}
	}
}

func (m *equivMachine) Read(t *rapid.T) {
	off, n := m.alignedRange(t)
	want := device.AlignedBuffer(n)
	if got, err := m.mem.ReadAt(want, off); err != nil || got != n {
		t.Fatalf("mem: ReadAt(%d bytes at %d) = %d, %v", n, off, got, err)
	}
	for i, d := range m.devices()[1:] {
		p := device.AlignedBuffer(n)
		if got, err := d.ReadAt(p, off); err != nil || got != n {
			t.Fatalf("%s: ReadAt(%d bytes at %d) = %d, %v", devNames[i+1], n, off, got, err)
		}
		if !bytes.Equal(p, want) {
			t.Fatalf("%s: ReadAt(%d bytes at %d) differs from mem: %s", devNames[i+1], n, off, firstDiff(p, want))
		}
	}
}

// ReadUnaligned reads at any offset and length: buffered and mem must agree,
// direct must refuse unless the request happens to be aligned.
func (m *equivMachine) ReadUnaligned(t *rapid.T) {
	off := rapid.Int64Range(0, m.size-1).Draw(t, "off")
	n := rapid.IntRange(0, int(min(m.size-off, 3*device.DirectAlign))).Draw(t, "n")
	want := make([]byte, n)
	if got, err := m.mem.ReadAt(want, off); err != nil || got != n {
		t.Fatalf("mem: ReadAt(%d bytes at %d) = %d, %v", n, off, got, err)
	}
	p := make([]byte, n)
	if got, err := m.buf.ReadAt(p, off); err != nil || got != n {
		t.Fatalf("buffered: ReadAt(%d bytes at %d) = %d, %v", n, off, got, err)
	}
	if !bytes.Equal(p, want) {
		t.Fatalf("buffered: ReadAt(%d bytes at %d) differs from mem: %s", n, off, firstDiff(p, want))
	}
	if m.direct != nil && (off%device.DirectAlign != 0 || n%device.DirectAlign != 0) {
		q := device.AlignedBuffer(n + device.DirectAlign)[:n]
		if got, err := m.direct.ReadAt(q, off); !errors.Is(err, device.ErrMisaligned) || got != 0 {
			t.Fatalf("direct: ReadAt(%d bytes at %d) = %d, %v; want ErrMisaligned", n, off, got, err)
		}
	}
}

// OutOfRange tries a request that ends past the device or starts before it.
func (m *equivMachine) OutOfRange(t *rapid.T) {
	var off int64
	n := device.DirectAlign * rapid.IntRange(1, 2).Draw(t, "blocks")
	if rapid.Bool().Draw(t, "negative") {
		off = -device.DirectAlign * rapid.Int64Range(1, 2).Draw(t, "before")
	} else {
		off = device.DirectAlign * rapid.Int64Range(m.size/device.DirectAlign-int64(n/device.DirectAlign)+1, m.size/device.DirectAlign+2).Draw(t, "block")
	}
	write := rapid.Bool().Draw(t, "write")
	p := device.AlignedBuffer(n)
	fill(p, uint64(off))
	for i, d := range m.devices() {
		var got int
		var err error
		if write {
			got, err = d.WriteAt(p, off)
		} else {
			got, err = d.ReadAt(p, off)
		}
		if !errors.Is(err, device.ErrOutOfRange) || got != 0 {
			t.Fatalf("%s: write=%v of %d bytes at %d on %d bytes = %d, %v; want ErrOutOfRange", devNames[i], write, n, off, m.size, got, err)
		}
	}
}

func (m *equivMachine) Sync(t *rapid.T) {
	for i, d := range m.devices() {
		if err := d.Sync(); err != nil {
			t.Fatalf("%s: Sync: %v", devNames[i], err)
		}
	}
}

// Reopen closes the files and opens them again with Size 0, which must keep
// both their size and their contents.
func (m *equivMachine) Reopen(t *rapid.T) {
	m.close(t)
	m.open(t, 0)
}

// Check compares the whole contents of every device after each step.
func (m *equivMachine) Check(t *rapid.T) {
	want := m.mem.Bytes()
	for i, d := range m.devices() {
		if d.Size() != m.size {
			t.Fatalf("%s: Size() = %d, want %d", devNames[i], d.Size(), m.size)
		}
		if i == 0 {
			continue
		}
		p := device.AlignedBuffer(int(m.size))
		if n, err := d.ReadAt(p, 0); err != nil || n != len(p) {
			t.Fatalf("%s: ReadAt(all) = %d, %v", devNames[i], n, err)
		}
		if !bytes.Equal(p, want) {
			t.Fatalf("%s differs from mem: %s", devNames[i], firstDiff(p, want))
		}
	}
}

func TestFileMatchesMem(t *testing.T) {
	dir := t.TempDir()
	useDirect := directSupported(t, dir)
	if !useDirect {
		t.Log("O_DIRECT is not supported on the temp filesystem (EINVAL): comparing buffered File with Mem only")
	}
	id := 0
	rapid.Check(t, func(rt *rapid.T) {
		id++
		size := device.DirectAlign * rapid.Int64Range(1, 16).Draw(rt, "size/4K")
		m := &equivMachine{size: size, dir: dir, id: id, mem: device.NewMem(size), useDirect: useDirect}
		m.open(rt, size)
		rt.Cleanup(func() {
			m.buf.Close()
			if m.direct != nil {
				m.direct.Close()
			}
			bp, dp := m.paths()
			os.Remove(bp)
			os.Remove(dp)
		})
		rt.Repeat(rapid.StateMachineActions(m))
	})
}
