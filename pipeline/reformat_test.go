package pipeline_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/pipeline"
)

// TestInterruptedReformat cuts the power at every write and sync of a Format
// over a device that holds a log, and opens images of what could have
// landed: the chunk of zeros over the superblock lost and later ones kept,
// torn, and so on. Open must refuse the region (ErrBadFormat), or find the
// old log whole, or the new empty one: never the old superblock and journal
// over a data area partly zeroed.
func TestInterruptedReformat(t *testing.T) {
	c := device.NewCrash(4 << 20)
	cfg := pipeline.Config{CollectInterval: time.Hour}
	l := formatOpen(t, c, cfg)
	var old [][]byte
	for i := range 1500 {
		p := idPayload(uint64(i), 2000)
		if _, err := l.Append(guardCtx(t), p); err != nil {
			t.Fatal(err)
		}
		old = append(old, p)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	base := c.DurableImage()
	rng := rand.New(rand.NewPCG(1, 2))
	images := 0
	for cut := int64(0); ; cut++ {
		d := device.NewCrashFrom(base)
		d.CutAfter(cut)
		err := pipeline.Format(d, cfg)
		if err == nil && !d.PowerCut() {
			break // Format does fewer than cut writes and syncs
		}
		choices := d.Choices()
		tried := [][]int{nil, make([]int, len(choices))}
		all := make([]int, len(choices))
		for i := range all {
			all[i] = 1
		}
		tried = append(tried, all)
		if len(choices) > 0 {
			first := slices.Clone(all)
			first[0] = 0 // the first pending write lost, the rest landed
			tried = append(tried, first)
		}
		for _, pick := range tried {
			checkReformatImage(t, d.ImageFor(pick), cfg, old, cut)
			images++
		}
		for range 3 {
			checkReformatImage(t, d.Image(rng), cfg, old, cut)
			images++
		}
	}
	t.Logf("%d images checked", images)
}

func checkReformatImage(t *testing.T, img []byte, cfg pipeline.Config, old [][]byte, cut int64) {
	t.Helper()
	l, err := pipeline.Open(device.NewCrashFrom(img), cfg)
	if err != nil {
		if !errors.Is(err, pipeline.ErrBadFormat) {
			t.Fatalf("cut after %d: Open: %v, want a log or ErrBadFormat", cut, err)
		}
		return
	}
	defer l.Close()
	_, bs := scanAll(t, l)
	if len(bs) == 0 {
		return // the new, empty log
	}
	if len(bs) != len(old) {
		t.Fatalf("cut after %d: Open found %d records, the old log had %d", cut, len(bs), len(old))
	}
	for i := range bs {
		if !bytes.Equal(bs[i], old[i]) {
			t.Fatalf("cut after %d: record %d differs from the old log's", cut, i)
		}
	}
}
