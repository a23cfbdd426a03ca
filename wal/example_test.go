package wal_test

import (
	"context"
	"fmt"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/wal"
)

// Two writes at different offsets become durable together, or not at all.
func Example() {
	dev := device.NewMem(1 << 20)
	const journalOff, journalSize = 0, 64 << 10
	if err := wal.Format(dev, journalOff, journalSize); err != nil {
		panic(err)
	}
	j, err := wal.Open(dev, journalOff, journalSize, wal.Options{})
	if err != nil {
		panic(err)
	}
	defer j.Close()

	tx := j.Begin()
	tx.Write(100<<10, []byte("balance: 90"))
	tx.Write(200<<10, []byte("balance: 110"))
	if err := j.Commit(context.Background(), tx); err != nil {
		panic(err)
	}
	buf := make([]byte, 12)
	dev.ReadAt(buf, 200<<10)
	fmt.Printf("%s\n", buf)
	// Output: balance: 110
}
