package pipeline_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/pipeline"
)

// crashWorld remembers everything a history did to a log, to judge what a
// crash image may and must contain.
type crashWorld struct {
	mu      sync.Mutex
	nextID  uint64
	tried   map[uint64][]byte            // every payload appended or reserved, by id
	never   map[uint64]bool              // ended ErrClosed, then truncated by a reopen: must never appear
	acked   map[uint64]pipeline.Position // Append or Commit returned nil
	garbage map[pipeline.Position]bool   // told garbage: may disappear
}

func newCrashWorld() *crashWorld {
	return &crashWorld{tried: map[uint64][]byte{}, never: map[uint64]bool{}, acked: map[uint64]pipeline.Position{}, garbage: map[pipeline.Position]bool{}}
}

func (w *crashWorld) clone() *crashWorld {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := &crashWorld{nextID: w.nextID, tried: map[uint64][]byte{}, never: map[uint64]bool{}, acked: map[uint64]pipeline.Position{}, garbage: map[pipeline.Position]bool{}}
	for k, v := range w.tried {
		c.tried[k] = v
	}
	for k, v := range w.never {
		c.never[k] = v
	}
	for k, v := range w.acked {
		c.acked[k] = v
	}
	for k, v := range w.garbage {
		c.garbage[k] = v
	}
	return c
}

func (w *crashWorld) payload(n int) (uint64, []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.nextID++
	p := idPayload(w.nextID, n)
	w.tried[w.nextID] = p
	return w.nextID, p
}

func (w *crashWorld) ack(id uint64, pos pipeline.Position) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.acked[id] = pos
}

