package wal

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	"github.com/ringlog/ringlog/device"
)

// formatOpen formats a journal in [off, off+size) of dev and opens it; the
// journal is closed when the test ends (a second Close is harmless).
func formatOpen(t testing.TB, dev device.Device, off, size int64) *Journal {
	t.Helper()
	if err := Format(dev, off, size); err != nil {
		t.Fatalf("Format(%d, %d): %v", off, size, err)
	}
	return mustOpen(t, dev, off, size)
}

// mustOpen opens a journal and closes it when the test ends.
func mustOpen(t testing.TB, dev device.Device, off, size int64) *Journal {
	t.Helper()
	j, err := Open(dev, off, size, Options{})
	if err != nil {
		t.Fatalf("Open(%d, %d): %v", off, size, err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

// faultyJournal formats a journal at the start of a 64 KiB crash device and
// opens it with opts through a Faulty wrapper, which counts and fails the
// journal's operations; the journal is closed when the test ends.
func faultyJournal(t testing.TB, opts Options) (*device.Crash, *device.Faulty, *Journal) {
	t.Helper()
	crash := device.NewCrash(64 << 10)
	if err := Format(crash, 0, MinSize); err != nil {
		t.Fatal(err)
	}
	f := device.NewFaulty(crash)
	j, err := Open(f, 0, MinSize, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return crash, f, j
}

// commitOne commits one transaction of the given writes (offset, bytes
// pairs) and returns Commit's error.
func commitOne(j *Journal, ws ...write) error {
	tx := j.Begin()
	for _, w := range ws {
		tx.Write(w.off, w.data)
	}
	return j.Commit(context.Background(), tx)
}

// stamp returns 8 bytes that encode v.
func stamp(v uint64) []byte {
	return binary.LittleEndian.AppendUint64(nil, v)
}

// readAt reads n bytes at off of dev.
func readAt(t testing.TB, dev device.Device, off int64, n int) []byte {
	t.Helper()
	p := make([]byte, n)
	if _, err := dev.ReadAt(p, off); err != nil {
		t.Fatalf("ReadAt(%d, %d): %v", off, n, err)
	}
	return p
}

// wantAt fails the test unless dev holds want at off.
func wantAt(t testing.TB, dev device.Device, off int64, want []byte) {
	t.Helper()
	if got := readAt(t, dev, off, len(want)); !bytes.Equal(got, want) {
		t.Fatalf("device at %d = %x, want %x", off, got, want)
	}
}

// mustCommit commits and fails the test on error.
func mustCommit(t testing.TB, j *Journal, ws ...write) {
	t.Helper()
	if err := commitOne(j, ws...); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func w(off int64, data []byte) write { return write{off: off, data: data} }
