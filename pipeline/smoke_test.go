package pipeline_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/pipeline"
)

func TestSmokeWrap(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dev := device.NewMem(256 << 10)
	if err := pipeline.Format(dev, pipeline.Config{}); err != nil {
		t.Fatal(err)
	}
	live := map[pipeline.Position][]byte{}
	// Only records the writers dropped are garbage: one durable but not yet
	// in live (its Append has not returned) is live all the same.
	dead := map[pipeline.Position]bool{}
	var order []pipeline.Position
	var mu sync.Mutex
	checker := pipeline.GarbageFunc(func(pos pipeline.Position, p []byte) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return dead[pos], nil
	})
	l, err := pipeline.Open(dev, pipeline.Config{Checker: checker})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				p := []byte(fmt.Sprintf("g%d-i%d-%s", g, i, bytes.Repeat([]byte{'x'}, i*7%500)))
				pos, err := l.Append(ctx, p)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				live[pos] = p
				order = append(order, pos)
				if len(order) > 50 {
					dead[order[0]] = true
					delete(live, order[0])
					order = order[1:]
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("%+v", l.Stats())
	mu.Lock()
	for pos, p := range live {
		got, err := l.Read(pos)
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf("read %d: %v", pos, err)
		}
	}
	mu.Unlock()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err = pipeline.Open(dev, pipeline.Config{Checker: checker})
	if err != nil {
		t.Fatal(err)
	}
	scanned := map[pipeline.Position][]byte{}
	if err := l.Scan(func(pos pipeline.Position, p []byte) error {
		scanned[pos] = append([]byte(nil), p...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("scanned %d, %+v", len(scanned), l.Stats())
	mu.Lock()
	for pos, p := range live {
		if !bytes.Equal(scanned[pos], p) {
			t.Fatalf("after reopen, live record %d missing from the scan", pos)
		}
	}
	mu.Unlock()
	if s := l.Stats(); uint64(s.Tail) < uint64(s.Capacity) {
		t.Fatalf("tail %d: the smoke test did not wrap", s.Tail)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}
