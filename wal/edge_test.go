package wal

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/ringlog/ringlog/device"
)

// bigBlockDev reports a block size larger than a header slot.
type bigBlockDev struct{ device.Device }

func (bigBlockDev) BlockSize() int { return 2 * slot }

func TestFormatOpenGeometry(t *testing.T) {
	const devSize = 64 << 10
	cases := []struct {
		name      string
		off, size int64
		dev       func() device.Device
	}{
		{"misaligned offset", 100, MinSize, nil},
		{"offset not a slot multiple", device.SectorSize, MinSize, nil},
		{"negative offset", -slot, MinSize, nil},
		{"too small", 0, MinSize - slot, nil},
		{"zero size", 0, 0, nil},
		{"size not a slot multiple", 0, MinSize + device.SectorSize, nil},
		{"beyond device", devSize - MinSize + slot, MinSize, nil},
		{"larger than device", 0, devSize + slot, nil},
		{"block size larger than a slot", 0, MinSize, func() device.Device { return bigBlockDev{device.NewMem(devSize)} }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var dev device.Device = device.NewMem(devSize)
			if c.dev != nil {
				dev = c.dev()
			}
			if err := Format(dev, c.off, c.size); !errors.Is(err, ErrBadFormat) {
				t.Errorf("Format(%d, %d) = %v, want ErrBadFormat", c.off, c.size, err)
			}
			j, err := Open(dev, c.off, c.size, Options{})
			if !errors.Is(err, ErrBadFormat) {
				t.Errorf("Open(%d, %d) = %v, want ErrBadFormat", c.off, c.size, err)
			}
			if j != nil {
				j.Close()
				t.Errorf("Open returned a journal with an error")
			}
		})
	}
	// The largest region that fits is fine.
	dev := device.NewMem(devSize)
	j := formatOpen(t, dev, slot, devSize-slot)
	if off, size := j.Region(); off != slot || size != devSize-slot {
		t.Errorf("Region() = %d, %d; want %d, %d", off, size, slot, devSize-slot)
	}
	mustCommit(t, j, w(0, []byte("below the journal")))
	wantAt(t, dev, 0, []byte("below the journal"))
}

func TestOpenNotAJournal(t *testing.T) {
	const devSize = 64 << 10
	t.Run("zeros", func(t *testing.T) {
		openFails(t, device.NewMem(devSize), 0, MinSize, ErrBadFormat)
	})
	t.Run("noise", func(t *testing.T) {
		dev := device.NewMem(devSize)
		noise := make([]byte, devSize)
		r := rand.New(rand.NewPCG(1, 2))
		for i := range noise {
			noise[i] = byte(r.Uint32())
		}
		dev.WriteAt(noise, 0)
		openFails(t, dev, 0, MinSize, ErrBadFormat)
	})
	t.Run("other size", func(t *testing.T) {
		dev := device.NewMem(devSize)
		if err := Format(dev, 0, MinSize+slot); err != nil {
			t.Fatal(err)
		}
		// A smaller region than formatted, and one at another offset.
		openFails(t, dev, 0, MinSize, ErrBadFormat)
		openFails(t, dev, slot, MinSize, ErrBadFormat)
	})
	t.Run("other version", func(t *testing.T) {
		dev := device.NewMem(devSize)
		if err := Format(dev, 0, MinSize); err != nil {
			t.Fatal(err)
		}
		// Rewrite both copies as a well-formed header of another version.
		for i := range int64(2) {
			b := readAt(t, dev, i*slot, headerLen)
			b[4]++
			copy(b[40:], stamp(xxhashSum(b[:40])))
			dev.WriteAt(b, i*slot)
		}
		openFails(t, dev, 0, MinSize, ErrBadFormat)
	})
}

// openFails checks that Open fails with an error wrapping want.
func openFails(t *testing.T, dev device.Device, off, size int64, want error) {
	t.Helper()
	j, err := Open(dev, off, size, Options{})
	if err == nil {
		j.Close()
	}
	if !errors.Is(err, want) {
		t.Fatalf("Open(%d, %d) = %v, want %v", off, size, err, want)
	}
}

