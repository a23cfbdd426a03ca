package pipeline_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/pipeline"
	"github.com/ringlog/ringlog/wal"
)

// blockSized reports a block size of its own over a working device.
type blockSized struct {
	device.Device
	bs int
}

func (d blockSized) BlockSize() int { return d.bs }

// TestBadBlockSize: a device whose block size is not a power of two from a
// sector to 4 KiB gets ErrBadConfig from Format and Open (and ErrBadFormat
// from the journal's own Format and Open), never a panic: a header or a
// reservation's payload would not fit such blocks, and 0 would divide by
// zero.
func TestBadBlockSize(t *testing.T) {
	mem := device.NewMem(1 << 20)
	cfg := pipeline.Config{}
	if err := pipeline.Format(mem, cfg); err != nil {
		t.Fatal(err)
	}
	for _, bs := range []int{0, -512, 1, 16, 256, 1000, 3072, 8192} {
		t.Run(fmt.Sprint(bs), func(t *testing.T) {
			dev := blockSized{mem, bs}
			if err := pipeline.Format(dev, cfg); !errors.Is(err, pipeline.ErrBadConfig) {
				t.Errorf("Format: %v, want ErrBadConfig", err)
			}
			if l, err := pipeline.Open(dev, cfg); !errors.Is(err, pipeline.ErrBadConfig) {
				if err == nil {
					l.Close()
				}
				t.Errorf("Open: %v, want ErrBadConfig", err)
			}
			if err := wal.Format(dev, 0, wal.MinSize); !errors.Is(err, wal.ErrBadFormat) {
				t.Errorf("wal.Format: %v, want ErrBadFormat", err)
			}
			if j, err := wal.Open(dev, 0, wal.MinSize, wal.Options{}); !errors.Is(err, wal.ErrBadFormat) {
				if err == nil {
					j.Close()
				}
				t.Errorf("wal.Open: %v, want ErrBadFormat", err)
			}
		})
	}
	// The log formatted above still opens on the device as it is.
	l := mustOpen(t, mem, cfg)
	l.Close()
}
