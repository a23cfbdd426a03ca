package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/internal/testhooks"
)

// Crash tests: run a seeded history of transactions on a device.Crash, cut
// the power after every write and sync it does, and check every image the
// cut could leave (all of them when they are few, a sample otherwise):
// recovery must give back every acknowledged transaction whole and no
// other transaction in part. Then cut the power during that recovery too.
//
// The histories are designed so that this is checkable from the device
// alone: transaction i writes one unique 8-byte stamp to 2-3 slots (and
// sometimes a longer blob made of the stamp), so a slot names the
// transaction that wrote it last. Transactions take effect in Begin order,
// so the recovered home region must equal the result of applying some
// prefix of the attempted transactions — one that includes every
// transaction whose Commit returned nil.
//
// TestCrashHistories does that for one life of the journal (and for crashes
// during the recovery that follows); TestCrashTwice recovers, runs a second
// history and crashes again; TestCheckpointHeaderLost pins down the two-life
// case by hand.

const (
	crashDevSize  = 64 << 10
	crashJSize    = MinSize // the journal at offset 0: a 16 KiB area, so histories checkpoint
	crashHome     = crashJSize
	crashSlots    = 64
	crashSlotStep = 200 // slots spread over many blocks; some straddle two
	crashBlobBase = crashHome + 16<<10
)

// crashScale multiplies how many histories the crash tests explore (and how
// many images per cut the fuzz target samples): RINGLOG_CRASH_SCALE=10 for
// make fuzz and long runs; 1 by default.
func crashScale() int {
	if v, err := strconv.Atoi(os.Getenv("RINGLOG_CRASH_SCALE")); err == nil && v > 0 {
		return v
	}
	return 1
}

type crashTx struct {
	id      int
	stamp   []byte
	slots   []int64
	blobOff int64
	blob    []byte
	discard bool
}

func (x *crashTx) writes() []write {
	var ws []write
	for _, off := range x.slots {
		ws = append(ws, write{off: off, data: x.stamp})
	}
	if x.blob != nil {
		ws = append(ws, write{off: x.blobOff, data: x.blob})
	}
	return ws
}

// presentIn reports whether any write of x shows in home.
func (x *crashTx) presentIn(home []byte) bool {
	for _, off := range x.slots {
		if bytes.Equal(home[off-crashHome:][:8], x.stamp) {
			return true
		}
	}
	return x.blob != nil && bytes.Equal(home[x.blobOff-crashHome:][:8], x.stamp)
}

const (
	stepOne        = iota // Begin, Commit
	stepOutOfOrder        // Begin a, Begin b, Commit b (waits for a) and a
	stepGroup             // Begin 2-4, Commit all at once from goroutines
	stepDiscard           // Begin, Write, Discard
)

type crashStep struct {
	kind int
	txs  []*crashTx
}

type history struct {
	seed  uint64
	txs   []*crashTx // in Begin order
	steps []crashStep
}

var errNotCommitted = errors.New("discarded by the history")

func genHistory(seed uint64) *history {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	h := &history{seed: seed}
	n := 5 + r.IntN(26)
	salt := r.Uint64() | 1<<63
	newTx := func() *crashTx {
		x := &crashTx{id: len(h.txs), stamp: stamp(salt ^ uint64(len(h.txs)+1))}
		for _, s := range r.Perm(crashSlots)[:2+r.IntN(2)] {
			x.slots = append(x.slots, crashHome+int64(s)*crashSlotStep)
		}
		if r.IntN(2) == 0 {
			n := 300 + r.IntN(5700)
			x.blobOff = crashBlobBase + r.Int64N(crashDevSize-crashBlobBase-int64(n))
			x.blob = bytes.Repeat(x.stamp, n/8+1)[:n]
		}
		h.txs = append(h.txs, x)
		return x
	}
	for len(h.txs) < n {
		st := crashStep{}
		switch p := r.IntN(20); {
		case p < 11:
			st.kind = stepOne
			st.txs = []*crashTx{newTx()}
		case p < 14:
			st.kind = stepOutOfOrder
			st.txs = []*crashTx{newTx(), newTx()}
		case p < 17:
			st.kind = stepGroup
			for range 2 + r.IntN(3) {
				st.txs = append(st.txs, newTx())
			}
		default:
			st.kind = stepDiscard
			x := newTx()
			x.discard = true
			st.txs = []*crashTx{x}
		}
		h.steps = append(h.steps, st)
	}
	return h
}

