package stages_test

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/internal/layout"
	"github.com/ringlog/ringlog/stages"
	"github.com/ringlog/ringlog/wal"
)

const collectData = 64 << 10

// mapChecker calls garbage the positions in its set, recording every call.
type mapChecker struct {
	mu      sync.Mutex
	garbage map[uint64]bool
	fail    map[uint64]error
	calls   []uint64
	payload map[uint64][]byte
}

func (c *mapChecker) IsGarbage(pos uint64, p []byte) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, pos)
	if c.payload != nil {
		c.payload[pos] = append([]byte(nil), p...)
	}
	if err := c.fail[pos]; err != nil {
		return false, err
	}
	return c.garbage[pos], nil
}

func (c *mapChecker) set(pos uint64, garbage bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.garbage[pos] = garbage
}

func (c *mapChecker) takeCalls() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.calls
	c.calls = nil
	return out
}

// posChecker is a mapChecker that decides by position alone.
type posChecker struct{ *mapChecker }

func (c posChecker) IsGarbageAt(pos uint64) (bool, error) { return c.IsGarbage(pos, nil) }

type collectorRig struct {
	dev   *device.Mem
	geo   layout.Geometry
	j     *wal.Journal
	c     *stages.Collector
	pub   *stages.Published
	freed chan uint64
}

func newCollectorRig(t *testing.T, checker stages.Checker, head uint64) *collectorRig {
	t.Helper()
	geo := testGeo(collectData)
	r := &collectorRig{dev: device.NewMem(geo.Size), geo: geo, pub: new(stages.Published), freed: make(chan uint64, 64)}
	r.j = newJournal(t, r.dev, geo)
	r.c = stages.NewCollector(r.j, stages.FrameReader{Dev: r.dev, Geo: geo}, checker, testFormatID, time.Hour, 1, head, r.freed, r.pub)
	return r
}

func (r *collectorRig) start(t *testing.T) { runStage(t, r.c.Run) }

// collect asks for a pass and returns its outcome.
func (r *collectorRig) collect(t *testing.T) error {
	t.Helper()
	req := stages.CollectRequest{Reply: make(chan error, 1)}
	select {
	case r.c.Requests <- req:
	case <-time.After(guard):
		t.Fatal("collector does not take requests")
	}
	return recv(t, req.Reply, "collect reply")
}

// lastFreed drains the freed channel and returns the last value, or none.
func (r *collectorRig) lastFreed() (uint64, bool) {
	var v uint64
	ok := false
	for {
		select {
		case v = <-r.freed:
			ok = true
		default:
			return v, ok
		}
	}
}

func (r *collectorRig) headOnDevice(t *testing.T) layout.Head {
	t.Helper()
	var hs [2]layout.Head
	for i := range 2 {
		b := make([]byte, layout.StateLen)
		if _, err := r.dev.ReadAt(b, r.geo.HeadSlot(i)); err != nil {
			t.Fatal(err)
		}
		h, ok := layout.DecodeHead(b)
		if !ok {
			t.Fatalf("head copy %d does not decode", i)
		}
		hs[i] = h
	}
	if hs[0] != hs[1] {
		t.Fatalf("head copies differ: %+v", hs)
	}
	return hs[0]
}

func (r *collectorRig) expectHead(t *testing.T, head uint64, gen uint64) {
	t.Helper()
	if got := r.pub.Head.Load(); got != head {
		t.Fatalf("published head %d, want %d", got, head)
	}
	if got, ok := r.lastFreed(); !ok || got != head {
		t.Fatalf("freed %d (sent %v), want %d", got, ok, head)
	}
	if h := r.headOnDevice(t); h.Head != head || h.FormatID != testFormatID || h.Gen != gen {
		t.Fatalf("head on device %+v, want head %d gen %d", h, head, gen)
	}
}

// layoutFrames writes records and padding: it returns the positions of the
// records, in order, and the end.
func layoutFrames(t *testing.T, r *collectorRig, start uint64, spec []int) ([]uint64, uint64) {
	t.Helper()
	var recs []uint64
	pos := start
	for i, n := range spec {
		if n < 0 { // padding of -n bytes
			putPad(t, r.dev, r.geo, pos, uint64(-n), 1)
			pos += uint64(-n)
			continue
		}
		recs = append(recs, pos)
		pos += putRecord(t, r.dev, r.geo, pos, 1, payload(n, uint64(i)))
	}
	return recs, pos
}