func TestReopenKeepsData(t *testing.T) {
	dev := device.NewMem(64 << 10)
	j := formatOpen(t, dev, 0, MinSize)
	for i := range 20 {
		mustCommit(t, j, w(MinSize+int64(i)*100, stamp(uint64(i+1))))
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = mustOpen(t, dev, 0, MinSize)
	if got := j.Stats().Replayed; got == 0 {
		t.Errorf("Replayed = 0 after reopening a journal holding 20 batches")
	}
	for i := range 20 {
		wantAt(t, dev, MinSize+int64(i)*100, stamp(uint64(i+1)))
	}
	// Reopened journals go on committing after the replayed ones.
	mustCommit(t, j, w(MinSize, stamp(99)))
	wantAt(t, dev, MinSize, stamp(99))
}

// TestReplayAfterCrash drops every unsynced write (the last home writes: the
// journal does not sync them) and checks that Open puts them back.
func TestReplayAfterCrash(t *testing.T) {
	dev := device.NewCrash(64 << 10)
	j := formatOpen(t, dev, 0, MinSize)
	for i := range 10 {
		mustCommit(t, j, w(MinSize+int64(i)*700, bytes.Repeat(stamp(uint64(i+1)), 20)))
	}
	if dev.Pending() == 0 {
		t.Fatalf("no unsynced home writes: the test shows nothing")
	}
	j.Close()
	img := dev.DurableImage()
	// Each batch's sync also makes the home writes before it durable; the
	// last transaction's are not.
	if last := MinSize + 9*700; bytes.Equal(img[last:last+8], stamp(10)) {
		t.Fatalf("home write already durable: the test shows nothing")
	}
	dev2 := device.NewCrashFrom(img)
	j2 := mustOpen(t, dev2, 0, MinSize)
	if got := j2.Stats().Replayed; got != 10 {
		t.Errorf("Replayed = %d, want 10", got)
	}
	for i := range 10 {
		wantAt(t, dev2, MinSize+int64(i)*700, bytes.Repeat(stamp(uint64(i+1)), 20))
	}
}

func TestHeaderCopyFallback(t *testing.T) {
	const devSize = 64 << 10
	setup := func(t *testing.T) *device.Mem {
		dev := device.NewMem(devSize)
		j := formatOpen(t, dev, 0, MinSize)
		for i := range 5 {
			mustCommit(t, j, w(MinSize+int64(i)*8, stamp(uint64(i+1))))
		}
		j.Close()
		// Undo the home writes so that only replay can restore them.
		dev.WriteAt(make([]byte, 40), MinSize)
		return dev
	}
	corrupt := func(dev device.Device, copyNo int64) {
		b := make([]byte, 1)
		dev.ReadAt(b, copyNo*slot+10)
		b[0] ^= 0x5a
		dev.WriteAt(b, copyNo*slot+10)
	}
	for _, c := range []struct {
		name   string
		copies []int64
	}{
		{"first copy", []int64{0}},
		{"second copy", []int64{1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dev := setup(t)
			for _, n := range c.copies {
				corrupt(dev, n)
			}
			j := mustOpen(t, dev, 0, MinSize)
			for i := range 5 {
				wantAt(t, dev, MinSize+int64(i)*8, stamp(uint64(i+1)))
			}
			mustCommit(t, j, w(MinSize, stamp(77)))
			j.Close()
			// Open wrote a fresh generation over the corrupt copy.
			mustOpen(t, dev, 0, MinSize)
			wantAt(t, dev, MinSize, stamp(77))
		})
	}
	t.Run("both copies", func(t *testing.T) {
		dev := setup(t)
		corrupt(dev, 0)
		corrupt(dev, 1)
		openFails(t, dev, 0, MinSize, ErrBadFormat)
	})
}

func TestTooLarge(t *testing.T) {
	dev := device.NewMem(64 << 10)
	j := formatOpen(t, dev, 0, MinSize)
	area := MinSize - 2*slot
	// The largest transaction that fits: batch header, tx count, one write header.
	maxData := area - batchHeaderLen - 4 - writeHeaderLen
	before := j.Stats()
	big := bytes.Repeat([]byte{0xab}, maxData+1)
	err := commitOne(j, w(MinSize, big))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Commit of %d bytes in a %d-byte area = %v, want ErrTooLarge", len(big), area, err)
	}
	if after := j.Stats(); after.Syncs != before.Syncs || after.Groups != before.Groups {
		t.Errorf("a rejected transaction cost I/O: stats %+v -> %+v", before, after)
	}
	if j.Err() != nil {
		t.Fatalf("ErrTooLarge failed the journal: %v", j.Err())
	}
	wantAt(t, dev, MinSize, make([]byte, 16))
	// Several writes that only add up to too much are rejected too.
	tx := j.Begin()
	for i := range 4 {
		tx.Write(MinSize+int64(i)*5000, bytes.Repeat([]byte{1}, 4500))
	}
	if err := j.Commit(context.Background(), tx); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Commit of 4x4500 bytes = %v, want ErrTooLarge", err)
	}
	// Exactly full batches fit, and the second forces a checkpoint.
	for i := range 3 {
		data := bytes.Repeat([]byte{byte(i + 1)}, maxData)
		mustCommit(t, j, w(MinSize, data))
		wantAt(t, dev, MinSize, data)
	}
	if got := j.Stats().Checkpoints; got < 3 {
		t.Errorf("Checkpoints = %d after three full-area batches, want >= 3", got)
	}
	mustCommit(t, j, w(MinSize+100, stamp(5)))
	wantAt(t, dev, MinSize+100, stamp(5))
	j.Close()
	mustOpen(t, dev, 0, MinSize)
	wantAt(t, dev, MinSize, bytes.Repeat([]byte{3}, 100))
	wantAt(t, dev, MinSize+100, stamp(5))
}