// restamped returns a copy of h with other stamps: the same transactions
// and steps, so the same batch sizes, but told apart from h's on the device.
func (h *history) restamped(salt uint64) *history {
	h2 := &history{seed: h.seed ^ salt}
	byID := make(map[*crashTx]*crashTx)
	for _, x := range h.txs {
		y := *x
		y.stamp = stamp((salt | 1<<63) ^ uint64(x.id+1))
		if x.blob != nil {
			y.blob = bytes.Repeat(y.stamp, len(x.blob)/8+1)[:len(x.blob)]
		}
		h2.txs = append(h2.txs, &y)
		byID[x] = &y
	}
	for _, st := range h.steps {
		st2 := crashStep{kind: st.kind}
		for _, x := range st.txs {
			st2.txs = append(st2.txs, byID[x])
		}
		h2.steps = append(h2.steps, st2)
	}
	return h2
}

// run runs the history on j and returns each transaction's Commit result.
func (h *history) run(j *Journal) []error {
	ctx := context.Background()
	res := make([]error, len(h.txs))
	for _, st := range h.steps {
		txs := make([]*Tx, len(st.txs))
		for i, x := range st.txs {
			txs[i] = j.Begin()
			for _, w := range x.writes() {
				txs[i].Write(w.off, w.data)
			}
		}
		switch st.kind {
		case stepOne:
			res[st.txs[0].id] = j.Commit(ctx, txs[0])
		case stepDiscard:
			txs[0].Discard()
			res[st.txs[0].id] = errNotCommitted
		case stepOutOfOrder:
			later := make(chan error, 1)
			go func() { later <- j.Commit(ctx, txs[1]) }()
			res[st.txs[0].id] = j.Commit(ctx, txs[0])
			res[st.txs[1].id] = <-later
		case stepGroup:
			var wg sync.WaitGroup
			for i, tx := range txs {
				wg.Go(func() { res[st.txs[i].id] = j.Commit(ctx, tx) })
			}
			wg.Wait()
		}
	}
	return res
}

// check verifies a recovered home region ([crashHome, crashDevSize)) against
// the history and the Commit results, and returns how many attempted
// transactions it holds. base is the home region the history started from
// (nil: zeros).
func (h *history) check(base, home []byte, res []error) (int, error) {
	var attempted []*crashTx
	for _, x := range h.txs {
		if !x.discard {
			attempted = append(attempted, x)
		}
	}
	k := 0
	for i, x := range attempted {
		if x.presentIn(home) {
			k = i + 1
		}
	}
	for i, x := range attempted {
		if res[x.id] == nil && i >= k {
			return k, fmt.Errorf("tx %d was acknowledged but is missing (home holds txs up to #%d of %d attempted)", x.id, k, len(attempted))
		}
	}
	want := make([]byte, len(home))
	copy(want, base)
	for _, x := range attempted[:k] {
		for _, w := range x.writes() {
			copy(want[w.off-crashHome:], w.data)
		}
	}
	if !bytes.Equal(home, want) {
		i := 0
		for home[i] == want[i] {
			i++
		}
		off := crashHome + int64(i)
		var who []int
		for _, x := range h.txs {
			for _, w := range x.writes() {
				if off >= w.off && off < w.off+int64(len(w.data)) {
					who = append(who, x.id)
				}
			}
		}
		return k, fmt.Errorf("home differs from the first %d attempted txs at %d: %x, want %x (written by txs %v; results %v)",
			k, off, home[i:min(i+8, len(home))], want[i:min(i+8, len(want))], who, res)
	}
	return k, nil
}

