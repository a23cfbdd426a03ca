package device_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/ringlog/ringlog/device"
)

type pendingWrite struct {
	off  int64
	data []byte
}

// sectorCutsOf lists, by brute force, the prefix lengths 0 < k < n of a write
// of n bytes at off that end on an absolute sector boundary.
func sectorCutsOf(off int64, n int) []int {
	var cuts []int
	for k := 1; k < n; k++ {
		if (off+int64(k))%device.SectorSize == 0 {
			cuts = append(cuts, k)
		}
	}
	return cuts
}

// landed is how many bytes of w outcome k (as numbered by Crash.Choices)
// puts on the medium.
func landed(w pendingWrite, k int) int {
	switch k {
	case 0:
		return 0
	case 1:
		return len(w.data)
	}
	return sectorCutsOf(w.off, len(w.data))[k-2]
}

// crashModel is an independent model of a Crash device: the synced image,
// the current (page cache) image and the writes since the last sync.
type crashModel struct {
	synced, current []byte
	pending         []pendingWrite
}

func newCrashModel(img []byte) *crashModel {
	return &crashModel{synced: bytes.Clone(img), current: bytes.Clone(img)}
}

func (m *crashModel) write(t testing.TB, c *device.Crash, off int64, data []byte) {
	t.Helper()
	mustWrite(t, c, data, off)
	copy(m.current[off:], data)
	m.pending = append(m.pending, pendingWrite{off: off, data: bytes.Clone(data)})
}

func (m *crashModel) sync(t testing.TB, c *device.Crash) {
	t.Helper()
	mustSync(t, c)
	m.synced = bytes.Clone(m.current)
	m.pending = nil
}

// expect is the image a power cut leaves when pending write i has outcome
// choice[i].
func (m *crashModel) expect(choice []int) []byte {
	img := bytes.Clone(m.synced)
	for i, w := range m.pending {
		copy(img[w.off:], w.data[:landed(w, choice[i])])
	}
	return img
}

// checkChoices compares c.Choices with the model's pending writes and
// returns it.
func (m *crashModel) checkChoices(t testing.TB, c *device.Crash) []int {
	t.Helper()
	choices := c.Choices()
	if len(choices) != len(m.pending) || c.Pending() != len(m.pending) {
		t.Fatalf("Choices() has %d entries, Pending() = %d; want %d", len(choices), c.Pending(), len(m.pending))
	}
	for i, w := range m.pending {
		if want := 2 + len(sectorCutsOf(w.off, len(w.data))); choices[i] != want {
			t.Fatalf("Choices()[%d] = %d for a write of %d bytes at %d; want %d", i, choices[i], len(w.data), w.off, want)
		}
	}
	return choices
}

// uncovered returns the [start, end) spans of the device that no unsynced
// write touches.
func (m *crashModel) uncovered() [][2]int {
	spans := make([][2]int, 0, len(m.pending))
	for _, w := range m.pending {
		if len(w.data) > 0 {
			spans = append(spans, [2]int{int(w.off), int(w.off) + len(w.data)})
		}
	}
	slices.SortFunc(spans, func(a, b [2]int) int { return a[0] - b[0] })
	var gaps [][2]int
	at := 0
	for _, s := range spans {
		if s[0] > at {
			gaps = append(gaps, [2]int{at, s[0]})
		}
		at = max(at, s[1])
	}
	if at < len(m.synced) {
		gaps = append(gaps, [2]int{at, len(m.synced)})
	}
	return gaps
}

// checkSyncedKept checks the property every image must have: bytes no
// unsynced write touched hold their synced contents, and (when exact is
// false) every other byte holds its synced contents or the contents of an
// unsynced write covering it. Callers that compare the image exactly with
// expect pass exact to skip the byte-by-byte part.
func (m *crashModel) checkSyncedKept(t testing.TB, img []byte, exact bool) {
	t.Helper()
	for _, g := range m.uncovered() {
		if !bytes.Equal(img[g[0]:g[1]], m.synced[g[0]:g[1]]) {
			t.Fatalf("bytes [%d, %d), which no unsynced write touched, lost their synced contents: %s", g[0], g[1], firstDiff(img[g[0]:g[1]], m.synced[g[0]:g[1]]))
		}
	}
	if exact {
		return
	}
	for i := range img {
		if img[i] == m.synced[i] {
			continue
		}
		ok := false
		for _, w := range m.pending {
			if int64(i) >= w.off && int64(i) < w.off+int64(len(w.data)) && w.data[int64(i)-w.off] == img[i] {
				ok = true
				break
			}
		}
		if !ok {
			t.Fatalf("image byte %d is %#02x: neither the synced %#02x nor any unsynced write's", i, img[i], m.synced[i])
		}
	}
}

