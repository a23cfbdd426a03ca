package pipeline_test

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/pipeline"
)

// TestLargeRecordsWrapAndCrash runs records larger than the writer's 1 MiB
// stage, which grow its staging buffer and are written on their own, mixed
// with small ones and a large reservation, on a log of realistic size that
// wraps twice; then crashes and recovers. The crash exploration's logs are
// too small for these paths.
func TestLargeRecordsWrapAndCrash(t *testing.T) {
	dev := device.NewCrash(24 << 20)
	c := newSetChecker()
	cfg := pipeline.Config{Checker: c, CollectInterval: time.Hour}
	l := formatOpen(t, dev, cfg)
	rng := rand.New(rand.NewPCG(4, 2))
	acked := map[pipeline.Position][]byte{}
	var order []pipeline.Position
	id := uint64(0)
	add := func(pos pipeline.Position, p []byte) {
		acked[pos] = p
		order = append(order, pos)
		for len(order) > 6 { // the newest six stay live
			c.mark(order[0])
			delete(acked, order[0])
			order = order[1:]
		}
	}
	for l.Stats().Tail < pipeline.Position(2*l.Stats().Capacity) {
		id++
		switch id % 4 {
		case 0: // a large reservation
			n := 1<<20 + rng.IntN(1<<20)
			r, err := l.Reserve(guardCtx(t), n)
			if err != nil {
				t.Fatal(err)
			}
			p := idPayload(id, n)
			if _, err := dev.WriteAt(p, r.Offset()); err != nil {
				t.Fatal(err)
			}
			if err := r.Commit(guardCtx(t)); err != nil {
				t.Fatal(err)
			}
			add(r.Position(), p)
		default:
			n := 1000
			if id%2 == 1 {
				n = 1<<20 + rng.IntN(2<<20) // past the stage
			}
			p := idPayload(id, n)
			pos, err := l.Append(guardCtx(t), p)
			if err != nil {
				t.Fatal(err)
			}
			add(pos, p)
		}
		if err := l.Collect(guardCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	holdsAll(t, l, acked, "before the crash")
	images := [][]byte{dev.DurableImage(), dev.Image(rng), dev.Image(rng)}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for i, img := range images {
		l := mustOpen(t, device.NewCrashFrom(img), cfg)
		holdsAll(t, l, acked, "after the crash")
		// Only garbage and the live records are there, in order.
		ps, bs := scanAll(t, l)
		for j, pos := range ps {
			if p, ok := acked[pos]; ok && !bytes.Equal(p, bs[j]) {
				t.Fatalf("image %d: record at %d differs", i, pos)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
