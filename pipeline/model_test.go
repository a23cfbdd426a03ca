package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/pipeline"
)

// The model: a list of frames (records and padding) from the head to the
// tail, placed exactly as the design says — in arrival order, reservations
// on a block, padding to the end of the lap when a frame does not fit
// there, the whole block the tail ends in counting as used — and a set of
// positions the checker calls garbage.

const (
	modelDev     = 96 << 10
	modelJournal = 24 << 10
	modelDataOff = 8192 + modelJournal + 16384
	modelData    = modelDev - modelDataOff // 48 KiB: a few KiB records wrap it often
)

type mFrame struct {
	pos, stride uint64
	pad         bool
	data        []byte
}

type checkerCall struct {
	pos   pipeline.Position
	data  []byte
	byPos bool // IsGarbageAt: no payload
}

type logModel struct {
	dev   *device.Mem
	cfg   pipeline.Config
	l     *pipeline.Log
	epoch uint32

	frames    []mFrame // from the model's head to its tail
	head      uint64   // a lower bound of the log's head (see Check)
	tail      uint64
	collected map[uint64][]byte // records below the head

	cov *modelCoverage

	mu      sync.Mutex // the checker runs on the collector's goroutine
	garbage map[uint64]bool
	calls   []checkerCall
	signal  chan struct{}
}

func (m *logModel) IsGarbage(pos pipeline.Position, p []byte) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, checkerCall{pos: pos, data: append([]byte(nil), p...)})
	select {
	case m.signal <- struct{}{}:
	default:
	}
	return m.garbage[uint64(pos)], nil
}

// modelByPosition is the model as a PositionChecker: the collector then
// learns frame sizes from the allocator's runs (checked against the device:
// testhooks.CheckRuns) and reads no payloads.
type modelByPosition struct{ *logModel }

func (m modelByPosition) IsGarbageAt(pos pipeline.Position) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, checkerCall{pos: pos, byPos: true})
	select {
	case m.signal <- struct{}{}:
	default:
	}
	return m.garbage[uint64(pos)], nil
}

func (m *logModel) isGarbage(pos uint64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.garbage[pos]
}

// collectable is where a collector pass would leave the head: past the
// leading padding and garbage, at the first live record or the tail.
func (m *logModel) collectable() uint64 {
	h := m.head
	for _, f := range m.frames {
		if !f.pad && !m.isGarbage(f.pos) {
			break
		}
		h = f.pos + f.stride
	}
	return h
}

func (m *logModel) setHead(h uint64) {
	i := 0
	for i < len(m.frames) && m.frames[i].pos < h {
		if !m.frames[i].pad {
			m.collected[m.frames[i].pos] = m.frames[i].data
		}
		i++
	}
	m.frames = m.frames[i:]
	m.head = h
}

// add records a frame the log placed at pos, with the padding before it.
func (m *logModel) add(t *rapid.T, pos uint64, reserve bool, data []byte, discarded bool) {
	want := placeAt(m.tail, modelData, reserve, len(data))
	if pos != want {
		t.Fatalf("placed at %d, the model places it at %d (tail %d, reserve %v, %d bytes)", pos, want, m.tail, reserve, len(data))
	}
	if pos > m.tail {
		m.frames = append(m.frames, mFrame{pos: m.tail, stride: pos - m.tail, pad: true})
	}
	stride := strideOf(reserve, len(data))
	m.frames = append(m.frames, mFrame{pos: pos, stride: stride, pad: discarded, data: data})
	m.tail = pos + stride
}

func (m *logModel) records() []mFrame {
	var out []mFrame
	for _, f := range m.frames {
		if !f.pad {
			out = append(out, f)
		}
	}
	return out
}

func (m *logModel) liveRecords() []mFrame {
	var out []mFrame
	for _, f := range m.records() {
		if !m.isGarbage(f.pos) {
			out = append(out, f)
		}
	}
	return out
}

func (m *logModel) frameAt(pos uint64) (mFrame, bool) {
	i := sort.Search(len(m.frames), func(i int) bool { return m.frames[i].pos >= pos })
	if i < len(m.frames) && m.frames[i].pos == pos {
		return m.frames[i], true
	}
	return mFrame{}, false
}

