package fuzz

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/wal"
)

// JournalHistory is a history of transactions on a bare journal: lanes of
// transactions committed concurrently (so they share batches), discarded or
// abandoned, with reopens and reboots in between.
type JournalHistory struct {
	DevSize     int64 // the journal sits at offset 0, its home region after it
	JournalSize int64
	BlockSize   int
	DeferApply  bool
	MaxBatch    int
	MaxInFlight int // batches syncing at once
	Steps       []JournalStep
}

// JournalStep is one step: StepLanes, StepReopen or StepReboot.
type JournalStep struct {
	Kind  StepKind
	Lanes [][]JournalTx
	Seed  uint64
}

// TxMode says how a lane ends a transaction.
type TxMode uint8

// Transaction endings.
const (
	TxCommit  TxMode = iota
	TxDiscard        // Discard
	TxCancel         // Commit with a context that is already cancelled
)

// JournalTx is one transaction: writes of Lens[i] bytes at Offs[i] of the
// home region.
type JournalTx struct {
	Offs []int64
	Lens []int
	Mode TxMode
}

// JournalLimits bound GenJournalHistory.
type JournalLimits struct {
	MaxSteps, MaxLanes, MaxTxs, MaxWrites int
}

// DefaultJournalLimits checkpoint the journal several times per history.
var DefaultJournalLimits = JournalLimits{MaxSteps: 16, MaxLanes: 4, MaxTxs: 3, MaxWrites: 5}

// FuzzJournalLimits are for one history per fuzz input.
var FuzzJournalLimits = JournalLimits{MaxSteps: 10, MaxLanes: 3, MaxTxs: 3, MaxWrites: 4}

// GenJournalHistory draws a journal history from s.
func GenJournalHistory(s Source, lim JournalLimits) *JournalHistory {
	h := &JournalHistory{DevSize: 64 << 10, JournalSize: wal.MinSize, BlockSize: 512}
	if chance(s, 1, 6) {
		h.BlockSize = 4096
	}
	h.DeferApply = chance(s, 1, 2)
	if chance(s, 1, 4) {
		h.MaxBatch = between(s, 256, 4096)
	}
	home := h.DevSize - h.JournalSize
	n := between(s, 1, lim.MaxSteps)
	for range n {
		switch k := s.Intn(16); {
		case k == 14:
			h.Steps = append(h.Steps, JournalStep{Kind: StepReopen})
			continue
		case k == 15:
			h.Steps = append(h.Steps, JournalStep{Kind: StepReboot, Seed: uint64(s.Intn(1 << 30))})
			continue
		}
		st := JournalStep{Kind: StepLanes}
		for range between(s, 1, lim.MaxLanes) {
			var lane []JournalTx
			for range between(s, 1, lim.MaxTxs) {
				var tx JournalTx
				for range between(s, 1, lim.MaxWrites) {
					l := between(s, 1, 48)
					if chance(s, 1, 4) {
						l = between(s, 48, 1500)
					}
					// Writes cluster in a few blocks, so transactions overlap.
					off := int64(s.Intn(int(home) - l))
					if chance(s, 2, 3) {
						off = int64(s.Intn(8))*512 + int64(s.Intn(512-min(l, 511)))
					}
					tx.Offs = append(tx.Offs, off)
					tx.Lens = append(tx.Lens, l)
				}
				switch k := s.Intn(12); {
				case k == 10:
					tx.Mode = TxDiscard
				case k == 11:
					tx.Mode = TxCancel
				}
				lane = append(lane, tx)
			}
			st.Lanes = append(st.Lanes, lane)
		}
		h.Steps = append(h.Steps, st)
	}
	// Drawn last so that every earlier draw, and so every stored seed's
	// history, stays what it was.
	h.MaxInFlight = 1 + s.Intn(3)
	return h
}

