package pipeline_test

import (
	"context"
	"testing"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/pipeline"
)

// A steady-state Append allocates its request and the channel that wakes
// its caller, and nothing else along the whole pipeline: staging buffers,
// waiter lists, the committer's heap and the journal transaction are reused.
func TestAppendAllocations(t *testing.T) {
	ctx := context.Background()
	dev := device.NewMem(8 << 20)
	cfg := pipeline.Config{Checker: pipeline.GarbageFunc(func(pipeline.Position, []byte) (bool, error) { return true, nil })}
	if err := pipeline.Format(dev, cfg); err != nil {
		t.Fatal(err)
	}
	l, err := pipeline.Open(dev, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := make([]byte, 128)
	for range 2000 { // warm up, and wrap at least once
		if _, err := l.Append(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	allocs := testing.AllocsPerRun(2000, func() {
		if _, err := l.Append(ctx, p); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 2 {
		t.Fatalf("steady-state Append allocates %.1f times, want at most 2", allocs)
	}
}
