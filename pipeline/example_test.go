package pipeline_test

import (
	"context"
	"fmt"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/pipeline"
)

// A log on an in-memory device: format once, open, append, read back.
func Example() {
	ctx := context.Background()
	dev := device.NewMem(1 << 20)
	if err := pipeline.Format(dev, pipeline.Config{}); err != nil {
		panic(err)
	}
	log, err := pipeline.Open(dev, pipeline.Config{})
	if err != nil {
		panic(err)
	}
	defer log.Close()

	pos, err := log.Append(ctx, []byte("hello, ring"))
	if err != nil {
		panic(err)
	}
	got, err := log.Read(pos)
	fmt.Printf("%s %v\n", got, err)
	// Output: hello, ring <nil>
}

// The zero-copy path: reserve room, write the payload on the device
// yourself, then commit.
func ExampleLog_Reserve() {
	ctx := context.Background()
	dev := device.NewMem(1 << 20)
	if err := pipeline.Format(dev, pipeline.Config{}); err != nil {
		panic(err)
	}
	log, err := pipeline.Open(dev, pipeline.Config{})
	if err != nil {
		panic(err)
	}
	defer log.Close()

	payload := []byte("written in place")
	r, err := log.Reserve(ctx, len(payload))
	if err != nil {
		panic(err)
	}
	if _, err := dev.WriteAt(payload, r.Offset()); err != nil {
		panic(err)
	}
	if err := r.Commit(ctx); err != nil {
		panic(err)
	}
	got, _ := log.Read(r.Position())
	fmt.Printf("%s, offset aligned to the block: %v\n", got, r.Offset()%int64(dev.BlockSize()) == 0)
	// Output: written in place, offset aligned to the block: true
}

// A GarbageChecker lets the collector reclaim space at the head.
func ExampleLog_Collect() {
	ctx := context.Background()
	dev := device.NewMem(1 << 20)
	if err := pipeline.Format(dev, pipeline.Config{}); err != nil {
		panic(err)
	}
	released := map[pipeline.Position]bool{}
	cfg := pipeline.Config{Checker: pipeline.GarbageFunc(func(pos pipeline.Position, _ []byte) (bool, error) {
		return released[pos], nil // the collector calls this from one goroutine
	})}
	log, err := pipeline.Open(dev, cfg)
	if err != nil {
		panic(err)
	}
	defer log.Close()

	first, _ := log.Append(ctx, []byte("old"))
	second, _ := log.Append(ctx, []byte("new"))
	released[first] = true
	if err := log.Collect(ctx); err != nil {
		panic(err)
	}
	_, err = log.Read(first)
	fmt.Println("first:", err != nil, "head moved to second:", log.Stats().Head == second)
	// Output: first: true head moved to second: true
}

// Scan visits every record from the head to the durable tail, in order.
func ExampleLog_Scan() {
	ctx := context.Background()
	dev := device.NewMem(1 << 20)
	if err := pipeline.Format(dev, pipeline.Config{}); err != nil {
		panic(err)
	}
	log, err := pipeline.Open(dev, pipeline.Config{})
	if err != nil {
		panic(err)
	}
	for _, s := range []string{"a", "b", "c"} {
		if _, err := log.Append(ctx, []byte(s)); err != nil {
			panic(err)
		}
	}
	log.Close()

	// Reopen: recovery restores head and tail.
	log, err = pipeline.Open(dev, pipeline.Config{})
	if err != nil {
		panic(err)
	}
	defer log.Close()
	log.Scan(func(pos pipeline.Position, p []byte) error {
		fmt.Printf("%d:%s ", pos, p)
		return nil
	})
	fmt.Println()
	// Output: 0:a 64:b 128:c
}
