package device_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ringlog/ringlog/device"
)

// directFile opens an O_DIRECT device file of size bytes in a temp dir. When
// the temp filesystem refuses O_DIRECT (EINVAL) it says so with t.Log and
// returns ok false: the caller then checks what it can without one.
func directFile(t *testing.T, size int64) (f *device.File, path string, ok bool) {
	t.Helper()
	dir := t.TempDir()
	if !directSupported(t, dir) {
		t.Log("O_DIRECT is not supported on the temp filesystem (EINVAL): direct-mode I/O not exercised")
		return nil, "", false
	}
	path = filepath.Join(dir, "dev")
	return openFile(t, path, device.FileOptions{Size: size, Direct: true}), path, true
}

func TestFileDirectMisaligned(t *testing.T) {
	const size = 16 * device.DirectAlign
	f, _, ok := directFile(t, size)
	if !ok {
		return
	}
	aligned := device.AlignedBuffer(2 * device.DirectAlign)
	shifted := aligned[1 : 1+device.DirectAlign]
	cases := []struct {
		name  string
		p     []byte
		off   int64
		what  string
		value func() int64
	}{
		{"offset", aligned[:device.DirectAlign], 512, "offset", func() int64 { return 512 }},
		{"offset-odd", aligned[:device.DirectAlign], device.DirectAlign + 1, "offset", func() int64 { return device.DirectAlign + 1 }},
		{"length", aligned[:512], 0, "length", func() int64 { return 512 }},
		{"length-long", aligned[:device.DirectAlign+1], device.DirectAlign, "length", func() int64 { return device.DirectAlign + 1 }},
		{"buffer", shifted, 0, "buffer", nil},
	}
	for _, tc := range cases {
		for _, op := range []string{"read", "write"} {
			t.Run(tc.name+"/"+op, func(t *testing.T) {
				before := readAll(t, f)
				var n int
				var err error
				if op == "read" {
					n, err = f.ReadAt(tc.p, tc.off)
				} else {
					n, err = f.WriteAt(tc.p, tc.off)
				}
				if n != 0 {
					t.Errorf("n = %d, want 0", n)
				}
				if !errors.Is(err, device.ErrMisaligned) {
					t.Fatalf("err = %v, want ErrMisaligned", err)
				}
				if errors.Is(err, device.ErrOutOfRange) {
					t.Errorf("err = %v also matches ErrOutOfRange", err)
				}
				var me *device.MisalignedError
				if !errors.As(err, &me) {
					t.Fatalf("err = %T %v, not a *MisalignedError", err, err)
				}
				if me.What != tc.what || me.Op != op || me.Align != device.DirectAlign {
					t.Errorf("MisalignedError = %+v, want Op %q What %q Align %d", *me, op, tc.what, device.DirectAlign)
				}
				if tc.value != nil && me.Value != tc.value() {
					t.Errorf("Value = %d, want %d", me.Value, tc.value())
				}
				if tc.what == "buffer" && me.Value%device.DirectAlign != 1 {
					t.Errorf("buffer Value %#x is not the shifted buffer's address", me.Value)
				}
				if me.Error() == "" {
					t.Error("empty Error()")
				}
				mustEqual(t, "contents after refused "+op, readAll(t, f), before)
			})
		}
	}
	// An empty request is aligned by definition.
	if n, err := f.WriteAt(nil, 0); err != nil || n != 0 {
		t.Errorf("WriteAt(nil, 0) = %d, %v", n, err)
	}
	if n, err := f.ReadAt([]byte{}, device.DirectAlign); err != nil || n != 0 {
		t.Errorf("ReadAt(empty, 4096) = %d, %v", n, err)
	}
}

func TestFileDirectRoundTrip(t *testing.T) {
	const size = 8 * device.DirectAlign
	f, _, ok := directFile(t, size)
	if !ok {
		return
	}
	p := device.AlignedBuffer(3 * device.DirectAlign)
	fill(p, 7)
	mustWrite(t, f, p, 2*device.DirectAlign)
	mustSync(t, f)
	mustEqual(t, "read back", mustRead(t, f, len(p), 2*device.DirectAlign), p)
	want := make([]byte, size)
	copy(want[2*device.DirectAlign:], p)
	mustEqual(t, "whole device", readAll(t, f), want)
}

