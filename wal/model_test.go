package wal

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/ringlog/ringlog/device"
	"pgregory.net/rapid"
)

// A state-machine test of the journal against a model that is just the
// bytes the device should hold outside the journal region.

const smDevSize = 64 << 10

type smTxState int

const (
	smOpen       smTxState = iota
	smCommitting           // Commit running in a goroutine, waiting for earlier txs
)

type smTx struct {
	id     int // Begin order within the machine's life
	tx     *Tx
	writes []write
	state  smTxState
	res    chan error
}

type walMachine struct {
	dev         *device.Crash
	j           *Journal
	opts        Options
	joff, jsize int64
	model       []byte  // expected device bytes (journal region ignored)
	live        []*smTx // begun, neither resolved nor abandoned, in Begin order
	nextID      int
	commits     int
	waited      int // commits that had to wait for an earlier-begun tx
	checkpoints int
	reopens     int
}

func newWalMachine(t *rapid.T) *walMachine {
	m := &walMachine{
		dev:   device.NewCrash(smDevSize),
		model: make([]byte, smDevSize),
		jsize: MinSize,
	}
	// The journal sits at the start, the middle or the end of the device.
	m.joff = rapid.SampledFrom([]int64{0, 16 << 10, smDevSize - MinSize}).Draw(t, "journal offset")
	// With DeferApply, home writes reach the device only at checkpoints and
	// Close, so the device is compared with the model only after a reopen.
	m.opts.DeferApply = rapid.Bool().Draw(t, "defer apply")
	m.opts.MaxInFlight = rapid.IntRange(0, 3).Draw(t, "max in flight")
	if err := Format(m.dev, m.joff, m.jsize); err != nil {
		t.Fatalf("Format: %v", err)
	}
	m.open(t)
	return m
}