func product(choices []int) int {
	p := 1
	for _, c := range choices {
		p *= c
	}
	return p
}

// randomStep performs one random write (or, one time in four, a sync) on c and
// the model.
func (m *crashModel) randomStep(t testing.TB, c *device.Crash, rng *rand.Rand, maxLen int) {
	t.Helper()
	if rng.IntN(4) == 0 {
		m.sync(t, c)
		return
	}
	size := len(m.current)
	off := rng.IntN(size)
	n := 1 + rng.IntN(min(maxLen, size-off))
	m.write(t, c, int64(off), pattern(n, rng.Uint64()))
}

func TestCrashSyncedDataInEveryImage(t *testing.T) {
	t.Run("enumerate", func(t *testing.T) {
		const size = 4 * device.SectorSize
		images := 0
		for seed := range uint64(150) {
			rng := rand.New(rand.NewPCG(seed, 1))
			c := device.NewCrash(size)
			m := newCrashModel(make([]byte, size))
			for range 10 {
				m.randomStep(t, c, rng, 700)
				mustEqual(t, "ReadAt sees every write", readAll(t, c), m.current)
				mustEqual(t, "DurableImage", c.DurableImage(), m.synced)
				choices := m.checkChoices(t, c)
				if product(choices) > 300 {
					continue
				}
				visited := 0
				c.Enumerate(func(choice []int, img []byte) bool {
					visited++
					m.checkSyncedKept(t, img, true)
					mustEqual(t, fmt.Sprintf("image for choice %v", choice), img, m.expect(choice))
					return true
				})
				if visited != product(choices) {
					t.Fatalf("Enumerate visited %d images; Choices() = %v", visited, choices)
				}
				images += visited
			}
		}
		t.Logf("checked %d enumerated images", images)
	})
	t.Run("random", func(t *testing.T) {
		const size = 16 << 10
		for seed := range uint64(12) {
			rng := rand.New(rand.NewPCG(seed, 2))
			c := device.NewCrash(size)
			m := newCrashModel(make([]byte, size))
			for range 30 {
				m.randomStep(t, c, rng, 3<<10)
				m.checkChoices(t, c)
				for range 3 {
					m.checkSyncedKept(t, c.Image(rng), false)
				}
			}
			mustEqual(t, "ReadAt sees every write", readAll(t, c), m.current)
			mustEqual(t, "DurableImage", c.DurableImage(), m.synced)
		}
	})
}

// nonOverlapping issues k writes, one in each of k equal slots of a
// size-byte device, at random (mostly unaligned) offsets and lengths; each
// write's data differs from what it overwrites in every byte.
func nonOverlapping(t testing.TB, c *device.Crash, m *crashModel, rng *rand.Rand, k int) {
	t.Helper()
	slot := len(m.current) / k
	for i := range k {
		start := i * slot
		off := start + rng.IntN(slot-1)
		n := 1 + rng.IntN(start+slot-off)
		m.write(t, c, int64(off), invert(m.current[off:off+n]))
	}
}

// outcome classifies the region of write w in img: the number of bytes of
// the new data it holds as a prefix, followed by the old bytes. It fails the
// test if the region is not old bytes, the whole write, or a prefix ending on
// an absolute sector boundary.
func outcome(t testing.TB, img, old []byte, w pendingWrite) int {
	t.Helper()
	region := img[w.off : w.off+int64(len(w.data))]
	was := old[w.off : w.off+int64(len(w.data))]
	allowed := append([]int{0, len(w.data)}, sectorCutsOf(w.off, len(w.data))...)
	for _, k := range allowed {
		if bytes.Equal(region[:k], w.data[:k]) && bytes.Equal(region[k:], was[k:]) {
			return k
		}
	}
	t.Fatalf("write of %d bytes at %d: region is neither old, new, nor a sector-aligned prefix of new (allowed prefixes %v)", len(w.data), w.off, allowed)
	return -1
}