func TestCollectorAdvancesOverGarbageAndPadding(t *testing.T) {
	for _, byPos := range []bool{false, true} {
		t.Run(fmt.Sprintf("byPosition=%v", byPos), func(t *testing.T) {
			mc := &mapChecker{garbage: map[uint64]bool{}, payload: map[uint64][]byte{}}
			var checker stages.Checker = mc
			if byPos {
				checker = posChecker{mc}
			}
			start := uint64(2*collectData + 1024)
			r := newCollectorRig(t, checker, start)
			// rec0, pad, rec1, rec2, pad, rec3, rec4 (past durable)
			recs, end := layoutFrames(t, r, start, []int{10, -96, 200, 0, -64, 50, 70})
			durable := recs[4]
			r.pub.Durable.Store(durable)
			mc.set(recs[0], true)
			mc.set(recs[1], true)
			mc.set(recs[3], true) // not reachable while rec2 is live
			mc.set(recs[4], true) // past the durable tail
			r.start(t)

			if err := r.collect(t); err != nil {
				t.Fatal(err)
			}
			// Stops at rec2, the first live record, after asking about
			// rec0, rec1 and rec2 only.
			r.expectHead(t, recs[2], 2)
			if calls := mc.takeCalls(); fmt.Sprint(calls) != fmt.Sprint(recs[:3]) {
				t.Fatalf("checker asked about %v, want %v", calls, recs[:3])
			}
			if !byPos {
				for i, want := range [][]byte{payload(10, 0), payload(200, 2), payload(0, 3)} {
					if !bytes.Equal(mc.payload[recs[i]], want) {
						t.Fatalf("checker saw a wrong payload for record %d", i)
					}
				}
			}
			if got := r.pub.Collected.Load(); got != 2 {
				t.Fatalf("collected %d, want 2", got)
			}

			// A pass with nothing new to collect changes nothing.
			if err := r.collect(t); err != nil {
				t.Fatal(err)
			}
			if _, ok := r.lastFreed(); ok {
				t.Fatal("a pass that freed nothing sent a head")
			}
			if calls := mc.takeCalls(); fmt.Sprint(calls) != fmt.Sprint(recs[2:3]) {
				t.Fatalf("checker asked about %v, want %v", calls, recs[2:3])
			}

			// rec2 becomes garbage: the head passes it, the padding and
			// rec3, and stops at the durable tail, never looking past it.
			mc.set(recs[2], true)
			if err := r.collect(t); err != nil {
				t.Fatal(err)
			}
			r.expectHead(t, durable, 3)
			if calls := mc.takeCalls(); fmt.Sprint(calls) != fmt.Sprint(recs[2:4]) {
				t.Fatalf("checker asked about %v, want %v", calls, recs[2:4])
			}
			// Once rec4 is durable, pressure (not only Collect) reclaims it.
			r.pub.Durable.Store(end)
			r.c.Pressure <- struct{}{}
			if got := recv(t, r.freed, "freed after pressure"); got != end {
				t.Fatalf("freed %d after pressure, want %d", got, end)
			}
			if got := r.pub.Passes.Load(); got != 4 {
				t.Fatalf("passes %d, want 4", got)
			}
		})
	}
}

func TestCollectorNilCheckerSkipsPaddingOnly(t *testing.T) {
	r := newCollectorRig(t, nil, 0)
	recs, _ := layoutFrames(t, r, 0, []int{-512, -32, 5, -64})
	r.pub.Durable.Store(recs[0] + 64 + 64)
	r.start(t)
	if err := r.collect(t); err != nil {
		t.Fatal(err)
	}
	r.expectHead(t, recs[0], 2)
}

func TestCollectorStopsOnCheckerErrorAndCorruption(t *testing.T) {
	mc := &mapChecker{garbage: map[uint64]bool{}, fail: map[uint64]error{}}
	r := newCollectorRig(t, mc, 0)
	recs, end := layoutFrames(t, r, 0, []int{1, 2, 3, 4})
	r.pub.Durable.Store(end)
	for _, p := range recs {
		mc.set(p, true)
	}
	oops := errors.New("oops")
	mc.fail[recs[2]] = oops
	r.start(t)
	err := r.collect(t)
	if !errors.Is(err, oops) {
		t.Fatalf("collect: %v, want the checker's error", err)
	}
	// What was found garbage before the error is still reclaimed.
	r.expectHead(t, recs[2], 2)

	// A record whose bytes are damaged stops the pass with ErrCorrupt and
	// is never skipped.
	delete(mc.fail, recs[2])
	if _, err := r.dev.WriteAt([]byte{0xff}, r.geo.Phys(recs[3])+layout.HeaderLen); err != nil {
		t.Fatal(err)
	}
	err = r.collect(t)
	if !errors.Is(err, stages.ErrCorrupt) {
		t.Fatalf("collect over a damaged record: %v, want ErrCorrupt", err)
	}
	r.expectHead(t, recs[3], 3)
}

