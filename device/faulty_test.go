package device_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/ringlog/ringlog/device"
)

// checkInjected checks that err is an injected fault of kind op carrying
// want.
func checkInjected(t *testing.T, err error, op device.Op, want error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%v succeeded; want injected %v", op, want)
	}
	if !errors.Is(err, want) {
		t.Fatalf("err = %v; want it to match %v", err, want)
	}
	if !device.IsInjected(err) {
		t.Fatalf("IsInjected(%v) = false", err)
	}
	var fe *device.FaultError
	if !errors.As(err, &fe) || fe.Op != op {
		t.Fatalf("err = %#v; want a *FaultError for %v", err, op)
	}
	if !strings.Contains(err.Error(), op.String()) {
		t.Errorf("Error() = %q does not name the operation %q", err.Error(), op)
	}
}

func TestFaultyNthFailure(t *testing.T) {
	for name, injected := range map[string]error{"EIO": device.EIO, "ENOSPC": device.ENOSPC} {
		for _, op := range []device.Op{device.OpRead, device.OpWrite, device.OpSync} {
			t.Run(fmt.Sprintf("%v/%s", op, name), func(t *testing.T) {
				const nth = 3
				mem := device.NewMem(4096)
				f := device.NewFaulty(mem, device.Fault{Op: op, N: nth, Err: injected})
				do := func(i int) ([]byte, error) {
					p := bytes.Repeat([]byte{byte(i)}, 16)
					off := int64(16 * i)
					switch op {
					case device.OpRead:
						got := bytes.Repeat([]byte{0xee}, 16)
						n, err := f.ReadAt(got, off)
						if err == nil && n != 16 {
							t.Fatalf("ReadAt = %d", n)
						}
						if err != nil && (n != 0 || !bytes.Equal(got, bytes.Repeat([]byte{0xee}, 16))) {
							t.Fatalf("failed ReadAt returned %d and changed the buffer", n)
						}
						return nil, err
					case device.OpWrite:
						n, err := f.WriteAt(p, off)
						if err == nil && n != 16 {
							t.Fatalf("WriteAt = %d", n)
						}
						if err != nil && n != 0 {
							t.Fatalf("failed WriteAt returned %d", n)
						}
						return p, err
					}
					return nil, f.Sync()
				}
				for i := 1; i <= 6; i++ {
					before := mem.Bytes()
					p, err := do(i)
					if i == nth {
						checkInjected(t, err, op, injected)
						if !errors.Is(err, injected.(syscall.Errno)) {
							t.Fatalf("err = %v does not match the errno", err)
						}
						mustEqual(t, "device after a failed op", mem.Bytes(), before)
						var fe *device.FaultError
						errors.As(err, &fe)
						if want := int64(16 * i); op != device.OpSync && fe.Off != want {
							t.Errorf("FaultError.Off = %d, want %d", fe.Off, want)
						}
						if op == device.OpSync && fe.Off != -1 {
							t.Errorf("FaultError.Off = %d for a sync, want -1", fe.Off)
						}
						continue
					}
					if err != nil {
						t.Fatalf("%v #%d: %v (only #%d should fail)", op, i, err, nth)
					}
					if p != nil {
						mustEqual(t, "written bytes", mem.Bytes()[16*i:16*i+16], p)
					}
				}
				if got := f.Count(op); got != 6 {
					t.Errorf("Count(%v) = %d, want 6", op, got)
				}
			})
		}
	}
}

func TestFaultySticky(t *testing.T) {
	mem := device.NewMem(4096)
	f := device.NewFaulty(mem, device.Fault{Op: device.OpWrite, N: 2, Err: device.ENOSPC, Sticky: true})
	mustWrite(t, f, []byte{1}, 0)
	for i := 2; i <= 5; i++ {
		_, err := f.WriteAt([]byte{byte(i)}, int64(i))
		checkInjected(t, err, device.OpWrite, syscall.ENOSPC)
	}
	// Other kinds are unaffected.
	mustSync(t, f)
	mustRead(t, f, 8, 0)
	want := make([]byte, 4096)
	want[0] = 1
	mustEqual(t, "device", mem.Bytes(), want)
	if f.Count(device.OpWrite) != 5 || f.Count(device.OpSync) != 1 || f.Count(device.OpRead) != 1 {
		t.Errorf("counts: write %d sync %d read %d", f.Count(device.OpWrite), f.Count(device.OpSync), f.Count(device.OpRead))
	}

	// A non-sticky fault fails its Nth operation only.
	g := device.NewFaulty(device.NewMem(512), device.Fault{Op: device.OpSync, N: 1})
	checkInjected(t, g.Sync(), device.OpSync, syscall.EIO) // nil Err means EIO
	for range 3 {
		mustSync(t, g)
	}
}