func TestFileOpenDirectMisalignedSize(t *testing.T) {
	dir := t.TempDir()
	if !directSupported(t, dir) {
		t.Log("O_DIRECT is not supported on the temp filesystem (EINVAL)")
		return
	}
	_, err := device.OpenFile(filepath.Join(dir, "dev"), device.FileOptions{Size: device.DirectAlign + 512, Direct: true})
	var me *device.MisalignedError
	if !errors.As(err, &me) || me.What != "size" || me.Value != device.DirectAlign+512 {
		t.Fatalf("OpenFile(direct, size 4608) = %v; want a *MisalignedError for the size", err)
	}
	if !errors.Is(err, device.ErrMisaligned) {
		t.Fatalf("err = %v does not match ErrMisaligned", err)
	}
}

func TestFileBufferedAllowsMisaligned(t *testing.T) {
	f := openFile(t, filepath.Join(t.TempDir(), "dev"), device.FileOptions{Size: 8192})
	if f.Direct() || f.BlockSize() != device.SectorSize {
		t.Fatalf("Direct() = %v, BlockSize() = %d", f.Direct(), f.BlockSize())
	}
	p := []byte("hello, world")
	mustWrite(t, f, p[1:4], 4095)
	got := make([]byte, 5)
	if n, err := f.ReadAt(got, 4094); err != nil || n != 5 {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
	if want := []byte{0, 'e', 'l', 'l', 0}; !bytes.Equal(got, want) {
		t.Fatalf("read %q, want %q", got, want)
	}
}

func TestFileOutOfRange(t *testing.T) {
	const size = 4 * device.DirectAlign
	type opened struct {
		name, path string
		f          *device.File
	}
	bp := filepath.Join(t.TempDir(), "dev")
	files := []opened{{"buffered", bp, openFile(t, bp, device.FileOptions{Size: size})}}
	if f, dp, ok := directFile(t, size); ok {
		files = append(files, opened{"direct", dp, f})
	}
	cases := []struct {
		name string
		off  int64
		n    int
	}{
		{"negative", -device.DirectAlign, device.DirectAlign},
		{"at-end", size, device.DirectAlign},
		{"past-end", size + device.DirectAlign, device.DirectAlign},
		{"straddles-end", size - device.DirectAlign, 2 * device.DirectAlign},
		{"too-long", 0, size + device.DirectAlign},
	}
	for _, of := range files {
		for _, tc := range cases {
			t.Run(of.name+"/"+tc.name, func(t *testing.T) {
				p := device.AlignedBuffer(tc.n)
				if n, err := of.f.WriteAt(p, tc.off); !errors.Is(err, device.ErrOutOfRange) || n != 0 {
					t.Errorf("WriteAt(%d bytes at %d) = %d, %v; want ErrOutOfRange", tc.n, tc.off, n, err)
				}
				if n, err := of.f.ReadAt(p, tc.off); !errors.Is(err, device.ErrOutOfRange) || n != 0 {
					t.Errorf("ReadAt(%d bytes at %d) = %d, %v; want ErrOutOfRange", tc.n, tc.off, n, err)
				}
			})
		}
		// Nothing was written past the end: the file kept its size.
		st, err := os.Stat(of.path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != size {
			t.Errorf("%s: file grew to %d bytes", of.name, st.Size())
		}
		// The last block and an empty request at the end are in range.
		p := device.AlignedBuffer(device.DirectAlign)
		mustWrite(t, of.f, p, size-device.DirectAlign)
		if n, err := of.f.ReadAt(p[:0], size); err != nil || n != 0 {
			t.Errorf("%s: ReadAt(0 bytes at end) = %d, %v", of.name, n, err)
		}
	}
}

func TestFileCreateExtendReopen(t *testing.T) {
	for _, direct := range []bool{false, true} {
		name := "buffered"
		if direct {
			name = "direct"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if direct && !directSupported(t, dir) {
				t.Log("O_DIRECT is not supported on the temp filesystem (EINVAL)")
				return
			}
			path := filepath.Join(dir, "dev")
			const size = 16 * device.DirectAlign

			// Created and extended to Size, reading as zeros.
			f, err := device.OpenFile(path, device.FileOptions{Size: size, Direct: direct})
			if err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Size() != size || f.Size() != size {
				t.Fatalf("file is %d bytes, Size() = %d; want %d", st.Size(), f.Size(), size)
			}
			if f.Direct() != direct {
				t.Fatalf("Direct() = %v", f.Direct())
			}
			mustEqual(t, "fresh device", readAll(t, f), make([]byte, size))
			data := device.AlignedBuffer(2 * device.DirectAlign)
			fill(data, 42)
			mustWrite(t, f, data, size-2*device.DirectAlign)
			mustSync(t, f)
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}

			// Size 0 keeps the size and the data.
			f, err = device.OpenFile(path, device.FileOptions{Direct: direct})
			if err != nil {
				t.Fatal(err)
			}
			if f.Size() != size {
				t.Fatalf("reopened with Size 0: Size() = %d, want %d", f.Size(), size)
			}
			mustEqual(t, "reopened data", mustRead(t, f, len(data), size-2*device.DirectAlign), data)
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}

			// A larger Size extends the file and keeps the data.
			f, err = device.OpenFile(path, device.FileOptions{Size: 2 * size, Direct: direct})
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if st, err = os.Stat(path); err != nil {
				t.Fatal(err)
			}
			if f.Size() != 2*size || st.Size() != 2*size {
				t.Fatalf("extended: Size() = %d, file %d bytes; want %d", f.Size(), st.Size(), 2*size)
			}
			want := make([]byte, 2*size)
			copy(want[size-2*device.DirectAlign:], data)
			mustEqual(t, "extended device", readAll(t, f), want)
		})
	}
}