func drawData(t *rapid.T, label string, minN, maxN int) []byte {
	n := rapid.IntRange(minN, maxN).Draw(t, label+" size")
	return randBytes(n, rapid.Uint64().Draw(t, label+" seed"))
}

// expectNoSpace runs op, which must park on the full log; once it has, it
// is cancelled and must end with ErrNoSpace and context.Canceled.
func (m *logModel) expectNoSpace(t *rapid.T, what string, op func(ctx context.Context) error) {
	before := m.l.Stats().Parked
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- op(ctx) }()
	waitParkedOn(t, m.l, m.signal, before, done)
	cancel()
	err := <-done
	if !errors.Is(err, pipeline.ErrNoSpace) || !errors.Is(err, context.Canceled) {
		t.Fatalf("%s on a full log: %v, want ErrNoSpace and Canceled", what, err)
	}
	m.cov.add(func(c *modelCoverage) { c.noSpace++ })
}

// room says whether a request fits now (with the head the model knows) or
// after a collector pass, which a parked request triggers.
func (m *logModel) room(reserve bool, n int) bool {
	return fitsAt(m.collectable(), m.tail, modelData, reserve, n)
}

func (m *logModel) doAppend(t *rapid.T, data []byte) {
	if !m.room(false, len(data)) {
		m.expectNoSpace(t, "Append", func(ctx context.Context) error {
			_, err := m.l.Append(ctx, data)
			return err
		})
		return
	}
	pos, err := m.l.Append(guardCtx(t), data)
	if err != nil {
		t.Fatalf("Append(%d bytes): %v", len(data), err)
	}
	m.add(t, uint64(pos), false, data, false)
}

func (m *logModel) Append(t *rapid.T) {
	max := 3000
	if rapid.IntRange(0, 3).Draw(t, "small") == 0 {
		max = 40
	}
	m.doAppend(t, drawData(t, "append", 0, max))
}

func (m *logModel) Reserve(t *rapid.T) {
	data := drawData(t, "reserve", 1, 3000)
	discard := rapid.IntRange(0, 3).Draw(t, "discard") == 0
	if !m.room(true, len(data)) {
		m.expectNoSpace(t, "Reserve", func(ctx context.Context) error {
			r, err := m.l.Reserve(ctx, len(data))
			if err == nil {
				r.Discard(context.Background())
				return fmt.Errorf("reserved at %d", r.Position())
			}
			return err
		})
		return
	}
	r, err := m.l.Reserve(guardCtx(t), len(data))
	if err != nil {
		t.Fatalf("Reserve(%d): %v", len(data), err)
	}
	m.fillReservation(t, r, data)
	if discard {
		err = r.Discard(guardCtx(t))
	} else {
		err = r.Commit(guardCtx(t))
	}
	if err != nil {
		t.Fatalf("Commit/Discard: %v", err)
	}
	if err := r.Commit(guardCtx(t)); !errors.Is(err, pipeline.ErrReservationDone) {
		t.Fatalf("second Commit: %v, want ErrReservationDone", err)
	}
	m.add(t, uint64(r.Position()), true, data, discard)
}

func (m *logModel) fillReservation(t *rapid.T, r *pipeline.Reservation, data []byte) {
	pos := uint64(r.Position())
	if want := int64(modelDataOff + pos%modelData + testBS); r.Offset() != want || r.Len() != len(data) {
		t.Fatalf("reservation at %d: offset %d len %d, want %d and %d", pos, r.Offset(), r.Len(), want, len(data))
	}
	if _, err := m.dev.WriteAt(data, r.Offset()); err != nil {
		t.Fatal(err)
	}
}

// makeRoom collects all but the newest keep live records.
func (m *logModel) makeRoom(t *rapid.T, keep int) {
	live := m.liveRecords()
	m.mu.Lock()
	for i := 0; i < len(live)-keep; i++ {
		m.garbage[live[i].pos] = true
	}
	m.mu.Unlock()
	m.collect(t)
}

