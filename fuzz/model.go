package fuzz

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/ringlog/ringlog/pipeline"
)

// recState is what a history knows about one record.
type recState uint8

const (
	stCreated   recState = iota // id drawn, operation not started: must not appear
	stCalled                    // Append or Commit called, no answer yet: may appear
	stAcked                     // Append or Commit returned nil: must survive
	stFailed                    // it returned an error: may appear
	stDiscarded                 // a reservation never committed: must not appear
	stLost                      // a recovery dropped it: must never come back
	stCancelled                 // Append returned its context's error: never placed, must not appear
)

var stateNames = [...]string{"created", "called", "acked", "failed", "discarded", "lost", "cancelled"}

func (s recState) String() string { return stateNames[s] }

// rec is the history's knowledge of one record.
type rec struct {
	id       uint64
	size     int
	reserve  bool
	state    recState
	pos      uint64
	hasPos   bool
	garbage  bool // the checker calls it garbage whenever asked
	released bool // the checker has called it garbage: it may vanish
	durable  bool // a recovery kept it: as good as acknowledged
	// call and ret order operations: if a's ret precedes b's call, a's
	// position is below b's.
	call, ret uint64
}

// mustSurvive is whether a crash may not take the record away.
func (r *rec) mustSurvive() bool { return (r.state == stAcked || r.durable) && !r.released }

// mayAppear is whether a recovered log may hold the record.
func (r *rec) mayAppear() bool {
	switch r.state {
	case stCalled, stAcked, stFailed:
		return true
	}
	return false
}

// Model tracks every record of a history. It is safe for concurrent use
// while the history runs; the checks read it once the run is over.
type Model struct {
	mu         sync.Mutex
	recs       []*rec // id-1
	byPos      map[uint64]*rec
	tick       atomic.Uint64
	watermark  uint64 // records with smaller ids are garbage
	garbagePct int
	params     Params
	budget     int64
	problems   []string // found while the history ran
	// cancelled counts the appends whose context ended before they were
	// placed (Coverage.Cancelled), cancelParked those of them that waited
	// for space, cancelLost those placed before their context ended.
	cancelled, cancelParked, cancelLost atomic.Int64
	// gate, while set, makes the checker call nothing garbage, so the log
	// fills and appends wait; gateHit tells the lane that holds the gate
	// that a collector pass found an append waiting. log is the log the
	// history runs, for the checker to look at.
	gate       atomic.Bool
	gateParked atomic.Uint64 // the log's parked count when the gate closed
	gateHit    chan struct{}
	log        atomic.Pointer[pipeline.Log]
}

func newModel(h *History) *Model {
	return &Model{byPos: make(map[uint64]*rec), garbagePct: h.GarbagePct, params: h.Params, budget: h.Budget, gateHit: make(chan struct{}, 1)}
}

// add draws a new record id. Whether the record is garbage from the start
// is a function of its id, the same in every run of a history.
func (m *Model) add(size int, reserve bool) *rec {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := uint64(len(m.recs)) + 1
	x := (id * 0x9e3779b97f4a7c15) ^ (id >> 7)
	x *= 0xbf58476d1ce4e5b9
	r := &rec{id: id, size: size, reserve: reserve, garbage: int(x>>33%100) < m.garbagePct}
	m.recs = append(m.recs, r)
	m.advanceWatermark()
	return r
}

func (m *Model) get(id uint64) *rec {
	if id == 0 || id > uint64(len(m.recs)) {
		return nil
	}
	return m.recs[id-1]
}

func (m *Model) problem(format string, args ...any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.problems = append(m.problems, fmt.Sprintf(format, args...))
}

// called marks the start of r's Append or Commit: from now on the record
// may be in the log.
func (m *Model) called(r *rec) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r.call == 0 {
		r.call = m.tick.Add(1)
	}
	r.state = stCalled
}

// reserving marks the start of r's Reserve: the call that decides its
// position, though the record cannot appear before its Commit.
func (m *Model) reserving(r *rec) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r.call = m.tick.Add(1)
}