// A file shorter than the device (truncated behind the device's back) reads
// as zeros past its end, like a fresh device.
func TestFileShortFileReadsZeros(t *testing.T) {
	for _, direct := range []bool{false, true} {
		name := "buffered"
		if direct {
			name = "direct"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if direct && !directSupported(t, dir) {
				t.Log("O_DIRECT is not supported on the temp filesystem (EINVAL)")
				return
			}
			path := filepath.Join(dir, "dev")
			const size = 8 * device.DirectAlign
			f := openFile(t, path, device.FileOptions{Size: size, Direct: direct})
			data := device.AlignedBuffer(size)
			fill(data, 3)
			mustWrite(t, f, data, 0)
			mustSync(t, f)
			if err := os.Truncate(path, device.DirectAlign); err != nil {
				t.Fatal(err)
			}
			want := make([]byte, size)
			copy(want, data[:device.DirectAlign])
			got := device.AlignedBuffer(size)
			fill(got, 99) // stale bytes that must be cleared
			if n, err := f.ReadAt(got, 0); err != nil || n != size {
				t.Fatalf("ReadAt(all) = %d, %v", n, err)
			}
			mustEqual(t, "read across the short file's end", got, want)
			got = device.AlignedBuffer(2 * device.DirectAlign)
			fill(got, 98)
			if n, err := f.ReadAt(got, 4*device.DirectAlign); err != nil || n != len(got) {
				t.Fatalf("ReadAt(past end) = %d, %v", n, err)
			}
			mustEqual(t, "read past the short file's end", got, make([]byte, len(got)))
		})
	}
}