// sectorwise checks that each sector piece of w's region in img holds w's
// bytes or the old ones, as a write torn in any pattern leaves it.
func sectorwise(t testing.TB, img, old []byte, w pendingWrite) {
	t.Helper()
	from := 0
	for _, to := range append(sectorCutsOf(w.off, len(w.data)), len(w.data)) {
		got := img[w.off+int64(from) : w.off+int64(to)]
		if !bytes.Equal(got, w.data[from:to]) && !bytes.Equal(got, old[w.off+int64(from):w.off+int64(to)]) {
			t.Fatalf("write of %d bytes at %d: bytes [%d, %d) of it are neither old nor new", len(w.data), w.off, from, to)
		}
		from = to
	}
}

// checkOutside checks that bytes outside every write's region are old.
func checkOutside(t testing.TB, img, old []byte, writes []pendingWrite) {
	t.Helper()
	covered := make([]bool, len(img))
	for _, w := range writes {
		for i := range w.data {
			covered[w.off+int64(i)] = true
		}
	}
	for i := range img {
		if !covered[i] && img[i] != old[i] {
			t.Fatalf("byte %d outside every unsynced write changed: %#02x, was %#02x", i, img[i], old[i])
		}
	}
}

func TestCrashTornWritesOnSectorBoundaries(t *testing.T) {
	const size = 6 * 1024
	for seed := range uint64(60) {
		rng := rand.New(rand.NewPCG(seed, 3))
		var c *device.Crash
		var m *crashModel
		base := pattern(size, seed)
		if seed%2 == 0 {
			c = device.NewCrashFrom(bytes.Clone(base))
			m = newCrashModel(base)
		} else {
			// The old data is synced data this time.
			c = device.NewCrash(size)
			m = newCrashModel(make([]byte, size))
			m.write(t, c, 0, base)
			m.sync(t, c)
		}
		k := 1 + int(seed%4)
		nonOverlapping(t, c, m, rng, k)
		choices := m.checkChoices(t, c)

		// Every image, exhaustively: each write's region is old, new or a
		// sector-aligned prefix of new, matching the outcome chosen; nothing
		// else changed; every allowed outcome of each write shows up; and,
		// since the writes are disjoint and change every byte they cover,
		// every choice gives a different image.
		seen := make([]map[int]bool, k)
		for i := range seen {
			seen[i] = map[int]bool{}
		}
		distinct := map[string]bool{}
		visited := 0
		c.Enumerate(func(choice []int, img []byte) bool {
			visited++
			distinct[string(img)] = true
			checkOutside(t, img, m.synced, m.pending)
			for i, w := range m.pending {
				got := outcome(t, img, m.synced, w)
				if want := landed(w, choice[i]); got != want {
					t.Fatalf("choice %v: write %d (%d bytes at %d) landed %d bytes, want %d", choice, i, len(w.data), w.off, got, want)
				}
				seen[i][got] = true
			}
			return true
		})
		if visited != product(choices) || len(distinct) != visited {
			t.Fatalf("Enumerate visited %d images, %d distinct; Choices() = %v (product %d)", visited, len(distinct), choices, product(choices))
		}
		for i, w := range m.pending {
			if len(seen[i]) != choices[i] {
				t.Fatalf("write %d (%d bytes at %d): %d distinct outcomes seen, Choices says %d", i, len(w.data), w.off, len(seen[i]), choices[i])
			}
		}

		// Random images: each sector of a write old or new, in any
		// pattern.
		for range 50 {
			img := c.Image(rng)
			checkOutside(t, img, m.synced, m.pending)
			for _, w := range m.pending {
				sectorwise(t, img, m.synced, w)
			}
		}
	}
}

// A write that straddles sectors can be torn only at the sector boundaries
// inside it, counted from the start of the device, not of the write.
func TestCrashTornWriteExample(t *testing.T) {
	c := device.NewCrash(4096)
	data := bytes.Repeat([]byte{0xff}, 1000)
	mustWrite(t, c, data, 100)
	if got := c.Choices(); len(got) != 1 || got[0] != 4 {
		t.Fatalf("Choices() = %v, want [4]", got)
	}
	for choice, landedTo := range map[int]int{0: 100, 1: 1100, 2: 512, 3: 1024} {
		img := c.ImageFor([]int{choice})
		want := make([]byte, 4096)
		for i := 100; i < landedTo; i++ {
			want[i] = 0xff
		}
		mustEqual(t, fmt.Sprintf("ImageFor([%d])", choice), img, want)
	}
}

