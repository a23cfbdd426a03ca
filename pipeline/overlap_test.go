package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/internal/testhooks"
	"github.com/ringlog/ringlog/pipeline"
)

// scriptedSyncs is a memory device whose syncs can be held and failed, in
// the order they are called, to build two syncs that overlap. A failed sync
// models Linux writeback: it drops every write made since the last sync that
// had succeeded before it started, whichever sync those writes were meant
// for, and it alone reports the error; a sync that overlapped it may
// return nil for writes that are gone.
type scriptedSyncs struct {
	*device.Mem
	mu      sync.Mutex
	writes  []undoWrite // every write, oldest first
	durable int         // writes[:durable] are safe: a good sync had covered them
	plans   []*syncPlan // for the next syncs, in call order
}

type undoWrite struct {
	off int64
	old []byte
}

// syncPlan scripts one sync: it signals entered when called, waits for
// hold to close, and then fails if fail is set.
type syncPlan struct {
	entered, hold chan struct{}
	fail          bool
}

func newScriptedSyncs(size int64) *scriptedSyncs {
	return &scriptedSyncs{Mem: device.NewMem(size)}
}

// plan scripts the next sync that has no plan yet.
func (d *scriptedSyncs) plan(fail bool) *syncPlan {
	p := &syncPlan{entered: make(chan struct{}), hold: make(chan struct{}), fail: fail}
	d.mu.Lock()
	d.plans = append(d.plans, p)
	d.mu.Unlock()
	return p
}

func (d *scriptedSyncs) WriteAt(b []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	old := make([]byte, len(b))
	if _, err := d.Mem.ReadAt(old, off); err != nil {
		return 0, err
	}
	d.writes = append(d.writes, undoWrite{off, old})
	return d.Mem.WriteAt(b, off)
}

func (d *scriptedSyncs) Sync() error {
	d.mu.Lock()
	base, upTo := d.durable, len(d.writes)
	var p *syncPlan
	if len(d.plans) > 0 {
		p, d.plans = d.plans[0], d.plans[1:]
	}
	d.mu.Unlock()
	if p != nil {
		close(p.entered)
		<-p.hold
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if p != nil && p.fail {
		for i := len(d.writes) - 1; i >= base; i-- {
			d.Mem.WriteAt(d.writes[i].old, d.writes[i].off)
		}
		d.writes = d.writes[:base]
		d.durable = base
		return syscall.EIO
	}
	d.durable = max(d.durable, min(upTo, len(d.writes)))
	return d.Mem.Sync()
}

// TestOverlappingSyncFailure: two groups sync at once; the first group's
// sync returns nil and is dealt with, and only then does the second's fail,
// losing the first group's data too (Linux tells only one sync of a failed
// writeback). Neither group may be acknowledged, and nothing acknowledged
// may be missing after reopening.
func TestOverlappingSyncFailure(t *testing.T) {
	handled := make(chan struct{}, 64)
	hook := func() {
		select {
		case handled <- struct{}{}:
		default: // only the signals after the first group's sync starts count
		}
	}
	testhooks.SyncHandled.Store(&hook)
	defer testhooks.SyncHandled.Store(nil)
	dev := newScriptedSyncs(256 << 10)
	cfg := pipeline.Config{Checker: newSetChecker(), CollectInterval: time.Hour, SyncsInFlight: 2}
	acked := map[pipeline.Position][]byte{}
	l := formatOpen(t, dev, cfg)
	for i := range 10 {
		p := idPayload(uint64(i), 300)
		pos, err := l.Append(guardCtx(t), p)
		if err != nil {
			t.Fatal(err)
		}
		acked[pos] = p
	}

	first := dev.plan(false)
	a := goAppend(context.Background(), l, idPayload(100, 300))
	<-first.entered
	// The journal's committer started this sync after it had dealt with
	// every sync before: what handled holds now is theirs.
	for len(handled) > 0 {
		<-handled
	}
	second := dev.plan(true)
	b := goAppend(context.Background(), l, idPayload(101, 300))
	<-second.entered
	close(first.hold) // nil, for data the second's failure drops
	<-handled
	close(second.hold)

	for i, ch := range []<-chan appendResult{a, b} {
		r := <-ch
		if !errors.Is(r.err, pipeline.ErrFailed) || !errors.Is(r.err, syscall.EIO) {
			t.Errorf("append in group %d: position %d, %v; want ErrFailed wrapping EIO", i+1, r.pos, r.err)
		}
		if r.err == nil {
			acked[r.pos] = idPayload(uint64(100+i), 300)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l = mustOpen(t, dev, cfg)
	defer l.Close()
	ps, bs := scanAll(t, l)
	found := map[pipeline.Position][]byte{}
	for i, pos := range ps {
		found[pos] = bs[i]
	}
	for pos, p := range acked {
		if !bytes.Equal(found[pos], p) {
			t.Errorf("acknowledged record at %d lost", pos)
		}
	}
}