func (h *JournalHistory) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dev=%d journal=%d bs=%d defer=%v maxBatch=%d inflight=%d;", h.DevSize, h.JournalSize, h.BlockSize, h.DeferApply, h.MaxBatch, h.MaxInFlight)
	for i, st := range h.Steps {
		switch st.Kind {
		case StepReopen:
			fmt.Fprintf(&b, " %d:reopen", i)
		case StepReboot:
			fmt.Fprintf(&b, " %d:reboot(%d)", i, st.Seed)
		default:
			fmt.Fprintf(&b, " %d:[", i)
			for li, lane := range st.Lanes {
				if li > 0 {
					b.WriteString(" |")
				}
				for _, tx := range lane {
					fmt.Fprintf(&b, " %s%v", [...]string{"c", "d", "x"}[tx.Mode], tx.Lens)
				}
			}
			b.WriteString(" ]")
		}
	}
	return b.String()
}

func (h *JournalHistory) opts() wal.Options {
	return wal.Options{DeferApply: h.DeferApply, MaxBatch: h.MaxBatch, MaxInFlight: h.MaxInFlight}
}

// jtx is the model of one transaction.
type jtx struct {
	offs  []int64
	datas [][]byte
	state recState // stCreated (begun), stCalled, stAcked, stFailed, stDiscarded
}

// journalModel is what a journal history knows: the home region as of the
// last recovery (base) and every transaction begun since, in Begin order.
type journalModel struct {
	mu       sync.Mutex
	base     []byte
	txs      []*jtx
	uid      uint64
	problems []string
}

func (m *journalModel) problem(format string, args ...any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.problems = append(m.problems, fmt.Sprintf(format, args...))
}

// match finds a prefix of the transactions, holding every acknowledged
// one, whose effect on base is home. It returns its length, or -1.
func (m *journalModel) match(home []byte) (int, string) {
	need := 0
	for i, t := range m.txs {
		if t.state == stAcked {
			need = i + 1
		}
	}
	cur := bytes.Clone(m.base)
	for k := 0; ; k++ {
		if k >= need && bytes.Equal(cur, home) {
			return k, ""
		}
		if k == len(m.txs) {
			break
		}
		t := m.txs[k]
		switch t.state {
		case stDiscarded:
			continue
		case stCreated:
			k = len(m.txs) - 1 // nothing after a transaction never committed
			continue
		}
		for i, off := range t.offs {
			copy(cur[off:], t.datas[i])
		}
	}
	// Say where home departs from the state with every acknowledged
	// transaction applied.
	want := bytes.Clone(m.base)
	for _, t := range m.txs[:need] {
		if t.state != stDiscarded {
			for i, off := range t.offs {
				copy(want[off:], t.datas[i])
			}
		}
	}
	at := 0
	for at < len(home) && home[at] == want[at] {
		at++
	}
	return -1, fmt.Sprintf("home region equals no prefix of the %d transactions that holds the %d acknowledged ones (first difference from all-acknowledged at home offset %d)", len(m.txs), need, at)
}

// journalRunner runs a journal history.
type journalRunner struct {
	machine
	h   *JournalHistory
	m   *journalModel
	j   *wal.Journal
	ctx context.Context
	v   *journalVerifier
}

// runJournal runs h on a device booted from base (taken over), the power
// cut after cut writes and syncs (never if negative) and, if fault is
// positive, the fault-th write or sync of that device failing.
func runJournal(h *JournalHistory, m *journalModel, base []byte, cut, fault int64, v *journalVerifier) runResult {
	ctx, cancel := context.WithTimeout(context.Background(), stallTimeout)
	defer cancel()
	r := &journalRunner{h: h, m: m, ctx: ctx, v: v,
		machine: machine{cut: cut, fault: fault, blockSize: h.BlockSize, journal: h.JournalSize}}
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
			r.rebase("after a reopen")
		case StepReboot:
			r.reboot(st.Seed)
		}
	}
	if r.j != nil {
		if r.faulted() && !r.powerCut() {
			// A failed journal refuses commits until it is reopened.
			r.m.mu.Lock()
			t := &jtx{offs: []int64{0}, datas: [][]byte{{0xee}}, state: stCalled}
			tx := r.j.Begin()
			r.m.txs = append(r.m.txs, t)
			r.m.mu.Unlock()
			tx.Write(r.h.JournalSize, t.datas[0])
			err := r.j.Commit(ctx, tx)
			r.m.mu.Lock()
			t.state = stFailed
			if err == nil {
				t.state = stAcked
				r.m.problems = append(r.m.problems, "Commit succeeded after a write or sync failed")
			}
			r.m.mu.Unlock()
		}
		r.close()
	}
	return r.result(&v.cov)
}

