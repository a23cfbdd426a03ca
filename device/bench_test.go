package device_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/ringlog/ringlog/device"
)

// benchFile opens a device file of size bytes in b.TempDir() and writes it
// full and syncs it, so that the benchmark overwrites allocated blocks, as a
// log does. It fails the benchmark when the file cannot be opened (including
// a filesystem without O_DIRECT for a direct file).
func benchFile(b *testing.B, size int64, direct bool) *device.File {
	b.Helper()
	path := filepath.Join(b.TempDir(), "dev")
	f, err := device.OpenFile(path, device.FileOptions{Size: size, Direct: direct})
	if err != nil {
		if direct && errors.Is(err, syscall.EINVAL) {
			b.Fatalf("%v: the filesystem of %s does not support O_DIRECT; point TMPDIR at one that does", err, path)
		}
		b.Fatalf("OpenFile(direct=%v): %v", direct, err)
	}
	b.Cleanup(func() { f.Close() })
	chunk := device.AlignedBuffer(1 << 20)
	fill(chunk, 1)
	for off := int64(0); off < size; off += int64(len(chunk)) {
		p := chunk[:min(int64(len(chunk)), size-off)]
		if _, err := f.WriteAt(p, off); err != nil {
			b.Fatalf("pre-writing: %v", err)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatalf("pre-writing: %v", err)
	}
	return f
}

// BenchmarkWriteSync4K is the latency of one durable 4 KiB append: a
// buffered write and an fdatasync per op, cycling through a 16 MiB file.
func BenchmarkWriteSync4K(b *testing.B) {
	const size, rec = 16 << 20, 4 << 10
	f := benchFile(b, size, false)
	p := make([]byte, rec)
	fill(p, 2)
	var lat []time.Duration
	var off int64
	b.SetBytes(rec)
	for b.Loop() {
		start := time.Now()
		if _, err := f.WriteAt(p, off); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		off = (off + rec) % size
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
}

// BenchmarkDirectSeqWrite1M is O_DIRECT sequential throughput: 1 MiB writes
// cycling through a 64 MiB file, with one fdatasync at the end.
func BenchmarkDirectSeqWrite1M(b *testing.B) {
	const size, chunk = 64 << 20, 1 << 20
	f := benchFile(b, size, true)
	p := device.AlignedBuffer(chunk)
	fill(p, 3)
	var off int64
	b.SetBytes(chunk)
	for b.Loop() {
		if _, err := f.WriteAt(p, off); err != nil {
			b.Fatal(err)
		}
		off = (off + chunk) % size
	}
	// Loop has stopped the timer: this sync is not measured, and with
	// O_DIRECT on overwritten blocks there is little left for it to do.
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkBatchSync is group commit: one pwrite of N 4 KiB records and one
// fdatasync per op, so records/s shows what batching buys.
func BenchmarkBatchSync(b *testing.B) {
	const size, rec = 16 << 20, 4 << 10
	for _, mode := range []struct {
		name   string
		direct bool
	}{{"buffered", false}, {"direct", true}} {
		b.Run(mode.name, func(b *testing.B) {
			f := benchFile(b, size, mode.direct)
			for _, n := range []int{1, 16, 64} {
				b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
					batch := n * rec
					p := device.AlignedBuffer(batch)
					fill(p, uint64(n))
					var off int64
					b.SetBytes(int64(batch))
					for b.Loop() {
						if _, err := f.WriteAt(p, off); err != nil {
							b.Fatal(err)
						}
						if err := f.Sync(); err != nil {
							b.Fatal(err)
						}
						off = (off + int64(batch)) % size
					}
					b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
				})
			}
		})
	}
}
