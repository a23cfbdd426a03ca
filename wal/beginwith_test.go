package wal

import (
	"bytes"
	"context"
	"testing"

	"github.com/ringlog/ringlog/device"
)

// BeginWith reuses a committed Tx and refuses to reuse one whose fate is
// still open; reuse must not disturb writes DeferApply still holds.
func TestBeginWith(t *testing.T) {
	ctx := context.Background()
	for _, deferApply := range []bool{false, true} {
		dev := device.NewMem(1 << 20)
		if err := Format(dev, 0, MinSize); err != nil {
			t.Fatal(err)
		}
		j, err := Open(dev, 0, MinSize, Options{DeferApply: deferApply})
		if err != nil {
			t.Fatal(err)
		}
		var tx *Tx
		for i := range 300 { // enough to pass several checkpoints
			next := j.BeginWith(tx)
			if tx != nil && next != tx {
				t.Fatalf("commit %d: BeginWith did not reuse a committed Tx", i)
			}
			tx = next
			tx.Write(100<<10, bytes.Repeat([]byte{byte(i)}, 48))
			tx.Write(200<<10+int64(i%4)*64, bytes.Repeat([]byte{byte(i + 1)}, 48))
			if err := j.Commit(ctx, tx); err != nil {
				t.Fatal(err)
			}
		}
		// An open (uncommitted) Tx is not reused.
		open := j.Begin()
		if j.BeginWith(open) == open {
			t.Fatal("BeginWith reused a Tx that was never committed")
		}
		open.Discard()
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		// Close applied what DeferApply held; replay agrees too.
		j, err = Open(dev, 0, MinSize, Options{})
		if err != nil {
			t.Fatal(err)
		}
		lastCommit := 299
		got := make([]byte, 48)
		dev.ReadAt(got, 100<<10)
		if !bytes.Equal(got, bytes.Repeat([]byte{byte(lastCommit)}, 48)) {
			t.Fatalf("deferApply=%v: home bytes %v, want the last commit's", deferApply, got[:4])
		}
		for k := range 4 {
			dev.ReadAt(got, 200<<10+int64(k)*64)
			last := 296 + k // the last i with i%4 == k
			if !bytes.Equal(got, bytes.Repeat([]byte{byte(last + 1)}, 48)) {
				t.Fatalf("deferApply=%v slot %d: %v, want %d", deferApply, k, got[:4], byte(last+1))
			}
		}
		j.Close()
	}
}