func (m *logModel) collect(t *rapid.T) {
	if err := m.l.Collect(guardCtx(t)); err != nil {
		t.Fatalf("Collect: %v", err)
	}
	want := m.collectable()
	if got := uint64(m.l.Stats().Head); got != want {
		t.Fatalf("head %d after Collect, model says %d", got, want)
	}
	m.setHead(want)
}

// Batch reserves several records and appends others between them: the
// appends cannot become durable before the reservations before them, so
// they run in goroutines; then the reservations are committed (or
// discarded), each from its own goroutine, in a shuffled order.
func (m *logModel) Batch(t *rapid.T) {
	type op struct {
		reserve, discard bool
		data             []byte
		pos              uint64
		res              *pipeline.Reservation
		done             <-chan appendResult
	}
	k := rapid.IntRange(2, 6).Draw(t, "batch size")
	ops := make([]*op, k)
	need, biggest := uint64(0), uint64(0)
	for i := range ops {
		o := &op{reserve: i == 0 || rapid.Bool().Draw(t, "reserve")}
		if o.reserve {
			o.data = drawData(t, "batch reserve", 1, 2000)
			o.discard = rapid.IntRange(0, 3).Draw(t, "discard") == 0
		} else {
			o.data = drawData(t, "batch append", 0, 2000)
		}
		s := strideOf(o.reserve, len(o.data))
		need += s + testBS
		biggest = max(biggest, s)
		ops[i] = o
	}
	// Everything must fit without the collector, whatever order the
	// appends are placed in: the records, a block of alignment padding
	// each, and padding for one wrap.
	need += biggest + testBS
	if m.tail-m.head+need > modelData {
		m.makeRoom(t, 2)
		if m.tail-m.head+need > modelData {
			return
		}
	}
	ctx := guardCtx(t)
	var res []*op
	for _, o := range ops {
		if o.reserve {
			r, err := m.l.Reserve(ctx, len(o.data))
			if err != nil {
				t.Fatalf("Reserve in a batch: %v", err)
			}
			o.res, o.pos = r, uint64(r.Position())
			m.fillReservation(t, r, o.data)
			res = append(res, o)
			continue
		}
		o.done = goAppend(ctx, m.l, o.data)
	}
	order := rapid.Permutation(res).Draw(t, "commit order")
	errs := make(chan error, len(order))
	for _, o := range order {
		go func() {
			if o.discard {
				errs <- o.res.Discard(ctx)
			} else {
				errs <- o.res.Commit(ctx)
			}
		}()
	}
	for range order {
		if err := <-errs; err != nil {
			t.Fatalf("Commit/Discard in a batch: %v", err)
		}
	}
	for _, o := range ops {
		if o.reserve {
			continue
		}
		r := <-o.done
		if r.err != nil {
			t.Fatalf("Append in a batch: %v", r.err)
		}
		o.pos = uint64(r.pos)
	}
	m.cov.add(func(c *modelCoverage) { c.batches++ })
	sort.Slice(ops, func(i, j int) bool { return ops[i].pos < ops[j].pos })
	for _, o := range ops {
		m.add(t, o.pos, o.reserve, o.data, o.discard)
	}
}

func (m *logModel) Read(t *rapid.T) {
	var cands []uint64
	for _, f := range m.frames {
		cands = append(cands, f.pos)
	}
	for p := range m.collected {
		cands = append(cands, p)
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i] < cands[j] })
	var p uint64
	switch {
	case len(cands) > 0 && rapid.IntRange(0, 3).Draw(t, "exact") > 0:
		p = rapid.SampledFrom(cands).Draw(t, "frame")
	default:
		p = rapid.Uint64Range(0, m.tail+4096).Draw(t, "position")
	}
	got, err := m.l.Read(pipeline.Position(p))
	f, isFrame := m.frameAt(p)
	switch {
	case p < m.head:
		if !errors.Is(err, pipeline.ErrCollected) {
			t.Fatalf("Read(%d) below the head %d: %v, want ErrCollected", p, m.head, err)
		}
	case isFrame && !f.pad:
		if err == nil && bytes.Equal(got, f.data) {
			return
		}
		// A garbage record may be reclaimed by a pass under pressure.
		if m.isGarbage(p) && errors.Is(err, pipeline.ErrCollected) && uint64(m.l.Stats().Head) > p {
			return
		}
		t.Fatalf("Read(%d) of a record: %v (equal %v)", p, err, bytes.Equal(got, f.data))
	default:
		if errors.Is(err, pipeline.ErrNotFound) {
			return
		}
		if errors.Is(err, pipeline.ErrCollected) && uint64(m.l.Stats().Head) > p {
			return
		}
		t.Fatalf("Read(%d), not a record (head %d, tail %d): %v, want ErrNotFound", p, m.head, m.tail, err)
	}
}

