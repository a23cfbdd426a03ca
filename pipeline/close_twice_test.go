package pipeline_test

import (
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/pipeline"
)

// syncGate holds the first Sync after arm until release.
type syncGate struct {
	device.Device
	mu       sync.Mutex
	armed    bool
	entered  chan struct{}
	released chan struct{}
}

func (d *syncGate) arm() {
	d.mu.Lock()
	d.armed, d.entered, d.released = true, make(chan struct{}), make(chan struct{})
	d.mu.Unlock()
}

func (d *syncGate) Sync() error {
	d.mu.Lock()
	held := d.armed
	d.armed = false
	d.mu.Unlock()
	if held {
		close(d.entered)
		<-d.released
	}
	return d.Device.Sync()
}

// TestCloseRacingClose: a Close that comes while another is still closing
// (here, committing the exact tail) waits for it to finish and reports
// ErrClosed; the first reports its own outcome, and the log reopens with
// every record.
func TestCloseRacingClose(t *testing.T) {
	dev := &syncGate{Device: device.NewMem(1 << 20)}
	cfg := pipeline.Config{CollectInterval: time.Hour}
	l := formatOpen(t, dev, cfg)
	ctx := guardCtx(t)
	var poss []pipeline.Position
	for i := range 3 {
		pos, err := l.Append(ctx, idPayload(uint64(i), 100))
		if err != nil {
			t.Fatal(err)
		}
		poss = append(poss, pos)
	}
	// The tail bound is ahead of the records: Close commits the exact tail,
	// with a sync.
	dev.arm()
	first := make(chan error, 1)
	go func() { first <- l.Close() }()
	<-dev.entered
	type outcome struct {
		err      error
		released bool // the held sync had been released when it returned
	}
	second := make(chan outcome, 1)
	go func() {
		err := l.Close()
		select {
		case <-dev.released:
			second <- outcome{err, true}
		default:
			second <- outcome{err, false}
		}
	}()
	waitClosers(t, 2, func() bool { return len(second) > 0 })
	close(dev.released)
	if err := <-first; err != nil {
		t.Fatalf("first Close: %v", err)
	}
	o := <-second
	if !errors.Is(o.err, pipeline.ErrClosed) {
		t.Fatalf("second Close: %v, want ErrClosed", o.err)
	}
	if !o.released {
		t.Fatal("the second Close returned while the first was still committing")
	}
	l2 := mustOpen(t, dev, cfg)
	for i, pos := range poss {
		if p, err := l2.Read(pos); err != nil || payloadMismatch(p, i) {
			t.Fatalf("record %d at %d after both Closes: %v", i, pos, err)
		}
	}
}

func payloadMismatch(p []byte, i int) bool {
	id, ok := payloadID(p)
	return !ok || id != uint64(i)
}

// waitClosers waits until n goroutines are inside Log.Close and blocked
// there (the first in its wait for the stages, the others in theirs for the
// first), or until returned says one came back: the goroutines' own stacks
// say so, no timing is assumed.
func waitClosers(t *testing.T, n int, returned func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	buf := make([]byte, 1<<20)
	for {
		stacks := string(buf[:runtime.Stack(buf, true)])
		blocked := 0
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "pipeline.(*Log).Close(") && (strings.Contains(g, "[chan receive") || strings.Contains(g, "[sync.WaitGroup.Wait") || strings.Contains(g, "[semacquire")) {
				blocked++
			}
		}
		if blocked >= n || returned() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines blocked in Close, want %d:\n%s", blocked, n, stacks)
		}
		runtime.Gosched()
	}
}