// placed records r's position (Reserve returned, or Append returned nil).
func (m *Model) placed(r *rec, pos uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r.ret = m.tick.Add(1)
	r.pos, r.hasPos = pos, true
	m.byPos[pos] = r
}

// finished records the outcome of r's Append or Commit.
func (m *Model) finished(r *rec, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !r.reserve {
		r.ret = m.tick.Add(1)
	}
	switch {
	case err == nil:
		r.state = stAcked
	case errors.Is(err, context.Canceled):
		// The API's promise: a context error means the request never had
		// a position, so its bytes were never written.
		r.state = stCancelled
	default:
		r.state = stFailed
	}
}

// discarded records that r will never be a record.
func (m *Model) discarded(r *rec) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !r.reserve {
		r.ret = m.tick.Add(1)
	}
	r.state = stDiscarded
}

// gated reports whether the gate holds the collector back. While it does,
// nothing is garbage; once an append waits for space, it tells the gate's
// lane. (The allocator counts a waiting request before it asks the
// collector for the pass that calls this.)
func (m *Model) gated() bool {
	if !m.gate.Load() {
		return false
	}
	if l := m.log.Load(); l != nil && l.Stats().Parked > m.gateParked.Load() {
		select {
		case m.gateHit <- struct{}{}:
		default:
		}
	}
	return true
}

// decide is the garbage checker's answer for r.
func (m *Model) decide(r *rec) bool {
	if r.garbage || r.id < m.watermark {
		r.released = true
		return true
	}
	return false
}

// advanceWatermark makes every record older than the newest budget bytes
// garbage. It runs as each record is drawn, so records turn into garbage
// while appends go on: under pressure, parked appends wait for exactly
// that.
func (m *Model) advanceWatermark() {
	if m.budget <= 0 {
		return
	}
	var sum int64
	for i := len(m.recs) - 1; i >= 0 && m.recs[i].id >= m.watermark; i-- {
		r := m.recs[i]
		sum += m.params.recordStride(r.reserve, r.size)
		if sum > m.budget {
			m.watermark = r.id + 1
			return
		}
	}
}

// recovered updates the model after a recovery that kept exactly the
// records in present: those are durable from now on, the others that were
// not released are lost for good.
func (m *Model) recovered(present map[uint64]uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.recs {
		if pos, ok := present[r.id]; ok {
			r.durable = true
			if !r.hasPos {
				r.pos, r.hasPos = pos, true
				m.byPos[pos] = r
			}
			continue
		}
		if r.state == stCalled || r.state == stFailed || (r.state == stAcked && r.released) || r.state == stCreated {
			r.state = stLost
			if r.hasPos && m.byPos[r.pos] == r {
				delete(m.byPos, r.pos)
			}
		}
	}
}

// garbageChecker is the history's GarbageChecker: it reads the id from the
// payload.
type garbageChecker struct{ m *Model }

func (g garbageChecker) IsGarbage(pos pipeline.Position, p []byte) (bool, error) {
	if g.m.gated() {
		return false, nil
	}
	id, ok := payloadID(p)
	g.m.mu.Lock()
	defer g.m.mu.Unlock()
	r := g.m.get(id)
	if !ok || r == nil {
		g.m.problems = append(g.m.problems, fmt.Sprintf("the collector was shown a record that was never appended at position %d (claims id %d, %d bytes)", pos, id, len(p)))
		return false, nil
	}
	if r.hasPos && r.pos != uint64(pos) {
		g.m.problems = append(g.m.problems, fmt.Sprintf("the collector was shown record %d at position %d; it was given position %d", id, pos, r.pos))
		return false, nil
	}
	return g.m.decide(r), nil
}

// posChecker is a garbageChecker that decides by position alone, so the
// collector reads only frame headers.
type posChecker struct{ garbageChecker }

func (g posChecker) IsGarbageAt(pos pipeline.Position) (bool, error) {
	if g.m.gated() {
		return false, nil
	}
	g.m.mu.Lock()
	defer g.m.mu.Unlock()
	r := g.m.byPos[uint64(pos)]
	if r == nil {
		return false, nil // not known yet (its Append has not returned): live
	}
	return g.m.decide(r), nil
}
