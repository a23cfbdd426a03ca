package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/pipeline"
)

// TestBlockSlackSparesTheHead: with 4 KiB blocks the writer writes the
// whole block a record ends in, zeroing the rest of it. On a log filled up
// to its head, an append whose end lies in the block the head starts in
// would wipe the head's frames, even though its own bytes stop before the
// head: it must wait for space instead, and every live record stays
// readable.
func TestBlockSlackSparesTheHead(t *testing.T) {
	const bs = 4096
	dev := blockSized{device.NewMem(1 << 20), bs}
	c := newSetChecker()
	l := formatOpen(t, dev, pipeline.Config{Checker: c, CollectInterval: time.Hour})
	ctx := guardCtx(t)
	capacity := uint64(l.Stats().Capacity)
	stride := strideOf(false, 1000)

	// Fill half the log, then release records up to a head that starts
	// half way into a block.
	var live []pipeline.Position
	payloads := map[pipeline.Position][]byte{}
	add := func(n int) pipeline.Position {
		t.Helper()
		p := idPayload(uint64(len(payloads)+1), n)
		pos, err := l.Append(ctx, p)
		if err != nil {
			t.Fatalf("Append of %d bytes with %d free: %v", n, l.Stats().Free, err)
		}
		payloads[pos] = p
		live = append(live, pos)
		return pos
	}
	for uint64(l.Stats().Tail) < capacity/2 {
		add(1000)
	}
	k := 0
	for uint64(live[k])%bs < bs/3 || uint64(live[k])%bs > bs*7/8 {
		k++
	}
	head := live[k]
	c.mark(live[:k]...)
	live = live[k:]
	if err := l.Collect(ctx); err != nil {
		t.Fatal(err)
	}
	if s := l.Stats(); s.Head != head {
		t.Fatalf("head %d after collecting, want %d", s.Head, head)
	}

	// Fill the rest up to the block the head starts in, a lap on: no
	// append ends in it.
	danger := uint64(head) + capacity - uint64(head)%bs
	for uint64(l.Stats().Tail)+stride <= danger {
		add(1000)
	}
	// The next one ends 512 bytes into that block.
	target := danger + 512
	last := target - uint64(l.Stats().Tail)
	// Its bytes fit before the head, but the block they end in holds it.
	before := l.Stats().Parked
	p := idPayload(999_999, int(last)-32)
	short, cancel := context.WithCancel(ctx)
	done := goAppend(short, l, p)
	waitParked(t, l, c, before, done)
	cancel()
	if r := <-done; !errors.Is(r.err, pipeline.ErrNoSpace) {
		t.Fatalf("append ending at %d, in the block of the head at %d: %v at %d, want ErrNoSpace", target, head, r.err, r.pos)
	}
	for _, pos := range live {
		got, err := l.Read(pos)
		if err != nil || !bytes.Equal(got, payloads[pos]) {
			t.Fatalf("live record at %d (head %d): %v", pos, head, err)
		}
	}
	checkStats(t, l)
}
