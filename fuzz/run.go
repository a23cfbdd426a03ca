package fuzz

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/internal/testhooks"
	"github.com/ringlog/ringlog/pipeline"
)

// stallTimeout bounds a whole run of a history (milliseconds of work). It
// never expires unless the log hangs, which is then reported as a
// violation.
const stallTimeout = 20 * time.Second

// blockDev is a crash device that reports a larger block size, like a disk
// opened with O_DIRECT: ringlog then writes whole 4 KiB blocks while the
// crash model still tears 512-byte sectors.
type blockDev struct {
	*device.Crash
	bs int
}

func (d blockDev) BlockSize() int { return d.bs }

func wrapDev(c *device.Crash, bs int) device.Device {
	if bs == c.BlockSize() {
		return c
	}
	return blockDev{c, bs}
}

// config is the Config a history's log runs with: no timer-driven
// collection, so that the collector runs only when asked or under pressure.
func (p Params) config(checker pipeline.GarbageChecker) pipeline.Config {
	cfg := pipeline.Config{JournalSize: p.JournalSize, Checker: checker, CollectInterval: time.Hour, SyncsInFlight: p.SyncsInFlight}
	if p.Pad > 0 {
		cfg.Offset, cfg.Size = p.Pad, p.DevSize-2*p.Pad
	}
	return cfg
}

// formatImage returns the image of a freshly formatted device for p, the
// bytes outside the log's region set to padByte.
func formatImage(p Params) ([]byte, error) {
	img := make([]byte, p.DevSize)
	for _, off := range []int64{0, p.DevSize - p.Pad} {
		for i := range p.Pad {
			img[off+i] = padByte
		}
	}
	c := device.NewCrashFrom(img)
	if err := pipeline.Format(wrapDev(c, p.BlockSize), p.config(nil)); err != nil {
		return nil, err
	}
	return c.DurableImage(), nil
}

// runner executes one history on a crash device whose power fails after cut
// writes and syncs (never if cut < 0).
type runner struct {
	machine
	h       *History
	m       *Model
	l       *pipeline.Log
	ctx     context.Context
	checker pipeline.GarbageChecker
	verify  *verifier // checks the log at a reboot (a crash state of its own)
}

// runHistory runs h on a device booted from base (taken over). If fault is
// positive, the fault-th write or sync on that device fails (and the disk
// goes on working): the log must fail, refuse writes until it is reopened,
// and lose nothing it acknowledged.
func runHistory(h *History, m *Model, base []byte, cut, fault int64, v *verifier) runResult {
	// Every frame run the collector is told is checked against the device.
	testhooks.CheckRuns.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), stallTimeout)
	defer cancel()
	r := &runner{h: h, m: m, ctx: ctx, verify: v,
		machine: machine{cut: cut, fault: fault, blockSize: h.BlockSize, geo: v.geo}}
	if h.PosChecker {
		r.checker = posChecker{garbageChecker{m}}
	} else {
		r.checker = garbageChecker{m}
	}
	r.boot(base)
	r.open()
	for _, st := range h.Steps {
		if r.stopped {
			break
		}
		switch st.Kind {
		case StepLanes:
			r.lanes(st.Lanes)
		case StepReopen:
			r.close()
			r.open()
			r.recovered("after a reopen")
		case StepReboot:
			r.reboot(st.Seed)
		}
	}
	if r.l != nil {
		if r.powerCut() || r.faulted() {
			// A failed log refuses writes, and says so without hanging.
			// (Its record may still land if the power was cut during it.)
			rc := r.m.add(minPayload, false)
			r.m.called(rc)
			_, err := r.l.Append(ctx, makePayload(rc.id, minPayload))
			r.m.finished(rc, err)
			if err == nil {
				r.m.problem("Append succeeded after a write or sync failed (power cut %v)", r.powerCut())
			}
		}
		r.close()
	}
	v.cov.Cancelled += r.m.cancelled.Swap(0)
	v.cov.CancelLost += r.m.cancelLost.Swap(0)
	v.cov.CancelParked += r.m.cancelParked.Swap(0)
	return r.result(&v.cov)
}

// failed notes an operation's error: expected once the power is cut or an
// error was injected, a violation otherwise.
func (r *runner) failed(op string, err error) {
	if r.powerCut() || r.faulted() {
		return
	}
	if errors.Is(err, context.DeadlineExceeded) {
		r.m.problem("%s stalled for %v: %v", op, stallTimeout, err)
		return
	}
	r.m.problem("%s failed without a power cut: %v", op, err)
}