func TestCrashChoices(t *testing.T) {
	c := device.NewCrash(4096)
	writes := []struct {
		off     int64
		n       int
		choices int
	}{
		{100, 1000, 4}, // boundaries at 512 and 1024
		{0, 512, 2},    // one whole sector: no boundary inside
		{0, 513, 3},    // boundary at 512
		{511, 1, 2},    // last byte of a sector
		{511, 2, 3},    // straddles 512
		{1024, 0, 2},   // empty
		{0, 4096, 9},   // eight sectors
	}
	for _, w := range writes {
		mustWrite(t, c, make([]byte, w.n), w.off)
	}
	got := c.Choices()
	for i, w := range writes {
		if got[i] != w.choices {
			t.Errorf("write of %d bytes at %d: Choices()[%d] = %d, want %d", w.n, w.off, i, got[i], w.choices)
		}
	}
	if len(got) != len(writes) || c.Pending() != len(writes) {
		t.Fatalf("Choices() = %v, Pending() = %d; want %d entries", got, c.Pending(), len(writes))
	}
	mustSync(t, c)
	if got := c.Choices(); len(got) != 0 || c.Pending() != 0 {
		t.Fatalf("after Sync: Choices() = %v, Pending() = %d", got, c.Pending())
	}
}

func TestCrashEnumerate(t *testing.T) {
	t.Run("count-and-order", func(t *testing.T) {
		for seed := range uint64(40) {
			rng := rand.New(rand.NewPCG(seed, 4))
			c := device.NewCrash(2048)
			m := newCrashModel(make([]byte, 2048))
			for range 1 + rng.IntN(4) {
				off := rng.IntN(2048)
				m.write(t, c, int64(off), pattern(1+rng.IntN(min(600, 2048-off)), rng.Uint64()))
			}
			choices := m.checkChoices(t, c)
			vectors := map[string]bool{}
			first := true
			c.Enumerate(func(choice []int, img []byte) bool {
				if len(choice) != len(choices) {
					t.Fatalf("choice %v has %d entries, want %d", choice, len(choice), len(choices))
				}
				for i, k := range choice {
					if k < 0 || k >= choices[i] {
						t.Fatalf("choice %v out of range of %v", choice, choices)
					}
				}
				if first {
					mustEqual(t, "first image", img, c.DurableImage())
					for _, k := range choice {
						if k != 0 {
							t.Fatalf("first choice %v is not all dropped", choice)
						}
					}
					first = false
				}
				key := fmt.Sprint(choice)
				if vectors[key] {
					t.Fatalf("choice %v visited twice", choice)
				}
				vectors[key] = true
				mustEqual(t, "ImageFor(choice)", c.ImageFor(choice), img)
				mustEqual(t, "image", img, m.expect(choice))
				return true
			})
			if len(vectors) != product(choices) {
				t.Fatalf("Enumerate visited %d choices, product of %v is %d", len(vectors), choices, product(choices))
			}
		}
	})
	t.Run("overlapping-duplicates", func(t *testing.T) {
		// The same bytes written twice: four outcomes, but only two images.
		c := device.NewCrash(1024)
		data := bytes.Repeat([]byte{7}, 100)
		mustWrite(t, c, data, 10)
		mustWrite(t, c, data, 10)
		distinct := map[string]bool{}
		visited := 0
		c.Enumerate(func(_ []int, img []byte) bool {
			visited++
			distinct[string(img)] = true
			return true
		})
		if visited != 4 || len(distinct) != 2 {
			t.Fatalf("visited %d images, %d distinct; want 4 and 2", visited, len(distinct))
		}
	})
	t.Run("later-write-wins", func(t *testing.T) {
		// Overlapping writes land in issue order.
		c := device.NewCrash(1024)
		mustWrite(t, c, bytes.Repeat([]byte{1}, 200), 0)
		mustWrite(t, c, bytes.Repeat([]byte{2}, 100), 50)
		img := c.ImageFor([]int{1, 1})
		want := make([]byte, 1024)
		copy(want, bytes.Repeat([]byte{1}, 200))
		copy(want[50:], bytes.Repeat([]byte{2}, 100))
		mustEqual(t, "both landed", img, want)
		mustEqual(t, "both landed equals what reads see", img, readAll(t, c))
		img = c.ImageFor([]int{0, 1})
		want = make([]byte, 1024)
		copy(want[50:], bytes.Repeat([]byte{2}, 100))
		mustEqual(t, "only the second landed", img, want)
	})
	t.Run("stop-early", func(t *testing.T) {
		c := device.NewCrash(1024)
		mustWrite(t, c, []byte{1}, 0)
		mustWrite(t, c, []byte{1}, 1)
		calls := 0
		c.Enumerate(func([]int, []byte) bool { calls++; return calls < 3 })
		if calls != 3 {
			t.Fatalf("fn called %d times after returning false on the third", calls)
		}
	})
	t.Run("nothing-pending", func(t *testing.T) {
		c := device.NewCrash(1024)
		mustWrite(t, c, []byte{1, 2, 3}, 5)
		mustSync(t, c)
		calls := 0
		c.Enumerate(func(choice []int, img []byte) bool {
			calls++
			if len(choice) != 0 {
				t.Errorf("choice = %v, want empty", choice)
			}
			mustEqual(t, "only image", img, readAll(t, c))
			return true
		})
		if calls != 1 {
			t.Fatalf("Enumerate with nothing pending called fn %d times, want 1", calls)
		}
	})
}