func TestFaultyInject(t *testing.T) {
	f := device.NewFaulty(device.NewMem(512))
	for range 3 {
		mustSync(t, f)
	}
	// Counts go on from 3: the 5th sync is the first to fail.
	f.Inject(device.Fault{Op: device.OpSync, N: 5, Err: device.EIO}, device.Fault{Op: device.OpRead, N: 1, Err: device.EIO})
	mustSync(t, f)
	checkInjected(t, f.Sync(), device.OpSync, syscall.EIO)
	mustSync(t, f)
	_, err := f.ReadAt(make([]byte, 1), 0)
	checkInjected(t, err, device.OpRead, syscall.EIO)
	if f.Count(device.OpSync) != 6 || f.Count(device.OpRead) != 1 {
		t.Errorf("counts: sync %d, read %d", f.Count(device.OpSync), f.Count(device.OpRead))
	}
}

func TestIsInjected(t *testing.T) {
	f := device.NewFaulty(device.NewMem(512), device.Fault{Op: device.OpWrite, N: 1, Err: device.ENOSPC})
	_, injected := f.WriteAt([]byte{1}, 0)
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain errno", syscall.EIO, false},
		{"path error", &os.PathError{Op: "fdatasync", Path: "x", Err: syscall.EIO}, false},
		{"out of range", device.ErrOutOfRange, false},
		{"injected", injected, true},
		{"wrapped", fmt.Errorf("append: %w", injected), true},
		{"joined", errors.Join(io.EOF, injected), true},
	} {
		if got := device.IsInjected(tc.err); got != tc.want {
			t.Errorf("IsInjected(%s: %v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
	if !errors.Is(injected, syscall.ENOSPC) || errors.Is(injected, syscall.EIO) {
		t.Errorf("injected ENOSPC: errors.Is ENOSPC %v, EIO %v", errors.Is(injected, syscall.ENOSPC), errors.Is(injected, syscall.EIO))
	}
	if device.EIO != syscall.EIO || device.ENOSPC != syscall.ENOSPC {
		t.Error("device.EIO / device.ENOSPC are not the syscall errnos")
	}
	for op, want := range map[device.Op]string{device.OpRead: "read", device.OpWrite: "write", device.OpSync: "sync", device.Op(9): "op?"} {
		if op.String() != want {
			t.Errorf("Op(%d).String() = %q, want %q", int(op), op.String(), want)
		}
	}
}

// A failed Sync drops every write since the last good Sync from the wrapped
// device, as Linux drops the dirty pages, and leaves earlier ones alone; the
// next Sync succeeds.
func TestFaultyFailedSyncDropsUnsyncedWrites(t *testing.T) {
	const size = 4096
	mem := device.NewMem(size)
	f := device.NewFaulty(mem, device.Fault{Op: device.OpSync, N: 2, Err: device.EIO})
	a := pattern(1000, 1)
	mustWrite(t, f, a, 0)
	mustWrite(t, f, a[:100], 2000)
	mustSync(t, f) // sync #1: good
	synced := mem.Bytes()

	// Since the good sync: a fresh region, an overwrite of synced data, and
	// two overlapping writes (undone newest first).
	mustWrite(t, f, pattern(500, 2), 3000)
	mustWrite(t, f, pattern(300, 3), 200)
	mustWrite(t, f, pattern(300, 4), 400)
	mustWrite(t, f, pattern(50, 5), 2050)
	if bytes.Equal(mem.Bytes(), synced) {
		t.Fatal("writes did not reach the wrapped device")
	}
	// A failed write in between changes nothing and is not undone either.
	f.Inject(device.Fault{Op: device.OpWrite, N: 8, Err: device.EIO})
	if _, err := f.WriteAt(pattern(10, 6), 0); err != nil {
		t.Fatalf("write #7: %v", err)
	}
	_, err := f.WriteAt(pattern(10, 7), 10)
	checkInjected(t, err, device.OpWrite, syscall.EIO)

	err = f.Sync() // sync #2: injected
	checkInjected(t, err, device.OpSync, syscall.EIO)
	var fe *device.FaultError
	if errors.As(err, &fe); fe.Off != -1 {
		t.Errorf("FaultError.Off = %d for a sync, want -1", fe.Off)
	}
	mustEqual(t, "wrapped device after a failed sync", mem.Bytes(), synced)
	mustEqual(t, "reads after a failed sync", readAll(t, f), synced)

	mustSync(t, f) // sync #3: succeeds
	mustEqual(t, "after the next sync", mem.Bytes(), synced)

	// Writes after that are kept by later good syncs, and a later failure
	// rolls back to them, not further.
	b := pattern(700, 8)
	mustWrite(t, f, b, 1500)
	mustSync(t, f) // #4
	want := bytes.Clone(synced)
	copy(want[1500:], b)
	mustEqual(t, "after a good sync", mem.Bytes(), want)
	f.Inject(device.Fault{Op: device.OpSync, N: 6, Err: device.ENOSPC})
	mustWrite(t, f, pattern(4096, 9), 0)
	mustSync(t, f) // #5: good
	kept := mem.Bytes()
	mustWrite(t, f, pattern(4096, 10), 0)
	checkInjected(t, f.Sync(), device.OpSync, syscall.ENOSPC) // #6
	mustEqual(t, "after a second failed sync", mem.Bytes(), kept)
	mustSync(t, f)
}

// A failed sync with nothing written since the last good one changes
// nothing.
func TestFaultyFailedSyncNothingPending(t *testing.T) {
	mem := device.NewMem(1024)
	f := device.NewFaulty(mem, device.Fault{Op: device.OpSync, N: 2, Err: device.EIO, Sticky: true})
	mustWrite(t, f, pattern(1024, 1), 0)
	mustSync(t, f)
	want := mem.Bytes()
	for range 3 {
		checkInjected(t, f.Sync(), device.OpSync, syscall.EIO)
		mustEqual(t, "device", mem.Bytes(), want)
	}
}

// Faulty passes everything else through to the wrapped device.
func TestFaultyPassThrough(t *testing.T) {
	mem := device.NewMem(2048)
	f := device.NewFaulty(mem)
	if f.Size() != 2048 || f.BlockSize() != mem.BlockSize() {
		t.Fatalf("Size() = %d, BlockSize() = %d", f.Size(), f.BlockSize())
	}
	if _, err := f.WriteAt(make([]byte, 10), 2040); !errors.Is(err, device.ErrOutOfRange) || device.IsInjected(err) {
		t.Fatalf("out-of-range write = %v; want the wrapped device's ErrOutOfRange", err)
	}
	if _, err := f.ReadAt(make([]byte, 10), -5); !errors.Is(err, device.ErrOutOfRange) {
		t.Fatalf("out-of-range read = %v; want ErrOutOfRange", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := mem.ReadAt(make([]byte, 1), 0); !errors.Is(err, device.ErrClosed) {
		t.Fatalf("Close did not close the wrapped device: %v", err)
	}
	if err := f.Sync(); !errors.Is(err, device.ErrClosed) || device.IsInjected(err) {
		t.Fatalf("Sync after Close = %v; want the wrapped device's ErrClosed", err)
	}
}

// A failed write with Land leaves its first whole blocks on the device and
// reports them written; a failed Sync undoes them with the rest.
func TestFaultyPartialWrite(t *testing.T) {
	for _, c := range []struct{ land, want int }{{0, 0}, {511, 0}, {512, 512}, {1300, 1024}, {4096, 1536}} {
		t.Run(fmt.Sprintf("land=%d", c.land), func(t *testing.T) {
			mem := device.NewMem(4096)
			before := mem.Bytes()
			f := device.NewFaulty(mem, device.Fault{Op: device.OpWrite, N: 1, Err: device.ENOSPC, Land: c.land})
			p := pattern(1536, 1)
			n, err := f.WriteAt(p, 1024)
			checkInjected(t, err, device.OpWrite, syscall.ENOSPC)
			if n != c.want {
				t.Fatalf("WriteAt reported %d bytes written, want %d", n, c.want)
			}
			want := bytes.Clone(before)
			copy(want[1024:], p[:c.want])
			mustEqual(t, "device after the failed write", mem.Bytes(), want)

			f.Inject(device.Fault{Op: device.OpSync, N: 1})
			checkInjected(t, f.Sync(), device.OpSync, syscall.EIO)
			mustEqual(t, "device after a failed sync", mem.Bytes(), before)
		})
	}
}