// close closes the log, counting the requests that had to wait for space.
func (r *runner) close() {
	r.verify.cov.Parked += int64(r.l.Stats().Parked)
	r.m.log.Store(nil)
	if err := r.l.Close(); err != nil && !r.powerCut() {
		r.m.problem("Close: %v", err)
	}
	r.l = nil
}

func (r *runner) open() {
	var l *pipeline.Log
	err := r.machine.open(func() (err error) {
		l, err = pipeline.Open(r.dev, r.h.config(r.checker))
		return err
	})
	if err != nil {
		r.failed("Open", err)
		r.stopped = true
		return
	}
	r.l = l
	r.m.log.Store(l)
}

// lanes runs each lane in its own goroutine and waits for all of them.
func (r *runner) lanes(lanes [][]Action) {
	var wg, gates sync.WaitGroup
	others := make(chan struct{}) // closed once every lane but the gate's is done
	for _, lane := range lanes {
		if len(lane) == 1 && lane[0].Kind == ActGate {
			gates.Add(1)
			go func() {
				defer gates.Done()
				r.gate(others)
			}()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, a := range lane {
				if !r.do(a) {
					return
				}
			}
		}()
	}
	wg.Wait()
	close(others)
	gates.Wait()
	if r.powerCut() {
		r.stopped = true
	}
}

// do performs one action; false means the lane stops (after a failure).
func (r *runner) do(a Action) bool {
	switch a.Kind {
	case ActAppend:
		rc := r.m.add(a.Sizes[0], false)
		p := makePayload(rc.id, rc.size)
		r.m.called(rc)
		ctx, stop := r.cancelling(a.Cancel)
		pos, err := r.l.Append(ctx, p)
		stop()
		if a.Cancel > 0 && errors.Is(err, context.Canceled) {
			r.m.cancelled.Add(1)
			if errors.Is(err, pipeline.ErrNoSpace) {
				r.m.cancelParked.Add(1)
			}
			r.m.finished(rc, err)
			return true
		}
		if a.Cancel > 0 && err == nil {
			r.m.cancelLost.Add(1)
		}
		if err != nil {
			r.m.finished(rc, err)
			r.failed("Append", err)
			return false
		}
		r.m.placed(rc, uint64(pos))
		r.m.finished(rc, nil)
		return true
	case ActReserve:
		return r.reserve(a)
	case ActRead:
		return r.read(a.Pick)
	case ActScan:
		return r.scan()
	default:
		if err := r.l.Collect(r.ctx); err != nil {
			r.failed("Collect", err)
			return false
		}
		return true
	}
}

// cancelling returns the context for an Append with Action.Cancel n, and
// what to call once the Append has returned: with n 0 the runner's own; with
// 1 one that has ended already; else one that another goroutine ends after
// n-1 yields.
func (r *runner) cancelling(n int) (context.Context, func()) {
	if n == 0 {
		return r.ctx, func() {}
	}
	ctx, cancel := context.WithCancel(r.ctx)
	if n == 1 {
		cancel()
		return ctx, func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range n - 1 {
			runtime.Gosched()
		}
		cancel()
	}()
	return ctx, func() { <-done }
}

// reserve places len(a.Sizes) reservations, writes their payloads, then
// commits (or discards) them from one goroutine each, started in Perm order,
// so that they complete out of order.
func (r *runner) reserve(a Action) bool {
	n := len(a.Sizes)
	recs := make([]*rec, n)
	res := make([]*pipeline.Reservation, n)
	ok := true
	for i, size := range a.Sizes {
		rc := r.m.add(size, true)
		r.m.reserving(rc)
		rs, err := r.l.Reserve(r.ctx, size)
		if err != nil {
			r.m.discarded(rc)
			r.failed("Reserve", err)
			ok = false
			break
		}
		r.m.placed(rc, uint64(rs.Position()))
		recs[i], res[i] = rc, rs
		if _, err := r.dev.WriteAt(makePayload(rc.id, size), rs.Offset()); err != nil {
			r.failed("writing a reservation", err)
			if errors.Is(err, errInjected) {
				// The error hit the caller's write, not the log's.
				r.dev.firedAt.Store(0)
			}
			// Committing would seal whatever the reservation held.
			a.Discard = slices.Clone(a.Discard)
			a.Discard[i] = true
			ok = false
		}
	}
	var wg sync.WaitGroup
	for _, i := range a.Perm {
		if res[i] == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if a.Discard[i] {
				r.m.discarded(recs[i])
				if err := res[i].Discard(r.ctx); err != nil {
					r.failed("Discard", err)
				}
				return
			}
			r.m.called(recs[i])
			err := res[i].Commit(r.ctx)
			r.m.finished(recs[i], err)
			if err != nil {
				r.failed("Commit", err)
			}
		}()
	}
	wg.Wait()
	return ok && !r.powerCut()
}

