package wal

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringlog/ringlog/device"
)

const (
	benchJournal = 4 << 20 // journal region at offset 0
	benchHome    = benchJournal
	benchDevSize = benchJournal + 1<<20
)

// benchFile returns a buffered file device in b.TempDir(), written once to
// its full size and synced, so that the benchmark only ever overwrites (the
// cheap case for fdatasync).
func benchFile(b *testing.B, size int64) *device.File {
	b.Helper()
	dev, err := device.OpenFile(filepath.Join(b.TempDir(), "dev"), device.FileOptions{Size: size})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { dev.Close() })
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := dev.WriteAt(buf[:min(int64(len(buf)), size-off)], off); err != nil {
			b.Fatal(err)
		}
	}
	if err := dev.Sync(); err != nil {
		b.Fatal(err)
	}
	return dev
}

// BenchmarkCommit: each of N committer goroutines loops Begin, one 16-byte
// Write to its own slot, Commit. b.N is the total number of commits.
func BenchmarkCommit(b *testing.B) {
	for _, n := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("committers=%d", n), func(b *testing.B) {
			benchCommit(b, n, Options{})
		})
	}
}

// BenchmarkCommitDeferApply is BenchmarkCommit with Options.DeferApply: home
// writes wait for the next checkpoint.
func BenchmarkCommitDeferApply(b *testing.B) {
	for _, n := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("committers=%d", n), func(b *testing.B) {
			benchCommit(b, n, Options{DeferApply: true})
		})
	}
}

func benchCommit(b *testing.B, committers int, opts Options) {
	dev := benchFile(b, benchDevSize)
	if err := Format(dev, 0, benchJournal); err != nil {
		b.Fatal(err)
	}
	j, err := Open(dev, 0, benchJournal, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	before := j.Stats()
	b.ResetTimer()
	start := time.Now()
	for c := range committers {
		wg.Go(func() {
			var data [16]byte
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				copy(data[:], stamp(uint64(i)))
				tx := j.Begin()
				tx.Write(benchHome+int64(c)*16, data[:])
				if err := j.Commit(ctx, tx); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	after := j.Stats()
	if got := after.Commits - before.Commits; got != uint64(b.N) {
		b.Fatalf("Stats().Commits grew by %d, want %d", got, b.N)
	}
	b.ReportMetric(float64(after.Syncs-before.Syncs)/float64(b.N), "syncs/tx")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tx/s")
}

// BenchmarkRawBatchSync is the device's own group commit for comparison:
// one pwrite of N 4 KiB records and one fdatasync per op.
func BenchmarkRawBatchSync(b *testing.B) {
	for _, n := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			const ring = 4 << 20
			dev := benchFile(b, ring)
			buf := device.AlignedBuffer(n * 4096)
			for i := range buf {
				buf[i] = byte(i)
			}
			var off int64
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				if off+int64(len(buf)) > ring {
					off = 0
				}
				if _, err := dev.WriteAt(buf, off); err != nil {
					b.Fatal(err)
				}
				if err := dev.Sync(); err != nil {
					b.Fatal(err)
				}
				off += int64(len(buf))
			}
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "records/s")
		})
	}
}