// markOldest tells the checker that all acknowledged records but the
// newest keep are garbage.
func (w *crashWorld) markOldest(keep int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var ps []pipeline.Position
	for _, p := range w.acked {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	for i := 0; i < len(ps)-keep; i++ {
		w.garbage[ps[i]] = true
	}
}

func (w *crashWorld) checker() pipeline.GarbageChecker {
	return pipeline.GarbageFunc(func(pos pipeline.Position, p []byte) (bool, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.garbage[pos], nil
	})
}

// crashCfg is the config of every crash test log: the collector runs when
// asked or under pressure, never on a timer, and group commits overlap
// (the model and fuzz tests draw how many).
func crashCfg(w *crashWorld) pipeline.Config {
	return pipeline.Config{Checker: w.checker(), CollectInterval: time.Hour, SyncsInFlight: 3}
}

// okOrFailed checks an operation's error during a history: nil, or, once the
// power is cut, ErrFailed.
func okOrFailed(t *testing.T, dev *device.Crash, what string, err error) bool {
	t.Helper()
	if err == nil {
		return true
	}
	if !errors.Is(err, pipeline.ErrFailed) || !dev.PowerCut() {
		t.Errorf("%s: %v (power cut: %v), want nil or ErrFailed after the cut", what, err, dev.PowerCut())
	}
	return false
}

// makeRoom collects all but the newest acknowledged records when the log
// is getting full, so that a history never waits for space.
func (w *crashWorld) makeRoom(t *testing.T, dev *device.Crash, l *pipeline.Log) {
	if l.Stats().Free >= 20<<10 {
		return
	}
	w.markOldest(6)
	if err := l.Collect(guardCtx(t)); err != nil && !dev.PowerCut() {
		t.Errorf("Collect before the cut: %v", err)
	}
}

// history runs appenders, a reserver and a collector concurrently on l.
func (w *crashWorld) history(t *testing.T, dev *device.Crash, l *pipeline.Log, seed uint64, appenders, perAppender int) {
	ctx := guardCtx(t)
	var wg sync.WaitGroup
	for g := range appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perAppender {
				w.makeRoom(t, dev, l)
				id, p := w.payload(8 + int((seed+uint64(g*31+i*17))*2654435761%2000))
				pos, err := l.Append(ctx, p)
				if !okOrFailed(t, dev, "Append", err) {
					return
				}
				w.ack(id, pos)
				// Collect again now that this record can be marked: the
				// others may all be parked by now, waiting for that.
				w.makeRoom(t, dev, l)
			}
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range 3 {
			n := 1 + int((seed+uint64(i))*40503%1500)
			w.makeRoom(t, dev, l)
			r, err := l.Reserve(ctx, n)
			if !okOrFailed(t, dev, "Reserve", err) {
				return
			}
			id, p := w.payload(max(n, 8))
			dev.WriteAt(p[:n], r.Offset()) // fails after the cut: Commit then fails too
			if n < 8 || (seed+uint64(i))%3 == 0 {
				okOrFailed(t, dev, "Discard", r.Discard(ctx))
				continue
			}
			if okOrFailed(t, dev, "Commit", r.Commit(ctx)) {
				w.ack(id, r.Position())
				w.makeRoom(t, dev, l)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for range 2 {
			w.markOldest(6)
			if err := l.Collect(ctx); err != nil && !dev.PowerCut() {
				t.Errorf("Collect before the cut: %v", err)
			}
		}
	}()
	wg.Wait()
}

// scanResult is what a recovered log holds.
type scanResult struct {
	stats pipeline.Stats
	pos   []pipeline.Position
	data  [][]byte
}

func (s scanResult) equal(o scanResult) bool {
	if s.stats.Head != o.stats.Head || s.stats.Tail != o.stats.Tail || len(s.pos) != len(o.pos) {
		return false
	}
	for i := range s.pos {
		if s.pos[i] != o.pos[i] || !bytes.Equal(s.data[i], o.data[i]) {
			return false
		}
	}
	return true
}

// checkRecovered opens dev and checks every promise a crash must keep.
func (w *crashWorld) checkRecovered(t *testing.T, dev device.Device, what string) scanResult {
	t.Helper()
	l, err := pipeline.Open(dev, pipeline.Config{CollectInterval: time.Hour})
	if err != nil {
		t.Fatalf("%s: Open of a crash image: %v", what, err)
	}
	defer l.Close()
	var res scanResult
	res.stats = checkStats(t, l)
	if res.stats.Durable != res.stats.Tail {
		t.Fatalf("%s: recovered log has durable %d != tail %d", what, res.stats.Durable, res.stats.Tail)
	}
	res.pos, res.data = scanAll(t, l)
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := map[uint64]pipeline.Position{}
	for i, pos := range res.pos {
		if i > 0 && pos <= res.pos[i-1] {
			t.Fatalf("%s: scan out of order: %d after %d", what, pos, res.pos[i-1])
		}
		if pos < res.stats.Head || pos >= res.stats.Durable {
			t.Fatalf("%s: scan yields %d outside [head %d, durable %d)", what, pos, res.stats.Head, res.stats.Durable)
		}
		id, ok := payloadID(res.data[i])
		if !ok || !bytes.Equal(w.tried[id], res.data[i]) {
			t.Fatalf("%s: record at %d (%d bytes) was never appended", what, pos, len(res.data[i]))
		}
		if w.never[id] {
			t.Fatalf("%s: record %d at %d reappeared: it was truncated by an earlier recovery", what, id, pos)
		}
		if _, dup := seen[id]; dup {
			t.Fatalf("%s: record %d appears twice", what, id)
		}
		seen[id] = pos
		if ap, ok := w.acked[id]; ok && ap != pos {
			t.Fatalf("%s: record %d acknowledged at %d found at %d", what, id, ap, pos)
		}
	}
	for id, pos := range w.acked {
		if w.garbage[pos] {
			if pos < res.stats.Head {
				if _, err := l.Read(pos); !errors.Is(err, pipeline.ErrCollected) {
					t.Fatalf("%s: Read(%d) below the head %d: %v, want ErrCollected", what, pos, res.stats.Head, err)
				}
			}
			continue
		}
		if pos < res.stats.Head {
			t.Fatalf("%s: acknowledged live record %d at %d is below the head %d", what, id, pos, res.stats.Head)
		}
		if _, ok := seen[id]; !ok {
			t.Fatalf("%s: acknowledged record %d at %d lost (head %d, tail %d)", what, id, pos, res.stats.Head, res.stats.Tail)
		}
		if got, err := l.Read(pos); err != nil || !bytes.Equal(got, w.tried[id]) {
			t.Fatalf("%s: Read(%d) of acknowledged record %d: %v", what, pos, id, err)
		}
	}
	return res
}

// checkImage checks a crash image: twice from the same bytes (the same
// result), and once more after the first recovery (recovery is stable).
func (w *crashWorld) checkImage(t *testing.T, img []byte, what string) scanResult {
	t.Helper()
	d1 := device.NewCrashFrom(slices.Clone(img))
	r1 := w.checkRecovered(t, d1, what)
	r2 := w.checkRecovered(t, device.NewCrashFrom(slices.Clone(img)), what+" (same image again)")
	if !r1.equal(r2) {
		t.Fatalf("%s: the same image recovers differently: %d records [%d, %d) then %d records [%d, %d)",
			what, len(r1.pos), r1.stats.Head, r1.stats.Tail, len(r2.pos), r2.stats.Head, r2.stats.Tail)
	}
	r3 := w.checkRecovered(t, d1, what+" (reopened)")
	if !r1.equal(r3) {
		t.Fatalf("%s: reopening a recovered log changes it", what)
	}
	return r1
}

// images returns crash images of dev: all of them when there are few,
// else the two extremes and random ones.
func images(dev *device.Crash, rng *rand.Rand, random, maxAll int) [][]byte {
	choices := dev.Choices()
	total := 1
	for _, c := range choices {
		total *= c
		if total > maxAll {
			break
		}
	}
	var out [][]byte
	if total <= maxAll {
		dev.Enumerate(func(_ []int, img []byte) bool {
			out = append(out, img)
			return true
		})
		return out
	}
	out = append(out, dev.DurableImage(), landedImage(dev))
	for range random {
		out = append(out, dev.Image(rng))
	}
	return out
}

// crashBase builds the device every sweep starts from: a log part-way
// through its second lap, with collected records behind it and, starting
// exactly at its durable tail, frames of an earlier incarnation: appends
// whose data was written but whose journal write failed, so they were never
// acknowledged and recovery truncated them. Those frames have valid
// checksums and the very positions the next incarnation writes at; only
// their epoch tells them apart.
func crashBase(t *testing.T) (*crashWorld, []byte) {
	t.Helper()
	// Every group writes its tail record, so the failing write below is
	// the journal's; the logs the tests open from the base set bounds ahead.
	defer exactTail(t)()
	w := newCrashWorld()
	dev := device.NewCrash(128 << 10)
	cfg := crashCfg(w)
	if err := pipeline.Format(dev, cfg); err != nil {
		t.Fatal(err)
	}
	f := device.NewFaulty(dev)
	l := mustOpen(t, f, cfg)
	ctx := guardCtx(t)
	for i := 0; l.Stats().Tail < 70<<10; i++ {
		id, p := w.payload(8 + i*53%1700)
		pos, err := l.Append(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		w.ack(id, pos)
		if i%10 == 9 {
			w.markOldest(8)
			if err := l.Collect(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	tail := l.Stats().Tail
	// The log is idle: the next write is the data, the one after it the
	// journal's batch, which fails.
	f.Inject(device.Fault{Op: device.OpWrite, N: f.Count(device.OpWrite) + 2})
	var stale []uint64
	for i := range 3 {
		id, p := w.payload(300 + i*200)
		stale = append(stale, id)
		if _, err := l.Append(ctx, p); !errors.Is(err, pipeline.ErrFailed) {
			t.Fatalf("append with a failed journal write: %v, want ErrFailed", err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, dev, cfg)
	if s := l.Stats(); s.Tail != tail || s.TruncatedBytes != 0 {
		t.Fatalf("recovered tail %d (truncated %d), want %d", s.Tail, s.TruncatedBytes, tail)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, id := range stale {
		w.never[id] = true
	}
	img := landedImage(dev)
	if !staleFrameAt(img, w.tried[stale[0]]) {
		t.Fatal("the stale frame is not on the device: the base does not test what it should")
	}
	return w, img
}

// staleFrameAt reports whether img holds payload p somewhere.
func staleFrameAt(img, p []byte) bool { return bytes.Contains(img, p) }

// sweepOne runs the history on a copy of base with the power cut after n
// operations, and checks the images that leaves. It returns how many
// operations the history made.
func sweepOne(t *testing.T, base *crashWorld, img []byte, n int64, seed uint64, nImages int, crashOpen bool) int64 {
	w := base.clone()
	dev := device.NewCrashFrom(slices.Clone(img))
	l, err := pipeline.Open(dev, crashCfg(w))
	if err != nil {
		t.Fatal(err)
	}
	start := dev.Ops()
	before := l.Stats()
	if n >= 0 {
		dev.CutAfter(n)
	}
	w.history(t, dev, l, seed, 3, 5)
	if after := l.Stats(); n < 0 && after.Tail/pipeline.Position(after.Capacity) == before.Tail/pipeline.Position(before.Capacity) {
		t.Fatalf("the history does not wrap: tail from %d to %d, capacity %d", before.Tail, after.Tail, after.Capacity)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close after the cut: %v", err)
	}
	ops := dev.Ops() - start
	if t.Failed() {
		t.FailNow()
	}
	rng := rand.New(rand.NewPCG(seed, uint64(n)))
	imgs := images(dev, rng, nImages, 24)
	for i, im := range imgs {
		what := fmt.Sprintf("cut after %d ops, image %d/%d", n, i, len(imgs))
		w.checkImage(t, im, what)
		if crashOpen && i == len(imgs)-1 {
			crashDuringOpen(t, w, im, rng, what)
		}
	}
	return ops
}

// crashDuringOpen cuts the power at every point of recovery of img, then
// checks the images that leaves.
func crashDuringOpen(t *testing.T, w *crashWorld, img []byte, rng *rand.Rand, what string) {
	t.Helper()
	d := device.NewCrashFrom(slices.Clone(img))
	l, err := pipeline.Open(d, pipeline.Config{CollectInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	total := d.Ops()
	for k := int64(0); k <= total; k++ {
		d := device.NewCrashFrom(slices.Clone(img))
		d.CutAfter(k)
		if l, err := pipeline.Open(d, pipeline.Config{CollectInterval: time.Hour}); err == nil {
			l.Close()
		} else if !errors.Is(err, device.ErrPowerCut) {
			t.Fatalf("%s: Open cut after %d ops: %v, want a power-cut error", what, k, err)
		}
		for i, im := range images(d, rng, 2, 8) {
			w.checkImage(t, im, fmt.Sprintf("%s, recovery cut after %d ops, image %d", what, k, i))
		}
	}
}

// TestCrashSweep cuts the power after every operation of a concurrent
// history of appends, reservations and collections (on a log that wraps
// and that holds frames of an earlier incarnation past its tail), and
// checks every image the cut can leave, or a sample when there are many,
// and crashes during recovery of some of them.
func TestCrashSweep(t *testing.T) {
	base, img := crashBase(t)
	total := sweepOne(t, base, img, -1, 1, 0, false)
	t.Logf("history of %d operations", total)
	if total < 20 {
		t.Fatalf("history of only %d operations", total)
	}
	for n := int64(0); n <= total+5; n++ {
		sweepOne(t, base, img, n, uint64(n), 3, n%7 == 3)
	}
}

// TestCrashRandomHistories runs longer histories that wrap the log several
// times and cuts the power at a random point.
func TestCrashRandomHistories(t *testing.T) {
	rng := rand.New(rand.NewPCG(42, 43))
	for iter := range 40 {
		w := newCrashWorld()
		dev := device.NewCrash(96 << 10)
		cfg := crashCfg(w)
		if err := pipeline.Format(dev, cfg); err != nil {
			t.Fatal(err)
		}
		l := mustOpen(t, dev, cfg)
		// Warm up a random stretch, then cut somewhere in the next part.
		w.history(t, dev, l, uint64(iter), 4, 2+rng.IntN(10))
		dev.CutAfter(rng.Int64N(200))
		w.history(t, dev, l, uint64(iter)+1000, 4, 20)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if t.Failed() {
			t.FailNow()
		}
		var lastTail pipeline.Position
		for i, im := range images(dev, rng, 4, 16) {
			r := w.checkImage(t, im, fmt.Sprintf("iteration %d image %d", iter, i))
			lastTail = r.stats.Tail
		}
		t.Logf("iteration %d: tail %d", iter, lastTail)
	}
}

// TestCrashStaleFrameAtTail is the case the epoch in every frame exists
// for. The base holds, at the recovered tail, a frame of an earlier
// incarnation with a valid checksum and position. The next incarnation
// appends a longer record there; the power is cut around its group commit;
// every image is checked. In the image where the journal's new tail landed
// but the record's bytes did not, only the epoch tells recovery that the
// frame it finds at the tail is stale.
func TestCrashStaleFrameAtTail(t *testing.T) {
	base, img := crashBase(t)
	for k := int64(0); k <= 6; k++ {
		w := base.clone()
		dev := device.NewCrashFrom(slices.Clone(img))
		l, err := pipeline.Open(dev, crashCfg(w))
		if err != nil {
			t.Fatal(err)
		}
		dev.CutAfter(k)
		id, p := w.payload(1500) // a stride longer than the stale frame's
		pos, err := l.Append(guardCtx(t), p)
		if okOrFailed(t, dev, "Append", err) {
			w.ack(id, pos)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		total := 1
		for _, c := range dev.Choices() {
			total *= c
		}
		if total > 1<<10 {
			t.Fatalf("cut after %d: %d images, too many to enumerate (%v)", k, total, dev.Choices())
		}
		i := 0
		dev.Enumerate(func(_ []int, im []byte) bool {
			w.checkImage(t, im, fmt.Sprintf("cut after %d ops, image %d/%d", k, i, total))
			i++
			return true
		})
	}
}
