package device

import (
	"errors"
	"math/rand/v2"
	"sync"
)

// ErrPowerCut is returned by a Crash device for every write and sync after
// its power was cut (see CutAfter).
var ErrPowerCut = errors.New("device: power cut")

// Crash is an in-memory Device that remembers every write since the last
// successful Sync, so that a test can ask what a power cut at this instant
// could leave on the medium.
//
// The model: synced data is always there. Each write since the last Sync
// independently landed whole, did not land at all, or was torn: some of its
// 512-byte sectors landed and the others did not, in any pattern, as the
// pages of one write reach the disk in no fixed order (sector writes may be
// torn, a write never damages bytes outside its own range). Writes land in
// issue order where they overlap.
//
// Reads see every write, as a page cache would. Crash is safe for concurrent
// use.
type Crash struct {
	mu        sync.Mutex
	durable   []byte
	current   []byte
	pending   []pendingWrite
	blockSize int
	ops       int64 // writes and syncs performed
	cutAt     int64 // power fails once ops reaches this; <0: never
	closed    bool
}

type pendingWrite struct {
	off  int64
	data []byte
}

// NewCrash returns a zero-filled crash-simulating device of size bytes.
func NewCrash(size int64) *Crash {
	return NewCrashFrom(make([]byte, size))
}

// NewCrashFrom returns a crash-simulating device whose durable contents are
// img (which it takes over): the device a machine boots with after a crash.
func NewCrashFrom(img []byte) *Crash {
	return &Crash{durable: img, current: append([]byte(nil), img...), blockSize: SectorSize, cutAt: -1}
}

// ReadAt implements io.ReaderAt; it sees every write, synced or not.
func (c *Crash) ReadAt(p []byte, off int64) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, ErrClosed
	}
	if err := checkRange("read", off, len(p), int64(len(c.current))); err != nil {
		return 0, err
	}
	return copy(p, c.current[off:]), nil
}

// WriteAt implements io.WriterAt.
func (c *Crash) WriteAt(p []byte, off int64) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.op(); err != nil {
		return 0, err
	}
	if err := checkRange("write", off, len(p), int64(len(c.current))); err != nil {
		return 0, err
	}
	copy(c.current[off:], p)
	c.pending = append(c.pending, pendingWrite{off: off, data: append([]byte(nil), p...)})
	return len(p), nil
}

// Sync makes every write so far durable.
func (c *Crash) Sync() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.op(); err != nil {
		return err
	}
	for _, w := range c.pending {
		copy(c.durable[w.off:], w.data)
	}
	c.pending = c.pending[:0]
	return nil
}

// op counts one mutating operation and fails it once the power is cut.
func (c *Crash) op() error {
	if c.closed {
		return ErrClosed
	}
	if c.cutAt >= 0 && c.ops >= c.cutAt {
		return ErrPowerCut
	}
	c.ops++
	return nil
}

// CutAfter makes the power fail after n more writes and syncs: from then on
// every write and sync returns ErrPowerCut and changes nothing, while reads
// go on working. A negative n restores the power.
func (c *Crash) CutAfter(n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n < 0 {
		c.cutAt = -1
		return
	}
	c.cutAt = c.ops + n
}

// Ops is the number of writes and syncs performed so far (failed ones after a
// power cut excluded).
func (c *Crash) Ops() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ops
}

// PowerCut reports whether the power has been cut.
func (c *Crash) PowerCut() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cutAt >= 0 && c.ops >= c.cutAt
}

// Size implements Device.
func (c *Crash) Size() int64 { return int64(len(c.current)) }

// BlockSize implements Device.
func (c *Crash) BlockSize() int { return c.blockSize }

// Close implements Device.
func (c *Crash) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

// Pending is the number of writes not yet made durable by a Sync.
func (c *Crash) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// Choices returns, for each unsynced write in issue order, how many outcomes
// Enumerate visits for it: 0 dropped, 1 landed whole, and 2..k torn after
// 1..k-1 sectors (one per sector boundary inside the write), the prefixes.
// The product of the choices is the number of distinct images Enumerate
// visits. Larger values, for ImageFor, are torn writes of any other pattern
// (Scattered).
func (c *Crash) Choices() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]int, len(c.pending))
	for i, w := range c.pending {
		out[i] = 2 + len(sectorCuts(w.off, len(w.data)))
	}
	return out
}