func TestBadWrite(t *testing.T) {
	const devSize = 64 << 10
	const joff = 16 << 10
	dev := device.NewMem(devSize)
	j := formatOpen(t, dev, joff, MinSize)
	cases := []struct {
		name string
		off  int64
		n    int
	}{
		{"negative offset", -8, 8},
		{"beyond device", devSize, 1},
		{"straddles device end", devSize - 4, 8},
		{"straddles journal start", joff - 4, 8},
		{"inside journal", joff + 100, 8},
		{"straddles journal end", joff + MinSize - 1, 2},
		{"covers journal", joff - 1, MinSize + 2},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tx := j.Begin()
			tx.Write(100, stamp(uint64(i+1))) // a good write in the same tx
			tx.Write(c.off, make([]byte, c.n))
			tx.Write(200, stamp(uint64(i+1)))
			if err := j.Commit(context.Background(), tx); !errors.Is(err, ErrBadWrite) {
				t.Fatalf("Commit with a write of %d bytes at %d = %v, want ErrBadWrite", c.n, c.off, err)
			}
			// None of the transaction is applied.
			wantAt(t, dev, 100, make([]byte, 8))
			wantAt(t, dev, 200, make([]byte, 8))
			if j.Err() != nil {
				t.Fatalf("ErrBadWrite failed the journal: %v", j.Err())
			}
		})
	}
	// Right up to the journal and the device end is fine.
	mustCommit(t, j, w(joff-8, stamp(1)), w(joff+MinSize, stamp(2)), w(devSize-8, stamp(3)), w(0, stamp(4)))
	wantAt(t, dev, joff-8, stamp(1))
	wantAt(t, dev, joff+MinSize, stamp(2))
	wantAt(t, dev, devSize-8, stamp(3))
	wantAt(t, dev, 0, stamp(4))
}

// TestDeviceSizeNotBlockMultiple writes the last bytes of a device whose size
// is not a multiple of its block size: applying the write must not read or
// write past the end of the device.
func TestDeviceSizeNotBlockMultiple(t *testing.T) {
	const devSize = 64<<10 + 100
	dev := device.NewCrash(devSize)
	j := formatOpen(t, dev, 0, MinSize)
	mustCommit(t, j, w(devSize-8, stamp(1)), w(devSize-200, stamp(2)))
	wantAt(t, dev, devSize-8, stamp(1))
	wantAt(t, dev, devSize-200, stamp(2))
	j.Close()
	// Replay applies the same write again.
	dev2 := device.NewCrashFrom(dev.DurableImage())
	mustOpen(t, dev2, 0, MinSize)
	wantAt(t, dev2, devSize-8, stamp(1))
	wantAt(t, dev2, devSize-200, stamp(2))
}