// crashRun is one history explored at every cut point.
type crashRun struct {
	t       testing.TB
	h       *history
	opts    Options // of the journal the history runs on
	rng     *rand.Rand
	samples int // images per cut when there are too many to enumerate
	// recoverEvery: every how many cut points one image's recovery is itself
	// cut at every op; 0: never.
	recoverEvery int
	images       int // recovered and checked
	deepImages   int // of which after a crash during recovery
	checkpoints  int // in the history's run without a crash
}

// maxEnumerate is the most images a cut point may have for all of them to
// be checked; above it, samples are drawn.
const maxEnumerate = 64

func imageCount(choices []int) int {
	p := 1
	for _, c := range choices {
		p *= c
		if p > maxEnumerate {
			return p
		}
	}
	return p
}

// forImages calls fn with every image of dev if there are few, else with
// samples of them.
func forImages(dev *device.Crash, rng *rand.Rand, samples int, fn func(img []byte) error) error {
	var err error
	if imageCount(dev.Choices()) <= maxEnumerate {
		dev.Enumerate(func(choice []int, img []byte) bool {
			if e := fn(img); e != nil {
				err = fmt.Errorf("image %v: %w", choice, e)
				return false
			}
			return true
		})
		return err
	}
	for i := range samples {
		if e := fn(dev.Image(rng)); e != nil {
			return fmt.Errorf("sample %d: %w", i, e)
		}
	}
	return nil
}

func newCrashJournal(t testing.TB, opts Options) (*device.Crash, *Journal) {
	t.Helper()
	dev := device.NewCrash(crashDevSize)
	if err := Format(dev, 0, crashJSize); err != nil {
		t.Fatal(err)
	}
	j, err := Open(dev, 0, crashJSize, opts)
	if err != nil {
		t.Fatal(err)
	}
	return dev, j
}

// recoverFull opens a copy of img and returns the whole device after
// recovery (all of it synced).
func recoverFull(img []byte) ([]byte, error) {
	dev := device.NewCrashFrom(append([]byte(nil), img...))
	j, err := Open(dev, 0, crashJSize, Options{})
	if err != nil {
		return nil, err
	}
	j.Close()
	if dev.Pending() != 0 {
		return nil, fmt.Errorf("Open left %d writes unsynced", dev.Pending())
	}
	return dev.DurableImage(), nil
}

// recoverImage opens a copy of img (img itself is left alone) and returns
// the recovered home region and the device's ops during Open.
func recoverImage(img []byte, cut int64) (home []byte, ops int64, err error) {
	dev := device.NewCrashFrom(append([]byte(nil), img...))
	if cut >= 0 {
		dev.CutAfter(cut)
	}
	j, err := Open(dev, 0, crashJSize, Options{})
	if err != nil {
		return nil, dev.Ops(), err
	}
	ops = dev.Ops()
	j.Close()
	home = make([]byte, crashDevSize-crashHome)
	if _, err := dev.ReadAt(home, crashHome); err != nil {
		return nil, ops, err
	}
	return home, ops, nil
}