func (r *journalRunner) failed(op string, err error) {
	if r.powerCut() || r.faulted() {
		return
	}
	r.m.problem("%s failed without a power cut: %v", op, err)
}

func (r *journalRunner) open() {
	var j *wal.Journal
	err := r.machine.open(func() (err error) {
		j, err = wal.Open(r.dev, 0, r.h.JournalSize, r.h.opts())
		return err
	})
	if err != nil {
		r.failed("Open", err)
		r.stopped = true
		return
	}
	r.j = j
}

func (r *journalRunner) close() {
	if err := r.j.Close(); err != nil {
		r.failed("Close", err)
	}
	r.j = nil
}

func (r *journalRunner) lanes(lanes [][]JournalTx) {
	var wg sync.WaitGroup
	for _, lane := range lanes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, tx := range lane {
				if !r.tx(tx) {
					return
				}
			}
		}()
	}
	wg.Wait()
	if r.crash.PowerCut() {
		r.stopped = true
	}
}

// tx runs one transaction; false stops the lane.
func (r *journalRunner) tx(spec JournalTx) bool {
	m := r.m
	t := &jtx{}
	m.mu.Lock()
	tx := r.j.Begin() // under the lock: m.txs is in Begin order
	m.txs = append(m.txs, t)
	m.uid++
	uid := m.uid
	m.mu.Unlock()
	for i, off := range spec.Offs {
		d := make([]byte, spec.Lens[i])
		fillPattern(d, uid<<8|uint64(i))
		tx.Write(r.h.JournalSize+off, d)
		t.offs = append(t.offs, off)
		t.datas = append(t.datas, d)
	}
	set := func(s recState) {
		m.mu.Lock()
		t.state = s
		m.mu.Unlock()
	}
	switch spec.Mode {
	case TxDiscard:
		set(stDiscarded)
		tx.Discard()
		return true
	case TxCancel:
		set(stCalled)
		ctx, cancel := context.WithCancel(r.ctx)
		cancel()
		err := r.j.Commit(ctx, tx)
		switch {
		case err == nil:
			set(stAcked)
		case errors.Is(err, context.Canceled):
			set(stDiscarded) // abandoned before it was taken: counts as discarded
		default:
			set(stFailed)
			r.failed("Commit", err)
			return false
		}
		return true
	}
	set(stCalled)
	if err := r.j.Commit(r.ctx, tx); err != nil {
		set(stFailed)
		r.failed("Commit", err)
		return false
	}
	set(stAcked)
	return true
}

// reboot crashes now, boots from an image, opens and checks the journal,
// and makes the recovered home region the new base.
func (r *journalRunner) reboot(seed uint64) {
	r.machine.reboot(seed, r.close)
	r.open()
	if r.j == nil {
		return
	}
	r.v.states++
	r.v.cov.Reboots++
	r.rebase("after a crash and reboot in the history")
}

// rebase checks the home region of the journal just opened in the middle
// of the history and makes it the model's new base: transactions not in
// it (failed or lost) will never be applied.
func (r *journalRunner) rebase(when string) {
	if r.j == nil {
		return
	}
	home := r.v.home(r.dev)
	if k, why := r.m.match(home); k < 0 {
		r.m.problem("%s: %s", when, why)
	}
	r.m.base = home
	r.m.txs = nil
}

// fillPattern fills p with bytes derived from x.
func fillPattern(p []byte, x uint64) {
	x = x*0x9e3779b97f4a7c15 + 1
	for i := range p {
		x ^= x >> 29
		x *= 0xbf58476d1ce4e5b9
		p[i] = byte(x >> 56)
	}
}

// journalVerifier checks crash images of a journal history.
type journalVerifier struct {
	h   *JournalHistory
	m   *journalModel
	src Source
	tally
}

// home reads the home region.
func (v *journalVerifier) home(dev device.Device) []byte {
	b := make([]byte, v.h.DevSize-v.h.JournalSize)
	if _, err := dev.ReadAt(b, v.h.JournalSize); err != nil {
		panic(err) // a crash device reads as long as it is open
	}
	return b
}