func TestEmptyTransactions(t *testing.T) {
	dev := device.NewMem(64 << 10)
	j := formatOpen(t, dev, 0, MinSize)
	mustCommit(t, j)
	mustCommit(t, j, w(MinSize, nil), w(MinSize+8, []byte{}))
	tx := j.Begin()
	tx.Write(MinSize, stamp(9))
	tx.Write(MinSize+8, stamp(9))
	tx.Write(-1, stamp(9)) // bad writes are not counted
	if tx.Len() != 2 {
		t.Errorf("Len() = %d after two good writes and a bad one, want 2", tx.Len())
	}
	tx.Discard()
	mustCommit(t, j, w(MinSize, stamp(1)))
	wantAt(t, dev, MinSize, stamp(1))
	j.Close()
	mustOpen(t, dev, 0, MinSize)
	wantAt(t, dev, MinSize, stamp(1))
}

func TestClosed(t *testing.T) {
	dev := device.NewMem(64 << 10)
	j := formatOpen(t, dev, 0, MinSize)
	mustCommit(t, j, w(MinSize+8, stamp(2)))
	early := j.Begin()
	early.Write(MinSize, stamp(1))
	if err := j.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := j.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
	if err := j.Commit(context.Background(), early); !errors.Is(err, ErrClosed) {
		t.Errorf("Commit of a tx begun before Close = %v, want ErrClosed", err)
	}
	if err := commitOne(j, w(MinSize+16, stamp(3))); !errors.Is(err, ErrClosed) {
		t.Errorf("Commit after Close = %v, want ErrClosed", err)
	}
	j.Begin().Discard() // must not block
	wantAt(t, dev, MinSize, make([]byte, 8))
	wantAt(t, dev, MinSize+8, stamp(2))
	wantAt(t, dev, MinSize+16, make([]byte, 8))
}

// TestCloseFailsWaiters closes a journal while Commits wait for an earlier
// transaction that is never committed: they end with ErrClosed.
func TestCloseFailsWaiters(t *testing.T) {
	dev := device.NewMem(64 << 10)
	j := formatOpen(t, dev, 0, MinSize)
	blocker := j.Begin()
	const n = 8
	res := make(chan error, n)
	var txs []*Tx
	for i := range n {
		tx := j.Begin()
		tx.Write(MinSize+int64(i)*8, stamp(uint64(i+1)))
		txs = append(txs, tx)
		go func() { res <- j.Commit(context.Background(), tx) }()
	}
	waitTaken(t, j, txs...)
	j.Close()
	for range n {
		if err := <-res; !errors.Is(err, ErrClosed) {
			t.Errorf("waiting Commit after Close = %v, want ErrClosed", err)
		}
	}
	if err := j.Commit(context.Background(), blocker); !errors.Is(err, ErrClosed) {
		t.Errorf("Commit(blocker) after Close = %v, want ErrClosed", err)
	}
	wantAt(t, dev, MinSize, make([]byte, n*8))
}

