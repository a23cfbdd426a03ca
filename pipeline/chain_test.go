package pipeline_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ringlog/ringlog/pipeline"
)

// A group's callers are woken one after another, each by the one before
// (stages.FinishChain). A caller that gives up in the middle of the chain,
// here a Commit whose context ended, must not leave the callers after it
// waiting.
func TestAbandonedCommitDoesNotStallItsGroup(t *testing.T) {
	dev, _, l := smallLog(t, nil)
	var rs []*pipeline.Reservation
	for i := range 3 {
		r, err := l.Reserve(guardCtx(t), 100+i)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dev.WriteAt(idPayload(uint64(i), 100+i), r.Offset()); err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	// The third waits behind the first's gap; the second gives up at
	// once. (Should the third's header reach the committer only after the
	// first's group formed, it makes a group of its own and the test
	// proves less, but still passes: nothing here waits on timing.)
	third := make(chan error, 1)
	go func() { third <- rs[2].Commit(guardCtx(t)) }()
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if err := rs[1].Commit(ended); !errors.Is(err, context.Canceled) {
		t.Fatalf("Commit with an ended context: %v, want Canceled", err)
	}
	// The first's Commit makes all three one group, woken in position
	// order: first, the one that left, third.
	if err := rs[0].Commit(guardCtx(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-third:
		if err != nil {
			t.Fatalf("third Commit: %v", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("the third Commit was never woken: the chain stopped at the caller that left")
	}
	for i, r := range rs {
		if _, err := l.Read(r.Position()); err != nil {
			t.Fatalf("Read of reservation %d: %v", i, err)
		}
	}
}
