package pipeline_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/pipeline"
)

// endedAtPlacement is a context that has ended by the time Reserve looks at
// it after placement, though its Done never fired while Reserve waited: the
// caller gave up just as its request was placed.
type endedAtPlacement struct{ context.Context }

func (endedAtPlacement) Done() <-chan struct{} { return nil }
func (endedAtPlacement) Err() error            { return context.Canceled }

// TestReservePlacedAsCallerGaveUp: Reserve turns a reservation placed as
// its caller gave up into padding and returns at once, even when the
// caller holds an earlier reservation open, which the padding cannot
// become durable before. (Reserve used to wait for that.)
func TestReservePlacedAsCallerGaveUp(t *testing.T) {
	l := formatOpen(t, device.NewMem(256<<10), pipeline.Config{})
	held, err := l.Reserve(guardCtx(t), 100)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := l.Reserve(endedAtPlacement{context.Background()}, 200)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Reserve: %v, want context.Canceled", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("Reserve waited behind the reservation its caller holds")
	}
	if err := held.Commit(guardCtx(t)); err != nil {
		t.Fatal(err)
	}
	p := idPayload(7, 300)
	if _, err := l.Append(guardCtx(t), p); err != nil {
		t.Fatal(err)
	}
	pos, got := scanAll(t, l)
	if len(got) != 2 || pos[0] != held.Position() || string(got[1]) != string(p) {
		t.Fatalf("scan: %d records at %v, want the committed reservation and the append", len(got), pos)
	}
}