func TestCommitOrder(t *testing.T) {
	dev := device.NewMem(64 << 10)
	j := formatOpen(t, dev, 0, MinSize)
	first := j.Begin()
	second := j.Begin()
	first.Write(MinSize, []byte("first"))
	first.Write(MinSize+100, []byte("only first"))
	second.Write(MinSize, []byte("SECND"))
	res := make(chan error, 1)
	go func() { res <- j.Commit(context.Background(), second) }()
	// second cannot take effect before first.
	waitTaken(t, j, second)
	select {
	case err := <-res:
		t.Fatalf("Commit of the later-begun tx returned (%v) before the earlier one was committed", err)
	default:
	}
	wantAt(t, dev, MinSize, make([]byte, 5))
	if err := j.Commit(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	wantAt(t, dev, MinSize, []byte("SECND"))
	wantAt(t, dev, MinSize+100, []byte("only first"))
	j.Close()
	mustOpen(t, dev, 0, MinSize)
	wantAt(t, dev, MinSize, []byte("SECND"))
}

func TestDoubleCommit(t *testing.T) {
	dev := device.NewMem(64 << 10)
	j := formatOpen(t, dev, 0, MinSize)
	tx := j.Begin()
	tx.Write(MinSize, stamp(1))
	if err := j.Commit(context.Background(), tx); err != nil {
		t.Fatal(err)
	}
	if err := j.Commit(context.Background(), tx); !errors.Is(err, ErrDiscarded) {
		t.Fatalf("second Commit = %v, want ErrDiscarded", err)
	}
	tx.Discard() // no effect on a committed tx
	wantAt(t, dev, MinSize, stamp(1))

	other := formatOpen(t, device.NewMem(64<<10), 0, MinSize)
	foreign := other.Begin()
	foreign.Write(MinSize, stamp(2))
	if err := j.Commit(context.Background(), foreign); !errors.Is(err, ErrDiscarded) {
		t.Fatalf("Commit of another journal's tx = %v, want ErrDiscarded", err)
	}
	// The foreign tx is still usable where it belongs.
	if err := other.Commit(context.Background(), foreign); err != nil {
		t.Fatalf("Commit on its own journal: %v", err)
	}
	mustCommit(t, j, w(MinSize+8, stamp(3)))
}

func TestDiscard(t *testing.T) {
	dev := device.NewMem(64 << 10)
	j := formatOpen(t, dev, 0, MinSize)
	dropped := j.Begin()
	dropped.Write(MinSize, stamp(1))
	later := j.Begin()
	later.Write(MinSize+8, stamp(2))
	res := make(chan error, 1)
	go func() { res <- j.Commit(context.Background(), later) }()
	waitTaken(t, j, later)
	dropped.Discard()
	if err := <-res; err != nil {
		t.Fatalf("Commit after the earlier tx was discarded: %v", err)
	}
	dropped.Discard() // twice is harmless
	if err := j.Commit(context.Background(), dropped); !errors.Is(err, ErrDiscarded) {
		t.Fatalf("Commit of a discarded tx = %v, want ErrDiscarded", err)
	}
	wantAt(t, dev, MinSize, make([]byte, 8))
	wantAt(t, dev, MinSize+8, stamp(2))
	mustCommit(t, j, w(MinSize+16, stamp(3)))
	wantAt(t, dev, MinSize+16, stamp(3))
}

func TestCancelledCommit(t *testing.T) {
	for _, when := range []string{"before", "while waiting"} {
		t.Run(when, func(t *testing.T) {
			dev := device.NewMem(64 << 10)
			j := formatOpen(t, dev, 0, MinSize)
			blocker := j.Begin()
			blocker.Write(MinSize, stamp(1))
			waiting := j.Begin()
			waiting.Write(MinSize+8, stamp(2))
			waiting.Write(MinSize, stamp(22))
			ctx, cancel := context.WithCancel(context.Background())
			var err error
			if when == "before" {
				cancel()
				err = j.Commit(ctx, waiting)
			} else {
				res := make(chan error, 1)
				go func() { res <- j.Commit(ctx, waiting) }()
				waitTaken(t, j, waiting)
				cancel()
				err = <-res
			}
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Commit with a cancelled context behind an open tx = %v, want context.Canceled", err)
			}
			if err := j.Commit(context.Background(), waiting); !errors.Is(err, ErrDiscarded) {
				t.Errorf("Commit of an abandoned tx = %v, want ErrDiscarded", err)
			}
			if err := j.Commit(context.Background(), blocker); err != nil {
				t.Fatalf("Commit(blocker): %v", err)
			}
			mustCommit(t, j, w(MinSize+16, stamp(3)))
			wantAt(t, dev, MinSize, stamp(1))
			wantAt(t, dev, MinSize+8, make([]byte, 8))
			wantAt(t, dev, MinSize+16, stamp(3))
			j.Close()
			mustOpen(t, dev, 0, MinSize)
			wantAt(t, dev, MinSize, stamp(1))
			wantAt(t, dev, MinSize+8, make([]byte, 8))
			wantAt(t, dev, MinSize+16, stamp(3))
		})
	}
}