func TestFileOpenErrors(t *testing.T) {
	dir := t.TempDir()
	// A directory is neither a regular file nor a block device.
	if f, err := device.OpenFile(dir, device.FileOptions{Size: 4096}); err == nil {
		f.Close()
		t.Fatal("OpenFile(directory) succeeded")
	}
	// A path in a missing directory cannot be created.
	if f, err := device.OpenFile(filepath.Join(dir, "missing", "dev"), device.FileOptions{Size: 4096}); err == nil {
		f.Close()
		t.Fatal("OpenFile(missing dir) succeeded")
	} else if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OpenFile(missing dir) = %v; want it to wrap ErrNotExist", err)
	}
	// A negative size is an error, not "keep the current size", and
	// creates nothing.
	path := filepath.Join(dir, "neg")
	if f, err := device.OpenFile(path, device.FileOptions{Size: -4096}); !errors.Is(err, device.ErrOutOfRange) {
		if err == nil {
			f.Close()
		}
		t.Fatalf("OpenFile(Size -4096) = %v; want ErrOutOfRange", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OpenFile(Size -4096) left %s behind: %v", path, err)
	}
	// Without a size a missing path is an error, as a mistyped block
	// device path must be, and nothing is created.
	for _, direct := range []bool{false, true} {
		if f, err := device.OpenFile(path, device.FileOptions{Direct: direct}); !errors.Is(err, os.ErrNotExist) {
			if err == nil {
				f.Close()
			}
			t.Fatalf("OpenFile(missing, no size, direct=%v) = %v; want ErrNotExist", direct, err)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("OpenFile(missing, no size) created %s: %v", path, err)
		}
	}
}

func TestFileUseAfterClose(t *testing.T) {
	for _, direct := range []bool{false, true} {
		name := "buffered"
		if direct {
			name = "direct"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if direct && !directSupported(t, dir) {
				t.Log("O_DIRECT is not supported on the temp filesystem (EINVAL)")
				return
			}
			f, err := device.OpenFile(filepath.Join(dir, "dev"), device.FileOptions{Size: 4 * device.DirectAlign, Direct: direct})
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			p := device.AlignedBuffer(device.DirectAlign)
			if n, err := f.ReadAt(p, 0); !errors.Is(err, device.ErrClosed) || n != 0 {
				t.Errorf("ReadAt after Close = %d, %v; want ErrClosed", n, err)
			}
			if n, err := f.WriteAt(p, 0); !errors.Is(err, device.ErrClosed) || n != 0 {
				t.Errorf("WriteAt after Close = %d, %v; want ErrClosed", n, err)
			}
			if err := f.Sync(); !errors.Is(err, device.ErrClosed) {
				t.Errorf("Sync after Close = %v; want ErrClosed", err)
			}
			if err := f.Close(); !errors.Is(err, device.ErrClosed) {
				t.Errorf("second Close = %v; want ErrClosed", err)
			}
			// ErrClosed wins over range and alignment checks.
			if _, err := f.WriteAt(p[:1], -1); !errors.Is(err, device.ErrClosed) {
				t.Errorf("bad WriteAt after Close = %v; want ErrClosed", err)
			}
		})
	}
}

// Concurrent writers to disjoint blocks, each followed by its own read-back,
// all land; run with -race this also checks File's own synchronisation.
func TestFileConcurrent(t *testing.T) {
	const workers, rounds = 4, 16
	const size = workers * rounds * device.DirectAlign
	files := []device.Device{openFile(t, filepath.Join(t.TempDir(), "dev"), device.FileOptions{Size: size})}
	if f, _, ok := directFile(t, size); ok {
		files = append(files, f)
	}
	for _, f := range files {
		var wg sync.WaitGroup
		errs := make(chan error, workers*rounds)
		for w := range workers {
			wg.Go(func() {
				for r := range rounds {
					off := int64((r*workers + w) * device.DirectAlign)
					p := device.AlignedBuffer(device.DirectAlign)
					fill(p, uint64(off))
					if _, err := f.WriteAt(p, off); err != nil {
						errs <- err
						return
					}
					q := device.AlignedBuffer(device.DirectAlign)
					if _, err := f.ReadAt(q, off); err != nil {
						errs <- err
						return
					}
					if !bytes.Equal(p, q) {
						errs <- fmt.Errorf("worker %d: read-back mismatch at %d", w, off)
						return
					}
					if r%4 == 0 {
						if err := f.Sync(); err != nil {
							errs <- err
							return
						}
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		want := make([]byte, size)
		for off := 0; off < size; off += device.DirectAlign {
			fill(want[off:off+device.DirectAlign], uint64(off))
		}
		mustEqual(t, "after concurrent writes", readAll(t, f), want)
	}
}