// ImageFor returns the image for one outcome per unsynced write, as numbered
// by Choices, or Scattered for a torn write of any pattern. A missing entry
// counts as 0 (dropped), a negative one as 1 (landed).
func (c *Crash) ImageFor(choice []int) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	img := append([]byte(nil), c.durable...)
	for i, w := range c.pending {
		k := 0
		if i < len(choice) {
			k = choice[i]
		}
		landWrite(img, w, k)
	}
	return img
}

// Image returns a random image a power cut now could leave: each unsynced
// write is independently dropped, kept or torn, with equal odds for the
// three; a torn write that spans sectors keeps a prefix or, as often, any
// other pattern of its sectors.
func (c *Crash) Image(rng *rand.Rand) []byte {
	return c.ImageFor(RandomOutcomes(c.Choices(), rng.IntN))
}

// RandomOutcomes draws an outcome, for ImageFor, for every unsynced write
// with the numbers of choices Choices returned: dropped, landed whole or
// torn with equal odds, a torn write that spans sectors keeping a prefix
// or, as often, any other pattern of them (Scattered). intn(k) returns a
// number in [0, k): a seeded source makes the draw reproducible.
func RandomOutcomes(choices []int, intn func(int) int) []int {
	pick := make([]int, len(choices))
	for i, n := range choices {
		switch intn(3) {
		case 0:
		case 1:
			pick[i] = 1
		default:
			switch {
			case n > 2 && intn(2) == 0:
				pick[i] = Scattered(n, uint64(intn(1<<30)))
			case n > 2:
				pick[i] = 2 + intn(n-2)
			default:
				pick[i] = intn(2)
			}
		}
	}
	return pick
}

// Scattered returns an outcome, for ImageFor, of a write with n choices
// (Choices) that is torn in a pattern seed picks: each of its sectors
// landed or not, independently.
func Scattered(n int, seed uint64) int {
	return n + int(seed>>2) // non-negative, beyond the prefixes
}

// Enumerate calls fn with every image a power cut now could leave, in a
// fixed order, until fn returns false. It visits the product of Choices()
// images: keep histories small.
func (c *Crash) Enumerate(fn func(choice []int, img []byte) bool) {
	choices := c.Choices()
	pick := make([]int, len(choices))
	for {
		if !fn(pick, c.ImageFor(pick)) {
			return
		}
		i := 0
		for ; i < len(pick); i++ {
			pick[i]++
			if pick[i] < choices[i] {
				break
			}
			pick[i] = 0
		}
		if i == len(pick) {
			return
		}
	}
}

// DurableImage is the image with every unsynced write dropped.
func (c *Crash) DurableImage() []byte { return c.ImageFor(nil) }

// landWrite applies outcome k of write w to img.
func landWrite(img []byte, w pendingWrite, k int) {
	switch {
	case k == 0:
	case k == 1 || k < 0: // negative is out of range: landed, as documented
		copy(img[w.off:], w.data)
	default:
		cuts := sectorCuts(w.off, len(w.data))
		if k-2 < len(cuts) {
			copy(img[w.off:], w.data[:cuts[k-2]])
			return
		}
		// Scattered: the value beyond the prefixes seeds which sectors
		// (the pieces between the cuts) landed; some did and some did not,
		// when there are two or more.
		ends := append(cuts, len(w.data))
		r := rand.New(rand.NewPCG(uint64(k), 0x5ca7))
		land := make([]bool, len(ends))
		n := 0
		for i := range land {
			land[i] = r.IntN(2) == 0
			if land[i] {
				n++
			}
		}
		if len(land) > 1 && (n == 0 || n == len(land)) {
			i := r.IntN(len(land))
			land[i] = !land[i]
		}
		from := 0
		for i, to := range ends {
			if land[i] {
				copy(img[w.off+int64(from):], w.data[from:to])
			}
			from = to
		}
	}
}

// sectorCuts lists the lengths, strictly inside a write of n bytes at off,
// at which a sector boundary falls: the prefixes a torn write can leave.
func sectorCuts(off int64, n int) []int {
	var cuts []int
	first := (off/SectorSize + 1) * SectorSize
	for b := first; b < off+int64(n); b += SectorSize {
		cuts = append(cuts, int(b-off))
	}
	return cuts
}