// image recovers a crash image (taken over) and checks that the home
// region is a prefix of the transactions; then that a transaction
// committed after recovery survives another crash, that recovering again
// changes nothing, and sometimes that a power cut inside recovery is
// harmless too. want is the home region an earlier recovery of the same
// crash gave, if any.
func (v *journalVerifier) image(img []byte, label string, want []byte, depth int) {
	v.states++
	var spare []byte
	if depth == 0 && chance(v.src, 1, 4) {
		spare = bytes.Clone(img)
	}
	crash := device.NewCrashFrom(img)
	dev := wrapDev(crash, v.h.BlockSize)
	j, err := wal.Open(dev, 0, v.h.JournalSize, v.h.opts())
	if err != nil {
		v.violation(label, "Open after the crash: %v", err)
		return
	}
	recOps := crash.Ops()
	home := v.home(dev)
	if k, why := v.m.match(home); k < 0 {
		v.violation(label, "%s", why)
	}
	if want != nil && !bytes.Equal(home, want) {
		v.violation(label, "recovering the same crash again gave a different home region")
	}
	after := home
	if chance(v.src, 1, 2) {
		off := int64(v.src.Intn(len(home) - 64))
		d := make([]byte, between(v.src, 1, 64))
		fillPattern(d, uint64(off)<<20|0xfeed)
		tx := j.Begin()
		tx.Write(v.h.JournalSize+off, d)
		if err := j.Commit(context.Background(), tx); err != nil {
			v.violation(label, "Commit after recovery: %v", err)
		} else {
			after = bytes.Clone(home)
			copy(after[off:], d)
		}
	}
	if err := j.Close(); err != nil {
		v.violation(label, "Close after recovery: %v", err)
	}
	ch2 := device.RandomOutcomes(crash.Choices(), v.src.Intn)
	crash2 := device.NewCrashFrom(crash.ImageFor(ch2))
	dev2 := wrapDev(crash2, v.h.BlockSize)
	if j2, err := wal.Open(dev2, 0, v.h.JournalSize, v.h.opts()); err != nil {
		v.violation(label, "second recovery (image %v): Open: %v", ch2, err)
	} else {
		if !bytes.Equal(v.home(dev2), after) {
			v.violation(label, "second recovery (image %v) lost what the first recovery and the commit after it left", ch2)
		}
		j2.Close()
	}
	if spare != nil {
		v.cov.InRecovery++
		k := v.src.Intn(int(recOps) + 1)
		c3 := device.NewCrashFrom(spare)
		c3.CutAfter(int64(k))
		if j3, err := wal.Open(wrapDev(c3, v.h.BlockSize), 0, v.h.JournalSize, v.h.opts()); err == nil {
			j3.Close()
		} else if !c3.PowerCut() {
			v.violation(label, "Open with a power cut after %d ops: %v (and the power was not cut)", k, err)
		}
		img3 := c3.ImageFor(device.RandomOutcomes(c3.Choices(), v.src.Intn))
		v.image(img3, fmt.Sprintf("%s, then a power cut %d ops into recovery", label, k), home, depth+1)
	}
}

// formatJournal returns the image of a device with a fresh journal and a
// zero home region.
func formatJournal(h *JournalHistory) ([]byte, error) {
	c := device.NewCrash(h.DevSize)
	if err := wal.Format(wrapDev(c, h.BlockSize), 0, h.JournalSize); err != nil {
		return nil, err
	}
	return c.DurableImage(), nil
}

// exploreJournal runs h without a power cut, then cut after a spread of op
// counts, and checks images of each.
func exploreJournal(h *JournalHistory, src Source, cuts, images int, stopAtFirst bool) (int, []string, Coverage) {
	base, err := formatJournal(h)
	if err != nil {
		return 0, []string{fmt.Sprintf("Format: %v", err)}, Coverage{}
	}
	v := &journalVerifier{h: h, src: src}
	exploreCuts(src, cuts, images, stopAtFirst, &v.tally,
		func(cut, fault int64) (runResult, []string) {
			v.m = &journalModel{base: make([]byte, h.DevSize-h.JournalSize)}
			res := runJournal(h, v.m, bytes.Clone(base), cut, fault, v)
			return res, v.m.problems
		},
		func(img []byte, label string) { v.image(img, label, nil, 0) })
	return v.states, v.violations, v.cov
}