// ImageFor documents that a missing entry counts as dropped, a negative one
// as landed, and one beyond the prefixes (Scattered) as a tear of any other
// pattern: every sector old or new, some of each.
func TestCrashImageForScattered(t *testing.T) {
	c := device.NewCrash(2048)
	data := bytes.Repeat([]byte{9}, 1000)
	mustWrite(t, c, data, 100) // Choices [4]: pieces [100,512) [512,1024) [1024,1100)
	mustWrite(t, c, data, 1000)
	whole := readAll(t, c)
	first := make([]byte, 2048)
	copy(first[100:], data)
	mustEqual(t, "missing entry", c.ImageFor([]int{1}), first)
	mustEqual(t, "nil choice", c.ImageFor(nil), make([]byte, 2048))
	for _, k := range []int{-1, -2, -1 << 20} {
		mustEqual(t, fmt.Sprintf("choice %d", k), c.ImageFor([]int{k, k}), whole)
	}
	patterns := map[[3]bool]bool{}
	for seed := range uint64(200) {
		img := c.ImageFor([]int{device.Scattered(4, seed)})
		var p [3]bool
		for i, piece := range [][2]int{{100, 512}, {512, 1024}, {1024, 1100}} {
			switch {
			case bytes.Equal(img[piece[0]:piece[1]], data[:piece[1]-piece[0]]):
				p[i] = true
			case !bytes.Equal(img[piece[0]:piece[1]], make([]byte, piece[1]-piece[0])):
				t.Fatalf("seed %d: sector piece %v is neither old nor new", seed, piece)
			}
		}
		if p == [3]bool{} || p == [3]bool{true, true, true} {
			t.Fatalf("seed %d: a scattered tear that is not torn: %v", seed, p)
		}
		patterns[p] = true
	}
	// All six: the two prefixes, and the suffixes and holes a prefix
	// model never gives.
	if len(patterns) != 6 {
		t.Fatalf("scattered tears gave %d patterns of 6: %v", len(patterns), patterns)
	}
}