func (m *logModel) Scan(t *rapid.T) {
	ps, bs := scanAll(t, m.l)
	recs := m.records()
	// The scan starts at the log's head, which may be past the model's
	// lower bound only over garbage.
	skip := 0
	for skip < len(recs) && (len(ps) == 0 || recs[skip].pos < uint64(ps[0])) {
		if !m.isGarbage(recs[skip].pos) {
			t.Fatalf("scan skipped live record %d (scan starts at %v)", recs[skip].pos, ps)
		}
		skip++
	}
	recs = recs[skip:]
	if len(ps) != len(recs) {
		t.Fatalf("scan yields %d records, model has %d", len(ps), len(recs))
	}
	for i := range ps {
		if uint64(ps[i]) != recs[i].pos || !bytes.Equal(bs[i], recs[i].data) {
			t.Fatalf("scan record %d at %d, model has %d (equal %v)", i, ps[i], recs[i].pos, bytes.Equal(bs[i], recs[i].data))
		}
	}
}

// Collect marks a random set of records garbage, always including a
// random-length prefix of the live ones, and collects.
func (m *logModel) Collect(t *rapid.T) {
	live := m.liveRecords()
	prefix := rapid.IntRange(0, len(live)).Draw(t, "garbage prefix")
	m.mu.Lock()
	for i, f := range live {
		if i < prefix || rapid.IntRange(0, 3).Draw(t, "garbage") == 0 {
			m.garbage[f.pos] = true
		}
	}
	m.mu.Unlock()
	m.collect(t)
}

// Churn appends enough to wrap the log, collecting whenever it is full.
func (m *logModel) Churn(t *rapid.T) {
	n := rapid.IntRange(5, 30).Draw(t, "churn")
	for i := range n {
		data := randBytes(1000+(i*977)%3000, uint64(i)+m.tail)
		if !m.room(false, len(data)) {
			m.makeRoom(t, 2)
		}
		m.doAppend(t, data)
	}
}

// Fill appends until the log is full of live records, then checks that an
// Append and a Reserve that do not fit park and end with ErrNoSpace.
func (m *logModel) Fill(t *rapid.T) {
	n := rapid.IntRange(500, 3000).Draw(t, "fill size")
	for i := 0; m.room(false, n); i++ {
		m.doAppend(t, randBytes(n, m.tail))
	}
	m.doAppend(t, randBytes(n, m.tail)) // does not fit: ErrNoSpace
	if r := rapid.IntRange(1, 3000).Draw(t, "fill reserve"); !m.room(true, r) {
		m.expectNoSpace(t, "Reserve", func(ctx context.Context) error {
			res, err := m.l.Reserve(ctx, r)
			if err == nil {
				res.Discard(context.Background())
				return fmt.Errorf("reserved at %d", res.Position())
			}
			return err
		})
	}
}