// gate keeps the collector from freeing anything until an append waits for
// space (or the other lanes are done), then lets it go and runs a pass.
func (r *runner) gate(others <-chan struct{}) {
	select {
	case <-r.m.gateHit: // a stale token
	default:
	}
	r.m.gateParked.Store(r.l.Stats().Parked)
	r.m.gate.Store(true)
	select {
	case <-r.m.gateHit:
	case <-others:
	}
	r.m.gate.Store(false)
	if err := r.l.Collect(r.ctx); err != nil {
		r.failed("Collect", err)
	}
}

// read reads an acknowledged record while the other lanes go on: it must
// come back whole, or as ErrCollected once the checker released it.
func (r *runner) read(pick int) bool {
	r.m.mu.Lock()
	var acked []*rec
	for _, rc := range r.m.recs {
		if rc.state == stAcked && rc.hasPos {
			acked = append(acked, rc)
		}
	}
	r.m.mu.Unlock()
	if len(acked) == 0 {
		return true
	}
	rc := acked[pick%len(acked)]
	got, err := r.l.Read(pipeline.Position(rc.pos))
	switch {
	case err == nil:
		if id, ok := payloadID(got); !ok || id != rc.id {
			r.m.problem("Read(%d) of acknowledged record %d returned %d bytes of something else", rc.pos, rc.id, len(got))
		}
	case errors.Is(err, pipeline.ErrCollected):
		r.m.mu.Lock()
		released := rc.released
		r.m.mu.Unlock()
		if !released {
			r.m.problem("Read(%d) of live acknowledged record %d: %v", rc.pos, rc.id, err)
		}
	default:
		r.failed("Read", err)
		return !r.powerCut()
	}
	return true
}

// scan scans the log while the other lanes go on: only records that were
// appended, at their positions, in order; it may end with ErrCollected when
// the collector overtakes it.
func (r *runner) scan() bool {
	var last uint64
	n := 0
	err := r.l.Scan(func(pos pipeline.Position, p []byte) error {
		id, ok := payloadID(p)
		r.m.mu.Lock()
		rc := r.m.get(id)
		switch {
		case !ok || rc == nil || !rc.mayAppear():
			r.m.problems = append(r.m.problems, fmt.Sprintf("a live Scan yielded %d bytes at %d that were never appended (id %d)", len(p), pos, id))
		case rc.hasPos && rc.pos != uint64(pos):
			r.m.problems = append(r.m.problems, fmt.Sprintf("a live Scan yielded record %d at %d; it was placed at %d", id, pos, rc.pos))
		}
		r.m.mu.Unlock()
		if n > 0 && uint64(pos) <= last {
			r.m.problem("a live Scan went from %d back to %d", last, pos)
		}
		n, last = n+1, uint64(pos)
		return nil
	})
	if err != nil && !errors.Is(err, pipeline.ErrCollected) {
		r.failed("Scan", err)
		return !r.powerCut()
	}
	return true
}

// reboot crashes the machine now: it boots a new device from an image of
// this one, opens the log on it and checks it (a crash state of its own).
func (r *runner) reboot(seed uint64) {
	r.machine.reboot(seed, r.close)
	r.open()
	if r.l == nil {
		return
	}
	r.verify.states++
	r.verify.cov.Reboots++
	r.recovered("after a crash and reboot in the history")
}

// recovered checks the log just opened in the middle of the history and
// tells the model what it kept: from now on those records must stay, the
// rest must never come back.
func (r *runner) recovered(when string) {
	if r.l == nil {
		return
	}
	view, problems := r.verify.check(r.l, r.dev, nil)
	for _, p := range problems {
		r.m.problem("%s: %s", when, p)
	}
	present := make(map[uint64]uint64, len(view.scan))
	for _, e := range view.scan {
		present[e.id] = e.pos
	}
	r.m.recovered(present)
}