// Image draws dropped, landed and torn with equal odds for a write that can
// be torn, and tears it in a prefix or in any other pattern.
func TestCrashImageOdds(t *testing.T) {
	c := device.NewCrash(4096)
	data := bytes.Repeat([]byte{0xaa}, 2048) // Choices [4]: four sectors
	mustWrite(t, c, data, 0)
	small := []byte{0xbb} // Choices [2]: dropped or landed
	mustWrite(t, c, small, 3000)
	rng := rand.New(rand.NewPCG(5, 5))
	const draws = 3000
	var dropped, whole, torn, prefix, smallLanded int
	for range draws {
		img := c.Image(rng)
		var landed [4]bool
		n := 0
		for i := range landed {
			sector := img[i*device.SectorSize : (i+1)*device.SectorSize]
			switch {
			case bytes.Equal(sector, data[:device.SectorSize]):
				landed[i] = true
				n++
			case !bytes.Equal(sector, make([]byte, device.SectorSize)):
				t.Fatalf("sector %d is neither old nor new", i)
			}
		}
		switch n {
		case 0:
			dropped++
		case 4:
			whole++
		default:
			torn++
			if landed[0] && (n == 1 || landed[n-1]) && !landed[n] {
				prefix++
			}
		}
		if img[3000] == 0xbb {
			smallLanded++
		}
	}
	for name, n := range map[string]int{"dropped": dropped, "landed": whole, "torn": torn} {
		if n < draws*30/100 || n > draws*37/100 {
			t.Errorf("%s %d times out of %d; want about a third", name, n, draws)
		}
	}
	if prefix < torn*2/5 || prefix > torn*4/5 {
		t.Errorf("%d of %d tears were prefixes; want about half and a little more", prefix, torn)
	}
	if smallLanded < draws*2/5 || smallLanded > draws*3/5 {
		t.Errorf("untearable write landed %d times out of %d; want about half", smallLanded, draws)
	}
}

func TestCrashCutAfter(t *testing.T) {
	for n := range int64(7) {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			c := device.NewCrash(8192)
			m := newCrashModel(make([]byte, 8192))
			m.write(t, c, 0, pattern(600, 1))
			m.sync(t, c)
			start := c.Ops()
			if start != 2 {
				t.Fatalf("Ops() = %d after a write and a sync", start)
			}
			c.CutAfter(n)
			// A fixed sequence of writes and syncs: the first n succeed.
			for i := range n {
				if c.PowerCut() {
					t.Fatalf("PowerCut() before op %d of %d", i+1, n)
				}
				if i%3 == 2 {
					m.sync(t, c)
				} else {
					m.write(t, c, 1000*i, pattern(700, uint64(i)+10))
				}
				if c.Ops() != start+i+1 {
					t.Fatalf("Ops() = %d after %d ops, want %d", c.Ops(), i+1, start+i+1)
				}
			}
			if !c.PowerCut() {
				t.Fatal("PowerCut() = false after the allowed ops")
			}
			// Every later write and sync fails and changes nothing.
			pending := c.Pending()
			durable := c.DurableImage()
			for i := range 3 {
				if k, err := c.WriteAt(pattern(100, 99), int64(100*i)); !errors.Is(err, device.ErrPowerCut) || k != 0 {
					t.Fatalf("WriteAt after the cut = %d, %v; want ErrPowerCut", k, err)
				}
				if err := c.Sync(); !errors.Is(err, device.ErrPowerCut) {
					t.Fatalf("Sync after the cut = %v; want ErrPowerCut", err)
				}
			}
			if c.Ops() != start+n {
				t.Fatalf("Ops() = %d after failed ops, want %d", c.Ops(), start+n)
			}
			if c.Pending() != pending || len(m.pending) != pending {
				t.Fatalf("Pending() = %d after the cut, was %d, model %d", c.Pending(), pending, len(m.pending))
			}
			mustEqual(t, "durable image after the cut", c.DurableImage(), durable)
			mustEqual(t, "durable image vs model", durable, m.synced)
			// Reads go on working and see the writes made before the cut.
			mustEqual(t, "reads after the cut", readAll(t, c), m.current)
			c.Enumerate(func(choice []int, img []byte) bool {
				mustEqual(t, "image after the cut", img, m.expect(choice))
				return true
			})

			// Power restored.
			c.CutAfter(-1)
			if c.PowerCut() {
				t.Fatal("PowerCut() after CutAfter(-1)")
			}
			m.write(t, c, 5000, pattern(10, 3))
			m.sync(t, c)
			if c.Ops() != start+n+2 {
				t.Fatalf("Ops() = %d after restoring power and two ops, want %d", c.Ops(), start+n+2)
			}
			mustEqual(t, "durable after power restored", c.DurableImage(), m.current)
		})
	}
}