// explore runs the history once per cut point and checks the images each
// leaves; it returns the first violation found.
func (c *crashRun) explore() error {
	t, h := c.t, c.h
	// A run without a cut counts the ops to cut at.
	dev, j := newCrashJournal(t, c.opts)
	base := dev.Ops()
	res := h.run(j)
	c.checkpoints = int(j.Stats().Checkpoints - 1)
	j.Close()
	for _, x := range h.txs {
		if err := res[x.id]; err != nil && !x.discard {
			return fmt.Errorf("seed %d (%+v): tx %d failed without a crash: %v", h.seed, c.opts, x.id, err)
		}
	}
	total := dev.Ops() - base
	for n := int64(0); n <= total; n++ {
		dev, j := newCrashJournal(t, c.opts)
		dev.CutAfter(n)
		res := h.run(j)
		j.Close()
		for _, x := range h.txs {
			err := res[x.id]
			if err != nil && !x.discard && !errors.Is(err, device.ErrPowerCut) && !errors.Is(err, ErrFailed) {
				return fmt.Errorf("seed %d cut %d: tx %d: Commit = %v, want nil, ErrPowerCut or ErrFailed", h.seed, n, x.id, err)
			}
			if err != nil && !x.discard && !dev.PowerCut() {
				return fmt.Errorf("seed %d cut %d: tx %d failed although the power never went: %v", h.seed, n, x.id, err)
			}
		}
		deep := c.recoverEvery > 0 && n%int64(c.recoverEvery) == int64(c.recoverEvery)/2
		err := forImages(dev, c.rng, c.samples, func(img []byte) error {
			home, _, err := recoverImage(img, -1)
			if err != nil {
				return fmt.Errorf("Open: %w", err)
			}
			c.images++
			if _, err := h.check(nil, home, res); err != nil {
				return err
			}
			if deep {
				deep = false
				return c.crashRecovery(img, home, res)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("seed %d (%+v), power cut after %d of %d ops: %w", h.seed, c.opts, n, total, err)
		}
	}
	return nil
}

// crashRecovery cuts the power at every op of the recovery of img, recovers
// every image that leaves (or samples), and checks that the result is the
// same as recovering once.
func (c *crashRun) crashRecovery(img, once []byte, res []error) error {
	_, ops, err := recoverImage(img, -1)
	if err != nil {
		return err
	}
	for k := int64(0); k < ops; k++ {
		dev := device.NewCrashFrom(append([]byte(nil), img...))
		dev.CutAfter(k)
		j, err := Open(dev, 0, crashJSize, Options{})
		if err == nil {
			j.Close()
			return fmt.Errorf("recovery cut after %d of %d ops: Open succeeded", k, ops)
		}
		if !errors.Is(err, device.ErrPowerCut) {
			return fmt.Errorf("recovery cut after %d of %d ops: Open = %v, want ErrPowerCut", k, ops, err)
		}
		err = forImages(dev, c.rng, max(1, c.samples/4), func(img2 []byte) error {
			twice, _, err := recoverImage(img2, -1)
			if err != nil {
				return fmt.Errorf("second Open: %w", err)
			}
			c.images++
			c.deepImages++
			if _, err := c.h.check(nil, twice, res); err != nil {
				return err
			}
			if !bytes.Equal(twice, once) {
				i := 0
				for twice[i] == once[i] {
					i++
				}
				return fmt.Errorf("recovering twice differs from once at %d: %x, want %x", crashHome+i, twice[i:i+8], once[i:i+8])
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("recovery cut after %d of %d ops: %w", k, ops, err)
		}
	}
	return nil
}

func TestCrashHistories(t *testing.T) {
	scale := crashScale()
	histories := 32 * scale
	var total, deep, checkpointed atomic.Int64
	for i := range histories {
		seed := uint64(i) + 1
		// Every other history runs with home writes deferred to checkpoints;
		// a third of them let two batches sync at once, a third three.
		opts := Options{DeferApply: i%2 == 1, MaxInFlight: 1 + (i/2)%3}
		t.Run(fmt.Sprintf("seed=%d/defer=%v/inflight=%d", seed, opts.DeferApply, opts.MaxInFlight), func(t *testing.T) {
			t.Parallel()
			c := &crashRun{t: t, h: genHistory(seed), opts: opts, rng: rand.New(rand.NewPCG(seed, 99)),
				samples: 16, recoverEvery: 16}
			if err := c.explore(); err != nil {
				t.Fatal(err)
			}
			total.Add(int64(c.images))
			deep.Add(int64(c.deepImages))
			if c.checkpoints > 0 {
				checkpointed.Add(1)
			}
		})
	}
	t.Cleanup(func() {
		n := total.Load()
		t.Logf("%d histories (%d of them checkpoint): %d crash images recovered and checked, %d of them after a crash during recovery",
			histories, checkpointed.Load(), n, deep.Load())
		if !t.Failed() && n < 10_000 {
			t.Errorf("only %d crash images checked, want at least 10,000", n)
		}
	})
}

// FuzzCrashHistory explores one history per input under go test -fuzz.
func FuzzCrashHistory(f *testing.F) {
	for _, s := range []uint64{1, 2, 3} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, seed uint64) {
		c := &crashRun{t: t, h: genHistory(seed), opts: Options{DeferApply: seed%2 == 1, MaxInFlight: 1 + int(seed/2%3)}, rng: rand.New(rand.NewPCG(seed, 99)),
			samples: 2 * crashScale(), recoverEvery: 32}
		if err := c.explore(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestCrashTwice crashes a history, recovers, runs a second history on the
// recovered device and crashes that too: the second recovery must find the
// first one's result plus a prefix of the second history. This is what
// catches batches left in the journal area by the first life being taken
// for the second life's.
func TestCrashTwice(t *testing.T) {
	scale := crashScale()
	var total atomic.Int64
	for i := range 4 * scale {
		seed := uint64(1000 + i)
		opts := Options{DeferApply: i%2 == 1, MaxInFlight: 1 + i%3}
		t.Run(fmt.Sprintf("seed=%d/defer=%v/inflight=%d", seed, opts.DeferApply, opts.MaxInFlight), func(t *testing.T) {
			t.Parallel()
			// The second life repeats the first with other stamps: its
			// batches then fall exactly where the first life's did.
			h1 := genHistory(seed)
			c := &crashTwice{t: t, opts: opts, h1: h1, h2: h1.restamped(seed * 0x9e3779b97f4a7c15),
				rng: rand.New(rand.NewPCG(seed, 98)), step: 4, samples: 2}
			if err := c.explore(); err != nil {
				t.Fatal(err)
			}
			total.Add(int64(c.images))
		})
	}
	t.Cleanup(func() { t.Logf("%d crash images after two lives recovered and checked", total.Load()) })
}

type crashTwice struct {
	t       testing.TB
	opts    Options
	h1, h2  *history
	rng     *rand.Rand
	step    int // the second life is cut at every step-th op (rotating)
	samples int // images per cut
	images  int
}

// opsOf counts the device ops of running h on a journal opened on img.
func (c *crashTwice) opsOf(img []byte, h *history) (int64, error) {
	dev := device.NewCrashFrom(append([]byte(nil), img...))
	j, err := Open(dev, 0, crashJSize, c.opts)
	if err != nil {
		return 0, err
	}
	base := dev.Ops()
	res := h.run(j)
	j.Close()
	for _, x := range h.txs {
		if res[x.id] != nil && !x.discard {
			return 0, fmt.Errorf("tx %d failed without a crash: %v", x.id, res[x.id])
		}
	}
	return dev.Ops() - base, nil
}

func (c *crashTwice) explore() error {
	dev, j := newCrashJournal(c.t, c.opts)
	fresh := dev.DurableImage()
	j.Close()
	total1, err := c.opsOf(fresh, c.h1)
	if err != nil {
		return err
	}
	for n1 := int64(0); n1 <= total1; n1++ {
		dev := device.NewCrashFrom(append([]byte(nil), fresh...))
		j, err := Open(dev, 0, crashJSize, c.opts)
		if err != nil {
			return err
		}
		dev.CutAfter(n1)
		res1 := c.h1.run(j)
		j.Close()
		for s := range c.samples {
			// The first sample keeps only the last unsynced write: the one
			// a cut right after it is most likely to matter for (a batch
			// whose header never landed, say). The others are random.
			img1 := dev.Image(c.rng)
			if s == 0 {
				if ch := dev.Choices(); len(ch) > 0 {
					pick := make([]int, len(ch))
					pick[len(ch)-1] = 1
					img1 = dev.ImageFor(pick)
				}
			}
			if err := c.secondLife(img1, res1, n1); err != nil {
				return fmt.Errorf("seeds %d, %d (%+v): first life cut after %d of %d ops, sample %d: %w",
					c.h1.seed, c.h2.seed, c.opts, n1, total1, s, err)
			}
		}
	}
	return nil
}

func (c *crashTwice) secondLife(img1 []byte, res1 []error, n1 int64) error {
	rec, err := recoverFull(img1)
	if err != nil {
		return fmt.Errorf("first recovery: %w", err)
	}
	home1 := rec[crashHome:]
	if _, err := c.h1.check(nil, home1, res1); err != nil {
		return fmt.Errorf("first recovery: %w", err)
	}
	total2, err := c.opsOf(rec, c.h2)
	if err != nil {
		return fmt.Errorf("second life: %w", err)
	}
	for n2 := n1 % int64(c.step); n2 <= total2; n2 += int64(c.step) {
		dev := device.NewCrashFrom(append([]byte(nil), rec...))
		j, err := Open(dev, 0, crashJSize, c.opts)
		if err != nil {
			return err
		}
		dev.CutAfter(n2)
		res2 := c.h2.run(j)
		j.Close()
		for s := range c.samples {
			home, _, err := recoverImage(dev.Image(c.rng), -1)
			if err != nil {
				return fmt.Errorf("second life cut after %d of %d ops: Open: %w", n2, total2, err)
			}
			c.images++
			if _, err := c.h2.check(home1, home, res2); err != nil {
				return fmt.Errorf("second life cut after %d of %d ops, sample %d: %w", n2, total2, s, err)
			}
		}
	}
	return nil
}

// TestCrashCheckerCatchesTornReplay turns on a planted bug — recovery
// replays a journal batch whose checksum does not match — and checks that
// the crash exploration above reports it: the checker has teeth.
func TestCrashCheckerCatchesTornReplay(t *testing.T) {
	testhooks.ReplayTornJournal.Store(true)
	defer testhooks.ReplayTornJournal.Store(false)
	for seed := uint64(1); seed <= 20; seed++ {
		c := &crashRun{t: t, h: genHistory(seed), rng: rand.New(rand.NewPCG(seed, 99)), samples: 16}
		if err := c.explore(); err != nil {
			t.Logf("planted bug caught after %d images: %v", c.images, err)
			return
		}
	}
	t.Fatalf("20 histories did not catch recovery replaying torn batches")
}

// TestCheckpointHeaderLost is the two-life case the random tests reach only
// by luck: a checkpoint's new header never lands but the first batch of the
// new generation does, over the start of the old generation. Recovery then
// uses the old header, and the old generation's other batches stay in the
// area with the sequences right after its start. The next life must not
// number its batches so that a later recovery takes those stale batches
// for its own.
func TestCheckpointHeaderLost(t *testing.T) {
	const slotX = crashHome + 8 // every transaction of the first life writes it
	const slotY = crashHome + 64
	dev := device.NewCrash(crashDevSize)
	if err := Format(dev, 0, MinSize); err != nil {
		t.Fatal(err)
	}
	j, err := Open(dev, 0, MinSize, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Each transaction is one 512-byte batch: 32 of them fill the area.
	area := MinSize - 2*slot
	n := area / device.SectorSize
	for i := range n {
		mustCommit(t, j, w(slotX, stamp(uint64(i+1))))
	}
	if cp := j.Stats().Checkpoints; cp != 1 {
		t.Fatalf("checkpointed %d times before the area was full", cp-1)
	}
	// The next commit checkpoints: sync, header, header sync, batch, sync.
	// Since the header is synced before the batch is written, a crash can
	// no longer drop the header and keep the batch; earlier versions could,
	// and recovery must still cope with the logs they left. So the image
	// is made by hand: the checkpoint completes, then its header slot gets
	// its old bytes back.
	before := dev.DurableImage()
	mustCommit(t, j, w(slotX, stamp(1000)))
	j.Close()
	img := dev.ImageFor(nil)
	restored := 0
	for s := int64(0); s < 2*slot; s += slot {
		if !bytes.Equal(img[s:s+slot], before[s:s+slot]) {
			copy(img[s:s+slot], before[s:s+slot])
			restored++
		}
	}
	if restored != 1 {
		t.Fatalf("the checkpoint changed %d header slots, want 1", restored)
	}

	// Second life: one transaction, acknowledged, then a crash that keeps
	// only what was synced.
	dev2 := device.NewCrashFrom(img)
	j2, err := Open(dev2, 0, MinSize, Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantAt(t, dev2, slotX, stamp(uint64(n)))
	mustCommit(t, j2, w(slotX, stamp(2000)), w(slotY, stamp(2000)))
	j2.Close()

	dev3 := device.NewCrashFrom(dev2.DurableImage())
	mustOpen(t, dev3, 0, MinSize)
	wantAt(t, dev3, slotY, stamp(2000))
	wantAt(t, dev3, slotX, stamp(2000))
}