func (m *logModel) Reopen(t *rapid.T) {
	before := m.l.Stats()
	if err := m.l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := m.l.Close(); !errors.Is(err, pipeline.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := m.l.Append(context.Background(), []byte("x")); !errors.Is(err, pipeline.ErrClosed) {
		t.Fatalf("Append on a closed log: %v", err)
	}
	l, err := pipeline.Open(m.dev, m.cfg)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	m.l = l
	m.epoch++
	m.cov.add(func(c *modelCoverage) { c.reopened++ })
	s := m.l.Stats()
	// A pass the allocator asked for (the log is over 3/4 full) may run
	// between Stats and Close: the head may move as far as a pass can.
	if s.Tail != before.Tail || s.Durable != before.Durable || s.Epoch != before.Epoch+1 || s.TruncatedBytes != 0 ||
		s.Head < before.Head || uint64(s.Head) > m.collectable() {
		t.Fatalf("reopen: stats %+v, before %+v, a pass reaches %d", s, before, m.collectable())
	}
}

// Check holds after every action: the log is quiescent, so its tail is the
// model's, and its head lies between the model's lower bound and where a
// pass would leave it (passes also run under pressure, unasked).
func (m *logModel) Check(t *rapid.T) {
	s := checkStats(t, m.l)
	if uint64(s.Tail) != m.tail || s.Durable != s.Tail || s.Capacity != modelData || s.Epoch != m.epoch {
		t.Fatalf("stats %+v; model tail %d, epoch %d", s, m.tail, m.epoch)
	}
	h := uint64(s.Head)
	if hi := m.collectable(); h < m.head || h > hi {
		t.Fatalf("head %d outside [%d, %d]", h, m.head, hi)
	}
	m.setHead(h)
	m.mu.Lock()
	calls := m.calls
	m.calls = nil
	m.mu.Unlock()
	for _, c := range calls {
		data, ok := m.collected[uint64(c.pos)]
		if !ok {
			f, isFrame := m.frameAt(uint64(c.pos))
			if !isFrame || f.pad {
				t.Fatalf("checker asked about %d, which is not a record", c.pos)
			}
			data = f.data
		}
		if !c.byPos && !bytes.Equal(data, c.data) {
			t.Fatalf("checker got a wrong payload for %d", c.pos)
		}
	}
}

// modelCoverage counts, over all the cases of TestLogModel, the situations
// the model must have been through for the test to mean something.
type modelCoverage struct {
	mu                                       sync.Mutex
	wrapped, noSpace, reopened, batches, all int
}

func (c *modelCoverage) add(f func(*modelCoverage)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(c)
}

func TestLogModel(t *testing.T) {
	cov := &modelCoverage{}
	defer func() {
		t.Logf("%d cases: %d wrapped, %d hit a full log, %d reopened, %d ran batches", cov.all, cov.wrapped, cov.noSpace, cov.reopened, cov.batches)
		if !t.Failed() && (cov.wrapped == 0 || cov.noSpace == 0 || cov.reopened == 0 || cov.batches == 0) {
			t.Errorf("the cases never covered one of: wrap, full log, reopen, batch")
		}
	}()
	rapid.Check(t, func(t *rapid.T) {
		m := &logModel{
			dev: device.NewMem(modelDev), collected: map[uint64][]byte{},
			garbage: map[uint64]bool{}, signal: make(chan struct{}, 1), epoch: 2,
		}
		m.cfg = pipeline.Config{JournalSize: modelJournal, Checker: m, CollectInterval: time.Hour,
			SyncsInFlight: rapid.IntRange(0, 3).Draw(t, "syncs in flight")}
		if rapid.Bool().Draw(t, "position checker") {
			m.cfg.Checker = modelByPosition{m}
		}
		if err := pipeline.Format(m.dev, m.cfg); err != nil {
			t.Fatal(err)
		}
		l, err := pipeline.Open(m.dev, m.cfg)
		if err != nil {
			t.Fatal(err)
		}
		m.l = l
		m.cov = cov
		defer func() { m.l.Close() }()
		defer cov.add(func(c *modelCoverage) {
			c.all++
			if m.tail > modelData {
				c.wrapped++
			}
		})
		t.Repeat(map[string]func(*rapid.T){
			"Append":  m.Append,
			"Reserve": m.Reserve,
			"Batch":   m.Batch,
			"Read":    m.Read,
			"Scan":    m.Scan,
			"Collect": m.Collect,
			"Churn":   m.Churn,
			"Fill":    m.Fill,
			"Reopen":  m.Reopen,
			"":        m.Check,
		})
	})
}
