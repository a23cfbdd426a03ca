package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/pipeline"
)

// TestCloseWithOperationsInFlight closes a log while appends wait behind an
// uncommitted reservation, more appends and a Reserve are parked on the
// full log, and a later reservation's Commit waits for the first one.
// Every one of them returns ErrClosed, Close returns, and nothing leaks.
func TestCloseWithOperationsInFlight(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := newSetChecker() // nothing is garbage: the log fills
	dev := device.NewMem(128 << 10)
	cfg := pipeline.Config{Checker: c, CollectInterval: time.Hour}
	if err := pipeline.Format(dev, cfg); err != nil {
		t.Fatal(err)
	}
	l, err := pipeline.Open(dev, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first := idPayload(1, 100)
	firstPos, err := l.Append(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	r1, err := l.Reserve(ctx, 300) // never committed before Close
	if err != nil {
		t.Fatal(err)
	}
	r2, err := l.Reserve(ctx, 200)
	if err != nil {
		t.Fatal(err)
	}
	dev.WriteAt(idPayload(2, 200), r2.Offset())

	var wg sync.WaitGroup
	errs := make(chan error, 100)
	run := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- f()
		}()
	}
	run(func() error { return r2.Commit(ctx) }) // waits for r1
	before := l.Stats().Parked
	const appenders = 40 // 40 × 3 KiB do not fit in 80 KiB
	for i := range appenders {
		run(func() error {
			_, err := l.Append(ctx, idPayload(uint64(10+i), 3000))
			return err
		})
	}
	// Wait until the log is full and a request is parked: by then every
	// append ahead of it in the queue has been placed behind r1.
	waitParked(t, l, c, before, make(chan struct{}))
	run(func() error {
		_, err := l.Reserve(ctx, 1000)
		return err
	})
	s := l.Stats()
	if s.Durable > r1.Position() {
		t.Fatalf("durable %d passed the uncommitted reservation at %d", s.Durable, r1.Position())
	}
	if s.Free > 4096 {
		t.Fatalf("log not full: %+v", s)
	}

	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		n++
		if !errors.Is(err, pipeline.ErrClosed) {
			t.Errorf("operation in flight at Close returned %v, want ErrClosed", err)
		}
	}
	if n != appenders+2 {
		t.Fatalf("%d results, want %d", n, appenders+2)
	}

	// Every later call returns ErrClosed.
	if _, err := l.Append(ctx, []byte("late")); !errors.Is(err, pipeline.ErrClosed) {
		t.Errorf("Append after Close: %v", err)
	}
	if _, err := l.Reserve(ctx, 10); !errors.Is(err, pipeline.ErrClosed) {
		t.Errorf("Reserve after Close: %v", err)
	}
	if err := r1.Commit(ctx); !errors.Is(err, pipeline.ErrClosed) {
		t.Errorf("Commit after Close: %v", err)
	}
	if _, err := l.Read(firstPos); !errors.Is(err, pipeline.ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
	if err := l.Scan(func(pipeline.Position, []byte) error { return nil }); !errors.Is(err, pipeline.ErrClosed) {
		t.Errorf("Scan after Close: %v", err)
	}
	if err := l.Collect(ctx); !errors.Is(err, pipeline.ErrClosed) {
		t.Errorf("Collect after Close: %v", err)
	}
	if err := l.Close(); !errors.Is(err, pipeline.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	if cs := l.Stats(); cs.Capacity != s.Capacity || cs.Epoch != s.Epoch {
		t.Errorf("Stats after Close: %+v", cs)
	}

	// Nothing after the uncommitted reservation was ever durable: the
	// reopened log holds the first record only, and continues after it.
	l2, err := pipeline.Open(dev, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	ps, bs := scanAll(t, l2)
	if len(ps) != 1 || ps[0] != firstPos || !bytes.Equal(bs[0], first) {
		t.Fatalf("after reopen, scan %v, want only the first record at %d", ps, firstPos)
	}
	s2 := checkStats(t, l2)
	// The tail is where the durable tail was: after the first record, up to
	// the padding before r1 depending on how far the writer had got.
	if s2.Tail < firstPos+1 || s2.Tail > r1.Position() || s2.Epoch != s.Epoch+1 {
		t.Fatalf("after reopen: tail %d epoch %d, want in (%d, %d] and %d", s2.Tail, s2.Epoch, firstPos, r1.Position(), s.Epoch+1)
	}
	if _, err := l2.Append(ctx, []byte("again")); err != nil {
		t.Fatal(err)
	}
}

// TestCloseRacingAppends closes a log while many appends run: each returns
// nil or ErrClosed, and every nil one is in the reopened log.
func TestCloseRacingAppends(t *testing.T) {
	defer goleak.VerifyNone(t)
	for round := range 8 {
		dev := device.NewMem(256 << 10)
		cfg := pipeline.Config{Checker: pipeline.GarbageFunc(func(pipeline.Position, []byte) (bool, error) { return true, nil })}
		if err := pipeline.Format(dev, cfg); err != nil {
			t.Fatal(err)
		}
		l, err := pipeline.Open(dev, cfg)
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		acked := map[pipeline.Position][]byte{}
		var wg sync.WaitGroup
		started := make(chan struct{}, 16)
		for g := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					p := idPayload(uint64(round<<24|g<<16|i), 8+(g*i)%300)
					pos, err := l.Append(context.Background(), p)
					if i == 0 {
						started <- struct{}{}
					}
					if err != nil {
						if !errors.Is(err, pipeline.ErrClosed) {
							t.Errorf("append: %v, want nil or ErrClosed", err)
						}
						return
					}
					mu.Lock()
					acked[pos] = p
					mu.Unlock()
				}
			}()
		}
		for range 16 {
			<-started
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		l2, err := pipeline.Open(dev, pipeline.Config{})
		if err != nil {
			t.Fatal(err)
		}
		h := l2.Stats().Head
		for pos, p := range acked {
			if pos < h {
				continue // collected: everything was garbage
			}
			if got, err := l2.Read(pos); err != nil || !bytes.Equal(got, p) {
				t.Fatalf("acknowledged record at %d after Close and reopen: %v", pos, err)
			}
		}
		l2.Close()
	}
}
