package pipeline_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/pipeline"
)

// Benchmarks of durable Append next to the raw limits of the same file.
// Absolute numbers on shared machines move by ±35% between runs; ratios
// within a run are what count, and BenchmarkTargets computes them with the
// two sides interleaved.

const benchRegion = 64 << 20

// benchFile returns a device on a fresh file, pre-written to full size so
// that every benchmark overwrites, as a formatted log does.
func benchFile(b *testing.B, direct bool) *device.File {
	dev, _ := benchFileAt(b, direct)
	return dev
}

// benchPath is benchFile, buffered, with the file's path: a second device
// can open the same file.
func benchPath(b *testing.B) (*device.File, string) { return benchFileAt(b, false) }

func benchFileAt(b *testing.B, direct bool) (*device.File, string) {
	b.Helper()
	path := b.TempDir() + "/bench.dev"
	dev, err := device.OpenFile(path, device.FileOptions{Size: benchRegion, Direct: direct})
	if err != nil {
		b.Fatalf("open (direct=%v): %v; point TMPDIR at a file system with O_DIRECT", direct, err)
	}
	b.Cleanup(func() { dev.Close() })
	buf := device.AlignedBuffer(1 << 20)
	for off := int64(0); off < benchRegion; off += int64(len(buf)) {
		if _, err := dev.WriteAt(buf, off); err != nil {
			b.Fatal(err)
		}
	}
	if err := dev.Sync(); err != nil {
		b.Fatal(err)
	}
	return dev, path
}

func mode(direct bool) string {
	if direct {
		return "direct"
	}
	return "buffered"
}

// BenchmarkRaw is the device's own limit for each workload: N records of
// size bytes in one pwrite, then one fdatasync.
func BenchmarkRaw(b *testing.B) {
	for _, direct := range []bool{false, true} {
		for _, size := range []int{4096, 65536} {
			for _, n := range []int{1, 16, 64} {
				b.Run(fmt.Sprintf("%s/size=%d/batch=%d", mode(direct), size, n), func(b *testing.B) {
					dev := benchFile(b, direct)
					buf := device.AlignedBuffer(n * size)
					span := int64(len(buf))
					var lat []time.Duration
					off := int64(0)
					b.SetBytes(span)
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						t0 := time.Now()
						if off+span > benchRegion {
							off = 0
						}
						if _, err := dev.WriteAt(buf, off); err != nil {
							b.Fatal(err)
						}
						if err := dev.Sync(); err != nil {
							b.Fatal(err)
						}
						off += span
						lat = append(lat, time.Since(t0))
					}
					b.StopTimer()
					b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
					reportLatency(b, lat)
				})
			}
		}
	}
}

// BenchmarkAppend measures durable Append: each call returns only once its
// record is fdatasynced. The checker calls everything garbage, so the log
// recycles its region forever.
func BenchmarkAppend(b *testing.B) {
	for _, direct := range []bool{false, true} {
		for _, size := range []int{128, 4096, 65536} {
			for _, writers := range []int{1, 16, 64} {
				b.Run(fmt.Sprintf("%s/size=%d/writers=%d", mode(direct), size, writers), func(b *testing.B) {
					benchAppend(b, direct, size, writers)
				})
			}
		}
	}
}

// BenchmarkAppendSyncsInFlight compares one, two and three group commits
// syncing at once, on the cells where it matters.
func BenchmarkAppendSyncsInFlight(b *testing.B) {
	for _, c := range []struct{ size, writers int }{{4096, 16}, {4096, 64}, {65536, 16}} {
		for _, n := range []int{1, 2, 3} {
			b.Run(fmt.Sprintf("size=%d/writers=%d/inflight=%d", c.size, c.writers, n), func(b *testing.B) {
				benchAppendWith(b, false, c.size, c.writers, n)
			})
		}
	}
}

func benchAppend(b *testing.B, direct bool, size, writers int) {
	benchAppendWith(b, direct, size, writers, 0)
}

func benchAppendWith(b *testing.B, direct bool, size, writers, inflight int) {
	dev := benchFile(b, direct)
	cfg := pipeline.Config{Checker: allGarbage{}, SyncsInFlight: inflight}
	if err := pipeline.Format(dev, cfg); err != nil {
		b.Fatal(err)
	}
	l, err := pipeline.Open(dev, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	payload := make([]byte, size)
	// Warm up: staging buffers and the journal reach steady state.
	for range 64 {
		if _, err := l.Append(ctx, payload); err != nil {
			b.Fatal(err)
		}
	}
	before := l.Stats()
	lats := make([][]time.Duration, writers)
	var wg sync.WaitGroup
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for w := range writers {
		n := b.N / writers
		if w < b.N%writers {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := make([]byte, size)
			lat := make([]time.Duration, 0, n)
			for range n {
				t0 := time.Now()
				if _, err := l.Append(ctx, p); err != nil {
					b.Error(err)
					return
				}
				lat = append(lat, time.Since(t0))
			}
			lats[w] = lat
		}()
	}
	wg.Wait()
	b.StopTimer()
	after := l.Stats()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(after.JournalSyncs-before.JournalSyncs)/float64(b.N), "syncs/op")
	b.ReportMetric(float64(after.Groups-before.Groups)/float64(b.N), "groups/op")
	b.ReportMetric(float64(after.Writes-before.Writes)/float64(b.N), "writes/op")
	b.ReportMetric(float64(after.Parked-before.Parked)/float64(b.N), "parked/op")
	reportLatency(b, slices.Concat(lats...))
}

// allGarbage lets the log recycle forever; as a PositionChecker it spares
// the collector reading payloads, as an application with an index would.
type allGarbage struct{}

func (allGarbage) IsGarbage(pipeline.Position, []byte) (bool, error) { return true, nil }
func (allGarbage) IsGarbageAt(pipeline.Position) (bool, error)       { return true, nil }

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
