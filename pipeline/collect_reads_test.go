package pipeline_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/internal/testhooks"
	"github.com/ringlog/ringlog/pipeline"
)

// readCounter counts the bytes read from a device.
type readCounter struct {
	device.Device
	read atomic.Int64
}

func (d *readCounter) ReadAt(p []byte, off int64) (int, error) {
	d.read.Add(int64(len(p)))
	return d.Device.ReadAt(p, off)
}

// With a PositionChecker, the collector learns the frames this Log placed
// from its allocator: of 1.5 MiB of records of one size, or of 35k small
// ones whose sizes change from each to the next, it reads at most the batch
// the allocator still holds (256 KiB). After a reopen the same frames are
// unknown, and it reads them all.
func TestCollectReadsNoFrameItPlaced(t *testing.T) {
	was := testhooks.CheckRuns.Swap(false) // it counts the collector's reads
	t.Cleanup(func() { testhooks.CheckRuns.Store(was) })
	for _, c := range []struct {
		name    string
		size    func(i int) int
		written int
	}{
		{"one size", func(int) int { return 4096 }, 3 << 19},
		// 34,664 records of 1 to 120 bytes (frames of 64 to 160).
		{"mixed sizes", func(i int) int { return 1 + i*37%120 }, 2 << 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			const held = 256<<10 + 4096
			written := c.written
			dev := &readCounter{Device: device.NewMem(8 << 20)}
			cfg := pipeline.Config{Checker: allGarbage{}, CollectInterval: time.Hour}
			l := formatOpen(t, dev, cfg)
			ctx := guardCtx(t)
			p := make([]byte, 4096)
			appendAll := func(l *pipeline.Log) {
				for i, n := 0, 0; n < written; i++ {
					if _, err := l.Append(ctx, p[:c.size(i)]); err != nil {
						t.Fatal(err)
					}
					n += c.size(i)
				}
			}
			collect := func(l *pipeline.Log) int64 {
				t.Helper()
				before := dev.read.Load()
				if err := l.Collect(ctx); err != nil {
					t.Fatal(err)
				}
				if s := l.Stats(); s.Head != s.Durable || s.Head != s.Tail {
					t.Fatalf("collected up to %d, want everything (durable %d, tail %d)", s.Head, s.Durable, s.Tail)
				}
				return dev.read.Load() - before
			}

			appendAll(l)
			if read := collect(l); read > held {
				t.Fatalf("the collector read %d bytes of frames its allocator placed, want at most %d", read, held)
			}

			appendAll(l)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = mustOpen(t, dev, cfg)
			if read := collect(l); read < int64(written) {
				t.Fatalf("after a reopen the collector read %d bytes, want the %d of the records it did not place", read, written)
			}
		})
	}
}
