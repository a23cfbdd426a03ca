package pipeline_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/internal/testhooks"
	"github.com/ringlog/ringlog/pipeline"
)

// hangGuard bounds every wait in these tests: an operation that takes
// longer is reported as hung. Nothing here sleeps to synchronise.
const hangGuard = 20 * time.Second

// testT is what these helpers need of a test: *testing.T and *rapid.T both
// have it.
type testT interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// guardCtx is a context for operations that must succeed: it only ends if
// the operation hangs.
func guardCtx(t testT) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	t.Cleanup(cancel)
	return ctx
}

// formatOpen formats dev with cfg and opens the log, closing it at cleanup
// if the test has not.
func formatOpen(t testT, dev device.Device, cfg pipeline.Config) *pipeline.Log {
	t.Helper()
	if err := pipeline.Format(dev, cfg); err != nil {
		t.Fatalf("Format: %v", err)
	}
	return mustOpen(t, dev, cfg)
}

func mustOpen(t testT, dev device.Device, cfg pipeline.Config) *pipeline.Log {
	t.Helper()
	l, err := pipeline.Open(dev, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// randBytes returns n bytes from a PRNG seeded with seed.
func randBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	p := make([]byte, n)
	for i := 0; i < n; i += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], r.Uint64())
		copy(p[i:], w[:])
	}
	return p
}

// idPayload is a payload of n >= 8 bytes that carries id in its first 8
// bytes, the rest derived from id: a payload names the append it came from.
func idPayload(id uint64, n int) []byte {
	p := randBytes(n, id)
	binary.LittleEndian.PutUint64(p, id)
	return p
}

// payloadID returns the id of an idPayload and whether p is one.
func payloadID(p []byte) (uint64, bool) {
	if len(p) < 8 {
		return 0, false
	}
	id := binary.LittleEndian.Uint64(p)
	return id, bytes.Equal(p, idPayload(id, len(p)))
}

// setChecker is a GarbageChecker that calls garbage the positions in its
// set (or everything, with all), and signals every call on calls: a pass
// of the collector over a live record always calls it at least once.
type setChecker struct {
	mu      sync.Mutex
	garbage map[pipeline.Position]bool
	all     bool
	calls   chan struct{}
}

func newSetChecker() *setChecker {
	return &setChecker{garbage: map[pipeline.Position]bool{}, calls: make(chan struct{}, 1)}
}

func (c *setChecker) IsGarbage(pos pipeline.Position, _ []byte) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case c.calls <- struct{}{}:
	default:
	}
	return c.all || c.garbage[pos], nil
}

func (c *setChecker) mark(ps ...pipeline.Position) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range ps {
		c.garbage[p] = true
	}
}

func (c *setChecker) setAll(v bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.all = v
}

// appendResult is the outcome of an Append run in a goroutine.
type appendResult struct {
	pos pipeline.Position
	err error
}

func goAppend(ctx context.Context, l *pipeline.Log, p []byte) <-chan appendResult {
	ch := make(chan appendResult, 1)
	go func() {
		pos, err := l.Append(ctx, p)
		ch <- appendResult{pos, err}
	}()
	return ch
}

// waitParked returns once a request has parked on a full log since the
// Parked counter was before. A parked request makes the allocator ask the
// collector for a pass, and a pass over a live record calls the checker:
// each call is a moment to look at the counter again, so this never polls.
// The log must hold a live record at its head. If done delivers first, the
// request ended without parking, which fails the test.
func waitParked[T any](t testT, l *pipeline.Log, c *setChecker, before uint64, done <-chan T) {
	t.Helper()
	waitParkedOn(t, l, c.calls, before, done)
}

// waitParkedOn is waitParked for any checker that signals its calls.
func waitParkedOn[T any](t testT, l *pipeline.Log, calls <-chan struct{}, before uint64, done <-chan T) {
	t.Helper()
	timeout := time.After(hangGuard)
	for l.Stats().Parked == before {
		select {
		case <-calls:
		case v := <-done:
			t.Fatalf("request ended before parking: %+v", v)
		case <-timeout:
			t.Fatalf("request never parked")
		}
	}
}

// checkStats asserts the invariants of a quiescent log's Stats.
func checkStats(t testT, l *pipeline.Log) pipeline.Stats {
	t.Helper()
	s := l.Stats()
	if !(s.Head <= s.Durable && s.Durable <= s.Tail) {
		t.Fatalf("stats: head %d, durable %d, tail %d out of order", s.Head, s.Durable, s.Tail)
	}
	if s.Used != int64(s.Tail-s.Head) || s.Used+s.Free != s.Capacity || s.Used > s.Capacity {
		t.Fatalf("stats: used %d free %d capacity %d (tail-head %d)", s.Used, s.Free, s.Capacity, s.Tail-s.Head)
	}
	return s
}

// scanAll returns the positions and payloads Scan yields.
func scanAll(t testT, l *pipeline.Log) ([]pipeline.Position, [][]byte) {
	t.Helper()
	var ps []pipeline.Position
	var bs [][]byte
	if err := l.Scan(func(pos pipeline.Position, p []byte) error {
		ps = append(ps, pos)
		bs = append(bs, append([]byte(nil), p...))
		return nil
	}); err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return ps, bs
}

// testBS is the block size of device.Mem and device.Crash.
const testBS = 512

func roundUp(n, a uint64) uint64 { return (n + a - 1) / a * a }

// strideOf is the bytes an append (or a reservation) of n bytes takes in
// the data area, padding excluded.
func strideOf(reserve bool, n int) uint64 {
	if reserve {
		return roundUp(testBS+uint64(n), testBS)
	}
	return roundUp(32+uint64(n), 32)
}

// placeAt is where the allocator places a request when the tail is at
// tail: reservations start on a block, and no frame straddles the end of
// the area.
func placeAt(tail, size uint64, reserve bool, n int) uint64 {
	pos := tail
	if reserve {
		pos = roundUp(pos, testBS)
	}
	if pos%size+strideOf(reserve, n) > size {
		pos += size - pos%size
	}
	return pos
}

// fitsAt reports whether such a request fits with the head at head: the
// writer rewrites the whole block the new tail ends in, so that block must
// be free too.
func fitsAt(head, tail, size uint64, reserve bool, n int) bool {
	pos := placeAt(tail, size, reserve, n)
	return roundUp(pos+strideOf(reserve, n), testBS)-head <= size
}

func fitsNow(s pipeline.Stats, reserve bool, n int) bool {
	return fitsAt(uint64(s.Head), uint64(s.Tail), uint64(s.Capacity), reserve, n)
}

// exactTail has every log opened until the returned function is called (or
// the test ends) write a tail record with each group commit, instead of a
// bound ahead of the tail (testhooks.ExactTail).
func exactTail(t *testing.T) func() {
	testhooks.ExactTail.Store(true)
	restore := func() { testhooks.ExactTail.Store(false) }
	t.Cleanup(restore)
	return restore
}

// landedImage is the image of dev in which every write since its last sync
// landed whole.
func landedImage(dev *device.Crash) []byte {
	landed := make([]int, len(dev.Choices()))
	for i := range landed {
		landed[i] = 1
	}
	return dev.ImageFor(landed)
}