func TestCollectorFreesInSteps(t *testing.T) {
	// While writers wait for space, a long pass makes the head durable and
	// frees space every sixteenth of the area, so they do not wait for the
	// whole pass.
	r, end, got, _, _ := longPass(t, true)
	step := uint64(collectData / 16)
	if len(got) < 2 || got[len(got)-1] != end {
		t.Fatalf("freed %v, want several steps ending at %d", got, end)
	}
	prev := uint64(0)
	for _, v := range got {
		if v <= prev && prev != 0 || v-prev > step+1056 {
			t.Fatalf("freed %v: steps not increasing by about %d", got, step)
		}
		prev = v
	}
	if h := r.headOnDevice(t); h.Head != end {
		t.Fatalf("head on device %d, want %d", h.Head, end)
	}
}

// With nobody waiting for space, a long pass commits the head once, at its
// end: every head commit is a sync of its own.
func TestCollectorOneHeadCommitPerPass(t *testing.T) {
	r, end, got, commits, syncs := longPass(t, false)
	if len(got) != 1 || got[0] != end {
		t.Fatalf("freed %v, want [%d] alone", got, end)
	}
	if commits != 1 || syncs != 1 {
		t.Fatalf("%d head commits and %d syncs for one pass, want 1 and 1", commits, syncs)
	}
	if h := r.headOnDevice(t); h.Head != end {
		t.Fatalf("head on device %d, want %d", h.Head, end)
	}
}

// longPass lays out 40 garbage records of 1000 bytes (stride 1056: 42240
// bytes, more than two sixteenths of the area), runs one pass with
// Published.Full set to full, and returns the rig, the records' end, every
// head the pass freed in order, and the journal commits and syncs it made.
func longPass(t *testing.T, full bool) (r *collectorRig, end uint64, freed []uint64, commits, syncs uint64) {
	t.Helper()
	mc := &mapChecker{garbage: map[uint64]bool{}}
	r = newCollectorRig(t, mc, 0)
	r.pub.Full.Store(full)
	spec := make([]int, 40)
	for i := range spec {
		spec[i] = 1000
	}
	recs, end := layoutFrames(t, r, 0, spec)
	r.pub.Durable.Store(end)
	for _, p := range recs {
		mc.set(p, true)
	}
	r.start(t)
	before := r.j.Stats()
	if err := r.collect(t); err != nil {
		t.Fatal(err)
	}
	after := r.j.Stats()
	for {
		v, ok := r.lastFreedOne()
		if !ok {
			break
		}
		freed = append(freed, v)
	}
	return r, end, freed, after.Commits - before.Commits, after.Syncs - before.Syncs
}

func (r *collectorRig) lastFreedOne() (uint64, bool) {
	select {
	case v := <-r.freed:
		return v, true
	default:
		return 0, false
	}
}

func TestCollectorReportsFailedHeadCommit(t *testing.T) {
	geo := testGeo(collectData)
	mem := device.NewMem(geo.Size)
	f := device.NewFaulty(mem)
	j := newJournal(t, f, geo)
	mc := &mapChecker{garbage: map[uint64]bool{}}
	pub := new(stages.Published)
	freed := make(chan uint64, 4)
	c := stages.NewCollector(j, stages.FrameReader{Dev: f, Geo: geo}, mc, testFormatID, time.Hour, 1, 0, freed, pub)
	var mu sync.Mutex
	var fails []error
	c.OnFail = func(err error) {
		mu.Lock()
		fails = append(fails, err)
		mu.Unlock()
	}
	p := putRecord(t, mem, geo, 0, 1, payload(10, 1))
	pub.Durable.Store(p)
	mc.set(0, true)
	runStage(t, c.Run)
	f.Inject(device.Fault{Op: device.OpSync, N: f.Count(device.OpSync) + 1})
	r := &collectorRig{c: c}
	err := r.collect(t)
	if err == nil || !errors.Is(err, wal.ErrFailed) && !device.IsInjected(err) {
		t.Fatalf("collect with a failing journal: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(fails) != 1 || !errors.Is(fails[0], err) && fails[0].Error() != err.Error() {
		t.Fatalf("OnFail calls %v, want one with %v", fails, err)
	}
	if pub.Head.Load() != 0 || len(freed) != 0 {
		t.Fatalf("head %d, freed %d after a failed commit: nothing may be freed", pub.Head.Load(), len(freed))
	}
}