func TestNewCrashFrom(t *testing.T) {
	img := pattern(4096, 77)
	want := bytes.Clone(img)
	c := device.NewCrashFrom(img)
	if c.Size() != 4096 || c.BlockSize() != device.SectorSize {
		t.Fatalf("Size() = %d, BlockSize() = %d", c.Size(), c.BlockSize())
	}
	if c.Pending() != 0 || len(c.Choices()) != 0 || c.Ops() != 0 || c.PowerCut() {
		t.Fatalf("fresh device: Pending %d, Choices %v, Ops %d, PowerCut %v", c.Pending(), c.Choices(), c.Ops(), c.PowerCut())
	}
	mustEqual(t, "DurableImage", c.DurableImage(), want)
	mustEqual(t, "ReadAt", readAll(t, c), want)
	calls := 0
	c.Enumerate(func(_ []int, got []byte) bool {
		calls++
		mustEqual(t, "only image", got, want)
		return true
	})
	if calls != 1 {
		t.Fatalf("Enumerate called fn %d times, want 1", calls)
	}
	// An unsynced write leaves img durable underneath.
	mustWrite(t, c, make([]byte, 4096), 0)
	mustEqual(t, "DurableImage after an unsynced write", c.DurableImage(), want)
	mustEqual(t, "ReadAt after an unsynced write", readAll(t, c), make([]byte, 4096))
	mustSync(t, c)
	mustEqual(t, "DurableImage after Sync", c.DurableImage(), make([]byte, 4096))

	// An image taken from one crash boots the next device.
	c1 := device.NewCrash(2048)
	mustWrite(t, c1, bytes.Repeat([]byte{5}, 1024), 0)
	torn := c1.ImageFor([]int{2})
	c2 := device.NewCrashFrom(torn)
	wantTorn := make([]byte, 2048)
	copy(wantTorn, bytes.Repeat([]byte{5}, 512))
	mustEqual(t, "rebooted device", readAll(t, c2), wantTorn)
	mustEqual(t, "rebooted durable image", c2.DurableImage(), wantTorn)
}

func TestCrashErrors(t *testing.T) {
	c := device.NewCrash(1024)
	if k, err := c.WriteAt(make([]byte, 10), 1020); !errors.Is(err, device.ErrOutOfRange) || k != 0 {
		t.Errorf("WriteAt past the end = %d, %v; want ErrOutOfRange", k, err)
	}
	if k, err := c.ReadAt(make([]byte, 10), -1); !errors.Is(err, device.ErrOutOfRange) || k != 0 {
		t.Errorf("ReadAt before the start = %d, %v; want ErrOutOfRange", k, err)
	}
	if c.Pending() != 0 {
		t.Errorf("a refused write is pending")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadAt(make([]byte, 1), 0); !errors.Is(err, device.ErrClosed) {
		t.Errorf("ReadAt after Close = %v; want ErrClosed", err)
	}
	if _, err := c.WriteAt(make([]byte, 1), 0); !errors.Is(err, device.ErrClosed) {
		t.Errorf("WriteAt after Close = %v; want ErrClosed", err)
	}
	if err := c.Sync(); !errors.Is(err, device.ErrClosed) {
		t.Errorf("Sync after Close = %v; want ErrClosed", err)
	}
}

// Concurrent writers, syncs and image takers; run with -race.
func TestCrashConcurrent(t *testing.T) {
	const workers, rounds = 4, 50
	c := device.NewCrash(workers * 512)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 6))
			for r := range rounds {
				p := bytes.Repeat([]byte{byte(r + 1)}, 512)
				if _, err := c.WriteAt(p, int64(w*512)); err != nil {
					t.Error(err)
					return
				}
				switch r % 3 {
				case 0:
					if err := c.Sync(); err != nil {
						t.Error(err)
						return
					}
				case 1:
					c.Image(rng)
				}
			}
		})
	}
	wg.Wait()
	mustSync(t, c)
	want := make([]byte, 0, workers*512)
	for range workers {
		want = append(want, bytes.Repeat([]byte{rounds}, 512)...)
	}
	mustEqual(t, "durable image", c.DurableImage(), want)
	if c.Ops() != workers*(rounds+(rounds+2)/3)+1 {
		t.Errorf("Ops() = %d", c.Ops())
	}
}