func (m *walMachine) open(t *rapid.T) {
	j, err := Open(m.dev, m.joff, m.jsize, m.opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	m.j = j
}

// cleanup closes the journal and reaps every Commit goroutine.
func (m *walMachine) cleanup() {
	if m.j != nil {
		m.j.Close()
		m.j = nil
	}
	for _, x := range m.live {
		if x.state == smCommitting {
			<-x.res
		}
	}
	m.live = nil
}

func (m *walMachine) begin() *smTx {
	x := &smTx{id: m.nextID, tx: m.j.Begin(), res: make(chan error, 1)}
	m.nextID++
	m.live = append(m.live, x)
	return x
}

// openTx picks a live transaction not yet handed to Commit, beginning one if
// there is none.
func (m *walMachine) openTx(t *rapid.T) *smTx {
	var open []*smTx
	for _, x := range m.live {
		if x.state == smOpen {
			open = append(open, x)
		}
	}
	if len(open) == 0 {
		return m.begin()
	}
	return rapid.SampledFrom(open).Draw(t, "tx")
}

func (m *walMachine) remove(x *smTx) {
	for i, y := range m.live {
		if y == x {
			m.live = append(m.live[:i], m.live[i+1:]...)
			return
		}
	}
}

// homeRange draws a write that stays outside the journal region.
func (m *walMachine) homeRange(t *rapid.T, maxLen int) (int64, int) {
	jend := m.joff + m.jsize
	var lo, hi int64 // [lo, hi) is one free side of the journal
	switch {
	case m.joff == 0:
		lo, hi = jend, smDevSize
	case jend == smDevSize:
		lo, hi = 0, m.joff
	case rapid.Bool().Draw(t, "below journal"):
		lo, hi = 0, m.joff
	default:
		lo, hi = jend, smDevSize
	}
	// rapid draws small numbers far more often than large ones; a drawn
	// seed spreads offsets and lengths over the whole range.
	r := rand.New(rand.NewPCG(rapid.Uint64().Draw(t, "range seed"), 1))
	off := lo + r.Int64N(hi-lo)
	n := 1 + r.IntN(maxLen)
	n = int(min(int64(n), hi-off))
	return off, n
}

func (m *walMachine) txBytes(x *smTx) int { return encodedLen(x.writes) }

// Begin starts a transaction (it gets writes later).
func (m *walMachine) Begin(t *rapid.T) { m.begin() }

// Write adds a write to an open transaction; some are large enough that a
// few transactions fill the journal's area.
func (m *walMachine) Write(t *rapid.T) {
	x := m.openTx(t)
	m.writeTo(t, x, rapid.SampledFrom([]int{8, 64, 600, 5000}).Draw(t, "max len"))
}

func (m *walMachine) writeTo(t *rapid.T, x *smTx, maxLen int) {
	off, n := m.homeRange(t, maxLen)
	// Keep every transaction inside the 16 KiB area.
	if room := 7000 - m.txBytes(x) - writeHeaderLen; n > room {
		if room <= 0 {
			return
		}
		n = room
	}
	data := make([]byte, n)
	seed := rapid.Uint64().Draw(t, "data seed")
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	x.tx.Write(off, data)
	x.writes = append(x.writes, write{off: off, data: data})
}

// CommitBurst begins, writes and commits several large transactions in a
// row: enough to make the journal checkpoint, between reopens.
func (m *walMachine) CommitBurst(t *rapid.T) {
	n := rapid.IntRange(2, 8).Draw(t, "burst")
	for range n {
		x := m.begin()
		for range rapid.IntRange(1, 3).Draw(t, "writes") {
			m.writeTo(t, x, 4000)
		}
		m.commit(t, x)
	}
}

// Commit commits any open transaction from a goroutine: it waits while an
// earlier-begun one is open, and must not return before.
func (m *walMachine) Commit(t *rapid.T) { m.commit(t, m.openTx(t)) }

func (m *walMachine) commit(t *rapid.T, x *smTx) {
	x.state = smCommitting
	if m.live[0] != x {
		m.waited++
	}
	j := m.j
	go func() { x.res <- j.Commit(context.Background(), x.tx) }()
	m.settle(t)
}

// CommitCancelled commits an open transaction with a context that has ended.
// If an earlier-begun transaction is still open, it must be abandoned with
// the context's error; otherwise it may go either way.
func (m *walMachine) CommitCancelled(t *rapid.T) {
	x := m.openTx(t)
	blocked := false
	for _, y := range m.live {
		if y == x {
			break
		}
		if y.state == smOpen {
			blocked = true
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := m.j.Commit(ctx, x.tx)
	switch {
	case err == nil && !blocked:
		m.applyModel(x)
		m.remove(x)
	case errors.Is(err, context.Canceled):
		m.remove(x)
	default:
		t.Fatalf("Commit with a cancelled context (blocked=%v) = %v", blocked, err)
	}
	m.settle(t)
}

// Discard abandons an open transaction.
func (m *walMachine) Discard(t *rapid.T) {
	x := m.openTx(t)
	x.tx.Discard()
	m.remove(x)
	if err := m.j.Commit(context.Background(), x.tx); !errors.Is(err, ErrDiscarded) {
		t.Fatalf("Commit after Discard = %v, want ErrDiscarded", err)
	}
	m.settle(t)
}

// Reopen closes the journal (Commits still waiting end with ErrClosed, and
// their transactions never happen) and opens it again.
func (m *walMachine) Reopen(t *rapid.T) {
	m.close(t)
	m.open(t)
	m.checkDevice(t, "after reopen")
}

// Crash closes the journal, then boots from an image a power cut could leave
// now: only synced writes are sure to be there, yet every committed
// transaction must come back.
func (m *walMachine) Crash(t *rapid.T) {
	m.close(t)
	seed := rapid.Uint64().Draw(t, "image seed")
	img := m.dev.Image(rand.New(rand.NewPCG(seed, 7)))
	m.dev = device.NewCrashFrom(img)
	m.open(t)
	m.checkDevice(t, "after crash")
}

func (m *walMachine) close(t *rapid.T) {
	m.checkpoints += int(m.j.Stats().Checkpoints - 1)
	m.reopens++
	if err := m.j.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	m.j = nil
	for _, x := range m.live {
		if x.state != smCommitting {
			continue
		}
		if err := <-x.res; !errors.Is(err, ErrClosed) {
			t.Fatalf("tx %d waiting at Close: Commit = %v, want ErrClosed", x.id, err)
		}
	}
	m.live = nil
}

func (m *walMachine) applyModel(x *smTx) {
	for _, w := range x.writes {
		copy(m.model[w.off:], w.data)
	}
	m.commits++
}

// settle collects the Commits that can now finish: those with no open
// transaction begun before them. They must succeed, in Begin order; the
// others must still be waiting.
func (m *walMachine) settle(t *rapid.T) {
	for len(m.live) > 0 && m.live[0].state == smCommitting {
		x := m.live[0]
		if err := <-x.res; err != nil {
			t.Fatalf("Commit of tx %d: %v", x.id, err)
		}
		m.applyModel(x)
		m.live = m.live[1:]
	}
	for _, x := range m.live {
		if x.state != smCommitting {
			continue
		}
		select {
		case err := <-x.res:
			t.Fatalf("Commit of tx %d returned (%v) while an earlier-begun tx is open", x.id, err)
		default:
		}
	}
	if !m.opts.DeferApply {
		m.checkDevice(t, "after commit")
	}
}

// Check is run after every action: nothing has failed the journal.
func (m *walMachine) Check(t *rapid.T) {
	if err := m.j.Err(); err != nil {
		t.Fatalf("journal failed: %v", err)
	}
}

// checkDevice compares the device with the model outside the journal.
func (m *walMachine) checkDevice(t *rapid.T, when string) {
	got := make([]byte, smDevSize)
	if _, err := m.dev.ReadAt(got, 0); err != nil {
		t.Fatalf("ReadAt: %v", err)
	}
	jend := m.joff + m.jsize
	for _, r := range [][2]int64{{0, m.joff}, {jend, smDevSize}} {
		g, w := got[r[0]:r[1]], m.model[r[0]:r[1]]
		if !bytes.Equal(g, w) {
			i := 0
			for g[i] == w[i] {
				i++
			}
			t.Fatalf("%s: device differs from the model at %d: %x..., want %x...",
				when, r[0]+int64(i), g[i:min(i+16, len(g))], w[i:min(i+16, len(w))])
		}
	}
}

// smTally adds up what the state machine did over all runs, so that the
// test can tell it exercised waiting commits and checkpoints.
var smTally struct {
	sync.Mutex
	runs, commits, waited, checkpoints, reopens int
}

func walMachineProp(t *rapid.T) {
	m := newWalMachine(t)
	defer m.cleanup()
	// Commits and writes are drawn more often than the rest, so that the
	// journal fills its area between reopens.
	t.Repeat(map[string]func(*rapid.T){
		"":                m.Check,
		"Begin":           m.Begin,
		"Write":           m.Write,
		"Write2":          m.Write,
		"Write3":          m.Write,
		"CommitBurst":     m.CommitBurst,
		"Commit":          m.Commit,
		"Commit2":         m.Commit,
		"Commit3":         m.Commit,
		"CommitCancelled": m.CommitCancelled,
		"Discard":         m.Discard,
		"Reopen":          m.Reopen,
		"Crash":           m.Crash,
	})
	if m.j != nil {
		m.checkpoints += int(m.j.Stats().Checkpoints - 1)
	}
	smTally.Lock()
	smTally.runs++
	smTally.commits += m.commits
	smTally.waited += m.waited
	smTally.checkpoints += m.checkpoints
	smTally.reopens += m.reopens
	smTally.Unlock()
}

func TestStateMachine(t *testing.T) {
	// rapid runs 30 actions per check by default; give the journal room to
	// wrap its area between reopens unless -rapid.steps says otherwise.
	if f := flag.Lookup("rapid.steps"); f != nil && f.Value.String() == f.DefValue {
		f.Value.Set("100")
		defer f.Value.Set(f.DefValue)
	}
	rapid.Check(t, walMachineProp)
	smTally.Lock()
	defer smTally.Unlock()
	t.Logf("%d runs: %d commits (%d of them waited for an earlier-begun tx), %d checkpoints, %d reopens",
		smTally.runs, smTally.commits, smTally.waited, smTally.checkpoints, smTally.reopens)
	if smTally.waited == 0 || smTally.checkpoints == 0 || smTally.reopens == 0 {
		t.Errorf("the state machine never exercised a waiting commit, a checkpoint or a reopen")
	}
}

// FuzzStateMachine runs the same state machine under go test -fuzz.
func FuzzStateMachine(f *testing.F) {
	f.Fuzz(rapid.MakeFuzz(walMachineProp))
}