func TestCheckpointsAndStats(t *testing.T) {
	dev := device.NewCrash(128 << 10)
	j := formatOpen(t, dev, 0, MinSize)
	home := int64(MinSize)
	const n = 200
	for i := range n {
		// 1 KiB + 40 bytes: four of these fill a third of the area.
		mustCommit(t, j, w(home+int64(i%50)*1100, bytes.Repeat(stamp(uint64(i+1)), 130)))
	}
	st := j.Stats()
	if st.Commits != n || st.Groups != n {
		t.Errorf("Commits, Groups = %d, %d; want %d, %d (sequential commits)", st.Commits, st.Groups, n, n)
	}
	if st.Checkpoints < 10 {
		t.Errorf("Checkpoints = %d after %d KiB of batches in a 16 KiB area", st.Checkpoints, n*3/2)
	}
	// Open syncs twice; every group once; every checkpoint after Open's
	// twice (the home writes, then its header before the batch).
	if want := 2 + st.Groups + 2*(st.Checkpoints-1); st.Syncs != want {
		t.Errorf("Syncs = %d, want %d (stats %+v)", st.Syncs, want, st)
	}
	j.Close()
	dev2 := device.NewCrashFrom(dev.DurableImage())
	mustOpen(t, dev2, 0, MinSize)
	for i := n - 50; i < n; i++ {
		wantAt(t, dev2, home+int64(i%50)*1100, bytes.Repeat(stamp(uint64(i+1)), 130))
	}
}

// gateDev holds the next Sync after arm until release, so that a test can
// queue transactions behind a batch in flight.
type gateDev struct {
	device.Device
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func newGate(dev device.Device) *gateDev {
	return &gateDev{Device: dev, entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *gateDev) Sync() error {
	if g.armed.CompareAndSwap(true, false) {
		g.entered <- struct{}{}
		<-g.release
	}
	return g.Device.Sync()
}

// holdSync commits one transaction and returns once the committer is inside
// its Sync; the Commit's result arrives on the returned channel after the
// gate is released.
func holdSync(t testing.TB, j *Journal, g *gateDev, ws ...write) <-chan error {
	t.Helper()
	g.armed.Store(true)
	res := make(chan error, 1)
	go func() { res <- commitOne(j, ws...) }()
	<-g.entered
	return res
}

func TestGroupCommit(t *testing.T) {
	mem := device.NewMem(64 << 10)
	if err := Format(mem, 0, MinSize); err != nil {
		t.Fatal(err)
	}
	g := newGate(mem)
	j := mustOpen(t, g, 0, MinSize)
	first := holdSync(t, j, g, w(MinSize, stamp(1)))
	const n = 40
	res := make(chan error, n)
	for i := range n {
		go func() { res <- commitOne(j, w(MinSize+8+int64(i)*8, stamp(uint64(i+2)))) }()
	}
	waitSubmitted(t, j, n)
	before := j.Stats()
	g.release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-res; err != nil {
			t.Fatal(err)
		}
	}
	after := j.Stats()
	if groups := after.Groups - before.Groups; groups != 2 {
		t.Errorf("%d queued commits took %d groups after the one in flight, want 1", n, groups-1)
	}
	if syncs := after.Syncs - before.Syncs; syncs != 2 {
		t.Errorf("%d queued commits cost %d syncs, want 1 (+1 for the one in flight)", n, syncs-1)
	}
	for i := range n + 1 {
		wantAt(t, mem, MinSize+int64(i)*8, stamp(uint64(i+1)))
	}
}

func TestMaxBatch(t *testing.T) {
	mem := device.NewMem(64 << 10)
	if err := Format(mem, 0, MinSize); err != nil {
		t.Fatal(err)
	}
	g := newGate(mem)
	const dataLen = 100
	txLen := 4 + writeHeaderLen + dataLen
	j, err := Open(g, 0, MinSize, Options{MaxBatch: batchHeaderLen + 2*txLen})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	first := holdSync(t, j, g, w(MinSize, make([]byte, dataLen)))
	const n = 10
	res := make(chan error, n)
	for i := range n {
		go func() {
			res <- commitOne(j, w(MinSize+int64(i)*dataLen, bytes.Repeat([]byte{byte(i + 1)}, dataLen)))
		}()
	}
	waitSubmitted(t, j, n)
	before := j.Stats()
	g.release <- struct{}{}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-res; err != nil {
			t.Fatal(err)
		}
	}
	if groups := j.Stats().Groups - before.Groups; groups != 1+n/2 {
		t.Errorf("%d commits with room for 2 per batch took %d groups, want %d", n, groups-1, n/2)
	}
	for i := range n {
		wantAt(t, mem, MinSize+int64(i)*dataLen, bytes.Repeat([]byte{byte(i + 1)}, dataLen))
	}
}

// waitSubmitted waits until n Commits are queued in the journal's channel,
// behind a batch held in its Sync. It polls: the channel is the only place
// they can be observed, and nothing else signals their arrival.
func waitSubmitted(t testing.TB, j *Journal, n int) {
	t.Helper()
	for len(j.submit) < n {
		runtime.Gosched()
	}
}

// waitTaken waits until every tx was handed to Commit and the committer
// has drained its channel (so they wait for an earlier transaction, not
// for the committer). It polls: nothing else signals this.
func waitTaken(t testing.TB, j *Journal, txs ...*Tx) {
	t.Helper()
	for {
		queued := len(j.submit) == 0
		for _, tx := range txs {
			if tx.state.Load() == txOpen {
				queued = false
			}
		}
		if queued {
			return
		}
		runtime.Gosched()
	}
}

func xxhashSum(b []byte) uint64 { return xxhash.Sum64(b) }

// TestFormatOverOldJournal formats a region that held a journal with
// batches past the part Format clears: none of them may be replayed as the
// new journal's.
func TestFormatOverOldJournal(t *testing.T) {
	const slotX = MinSize + 8
	dev := device.NewCrash(64 << 10)
	j := formatOpen(t, dev, 0, MinSize)
	for i := range 20 { // 512-byte batches: well past Format's cleared slot
		mustCommit(t, j, w(slotX, stamp(uint64(i+1))))
	}
	j.Close()
	if err := Format(dev, 0, MinSize); err != nil {
		t.Fatal(err)
	}
	j = mustOpen(t, dev, 0, MinSize)
	if r := j.Stats().Replayed; r != 0 {
		t.Fatalf("a freshly formatted journal replayed %d batches", r)
	}
	for i := range 12 {
		mustCommit(t, j, w(slotX, stamp(uint64(100+i))))
	}
	j.Close()
	// Only synced writes survive: the last home write is replayed.
	dev2 := device.NewCrashFrom(dev.DurableImage())
	mustOpen(t, dev2, 0, MinSize)
	wantAt(t, dev2, slotX, stamp(111))
}

// blockSized reports a block size of its own over a device that accepts
// any multiple of 512, as a buffered device reporting its best block size
// does.
type blockSized struct {
	device.Device
	bs int
}

func (d blockSized) BlockSize() int { return d.bs }

// TestReplayOnLargerBlocks writes batches with 512-byte blocks, so they
// start at any multiple of 512, up to the end of the area, and replays them
// on a device of 4096-byte blocks (the same log opened with O_DIRECT):
// every batch is found and applied, none is skipped.
func TestReplayOnLargerBlocks(t *testing.T) {
	dev := device.NewMem(64 << 10)
	j := formatOpen(t, dev, 0, MinSize)
	area := MinSize - 2*slot
	n := int(area/device.SectorSize) - 1 // one sector-sized batch each: the area's last 4 KiB too
	for i := range n {
		mustCommit(t, j, w(MinSize+int64(i)*8, stamp(uint64(i+1))))
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	// Undo the home writes, so that only replay can restore them.
	dev.WriteAt(make([]byte, n*8), MinSize)
	img := bytes.Clone(dev.Bytes())
	small := device.NewMem(int64(len(img)))
	small.WriteAt(img, 0)
	js := mustOpen(t, small, 0, MinSize)
	large := device.NewMem(int64(len(img)))
	large.WriteAt(img, 0)
	jl := mustOpen(t, blockSized{large, 4096}, 0, MinSize)
	if got, wantN := jl.Stats().Replayed, js.Stats().Replayed; got != wantN || got == 0 {
		t.Errorf("replayed %d batches with 4096-byte blocks, %d with 512", got, wantN)
	}
	for i := range n {
		wantAt(t, large, MinSize+int64(i)*8, stamp(uint64(i+1)))
	}
}
