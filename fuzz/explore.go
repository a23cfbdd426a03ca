package fuzz

import (
	"bytes"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/ringlog/ringlog/device"
)

// Options configure Explore.
type Options struct {
	Seed    uint64
	States  int64 // explore at least this many crash states, then stop
	Workers int   // histories run in parallel (0: 5 per CPU)
	// StopAtFirst ends the exploration at the first violation.
	StopAtFirst bool
	// Kinds restricts the histories: "pipeline", "journal", or "" for both.
	Kinds string
	// Only, if positive, explores just history Only-1 of the seed (to
	// reproduce a violation).
	Only int
	// Images is how many crash images each run checks (0: 6).
	Images int
	// Cuts is how many power-cut points each history is run to (0: 12),
	// besides one run without a cut.
	Cuts int
}

// Violation is one broken invariant, with what it takes to find it again.
type Violation struct {
	Seed    uint64
	History int    // 1-based: Options.Only reruns it
	Kind    string // "pipeline" or "journal"
	Desc    string // the history
	Msg     string
}

func (v Violation) String() string {
	return fmt.Sprintf("seed %d, %s history %d (crashtest -seed %d -kind %s -history %d): %s\n  history: %s", v.Seed, v.Kind, v.History, v.Seed, v.Kind, v.History, v.Msg, v.Desc)
}

// Result is what Explore found.
type Result struct {
	States     int64
	Histories  int64
	Violations []Violation
	Coverage   Coverage // what the power cuts interrupted
}

// Explore runs histories drawn from the seed, each to several power-cut
// points, and checks crash images of each until it has explored
// opts.States crash states. History i is drawn from (Seed, i) alone, so a
// violation is reproducible from its seed and history index (up to the
// interleaving of goroutines).
func Explore(opts Options) Result {
	workers := opts.Workers
	if workers <= 0 {
		// Recoveries spend much of their time handing work between
		// goroutines; more histories than CPUs keep the CPUs busy.
		workers = 5 * runtime.GOMAXPROCS(0)
	}
	if opts.Only > 0 {
		workers = 1
	}
	// Each recovery allocates staging buffers; letting the heap grow
	// keeps the runtime from handing that memory back to the OS and
	// faulting it in again for every Open (several times slower).
	defer tuneGC()()
	var (
		next   atomic.Int64
		states atomic.Int64
		hist   atomic.Int64
		stop   atomic.Bool
		mu     sync.Mutex
		res    Result
		wg     sync.WaitGroup
	)
	if opts.Only > 0 {
		next.Store(int64(opts.Only - 1))
	}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() && states.Load() < opts.States {
				i := int(next.Add(1) - 1)
				if opts.Only > 0 && i != opts.Only-1 {
					return
				}
				n, vs, cov := exploreOne(opts, i)
				states.Add(int64(n))
				hist.Add(1)
				mu.Lock()
				res.Coverage.add(cov)
				res.Violations = append(res.Violations, vs...)
				mu.Unlock()
				if len(vs) > 0 {
					if opts.StopAtFirst {
						stop.Store(true)
					}
				}
			}
		}()
	}
	wg.Wait()
	res.States = states.Load()
	res.Histories = hist.Load()
	return res
}

// historyKind is which checker history i of an exploration exercises: one
// in four is a journal history.
func historyKind(opts Options, i int) string {
	if opts.Kinds != "" {
		return opts.Kinds
	}
	if i%4 == 3 {
		return "journal"
	}
	return "pipeline"
}

// exploreOne runs history i of the seed.
func exploreOne(opts Options, i int) (int, []Violation, Coverage) {
	src := newRNG(opts.Seed, uint64(i))
	kind := historyKind(opts, i)
	images, cuts := opts.Images, opts.Cuts
	if images <= 0 {
		images = 6
	}
	if cuts <= 0 {
		cuts = 12
	}
	var (
		states int
		msgs   []string
		desc   string
		cov    Coverage
	)
	if kind == "journal" {
		h := GenJournalHistory(src, DefaultJournalLimits)
		desc = h.String()
		states, msgs, cov = exploreJournal(h, src, cuts, images, opts.StopAtFirst)
	} else {
		h := GenHistory(src, DefaultLimits)
		desc = h.String()
		states, msgs, cov = explorePipeline(h, src, cuts, images, opts.StopAtFirst)
	}
	var vs []Violation
	for _, m := range msgs {
		vs = append(vs, Violation{Seed: opts.Seed, History: i + 1, Kind: kind, Desc: desc, Msg: m})
	}
	return states, vs, cov
}

// explorePipeline runs h without a power cut, then cut after a spread of
// op counts across that run's length, and checks images of each.
func explorePipeline(h *History, src Source, cuts, images int, stopAtFirst bool) (int, []string, Coverage) {
	base, err := formatImage(h.Params)
	if err != nil {
		return 0, []string{fmt.Sprintf("Format: %v", err)}, Coverage{}
	}
	v := newVerifier(h, src)
	exploreCuts(src, cuts, images, stopAtFirst, &v.tally,
		func(cut, fault int64) (runResult, []string) {
			v.m = newModel(h)
			res := runHistory(h, v.m, bytes.Clone(base), cut, fault, v)
			return res, v.m.problems
		},
		func(img []byte, label string) { v.image(img, label, nil, 0) })
	return v.states, v.violations, v.cov
}

// tally is what a verifier counts: crash states checked, the violations
// found and what the histories covered.
type tally struct {
	states     int
	violations []string
	cov        Coverage
}

func (t *tally) violation(label, format string, args ...any) {
	t.violations = append(t.violations, label+": "+fmt.Sprintf(format, args...))
}

// exploreCuts runs a history without a power cut, then with the power cut
// after a spread of op counts across that run's length (a quarter of the
// cuts with a write or sync failing as well), and checks images of each.
// run runs the history once and returns what it left and the problems its
// model saw; image checks one crash image.
func exploreCuts(src Source, cuts, images int, stopAtFirst bool, t *tally,
	run func(cut, fault int64) (runResult, []string), image func(img []byte, label string)) {
	var total int64 = -1
	for j := -1; j < cuts; j++ {
		cut, fault := int64(-1), int64(0)
		if j >= 0 {
			cut = (int64(j)*(total+1) + int64(src.Intn(int(total+1)))) / int64(cuts)
			if chance(src, 1, 4) {
				fault = 1 + int64(src.Intn(int(total)+1))
			}
		}
		res, problems := run(cut, fault)
		if j < 0 {
			total = res.ops
		}
		label := fmt.Sprintf("power cut after %d of %d ops", cut, total)
		if cut < 0 {
			label = fmt.Sprintf("no power cut (%d ops)", total)
		}
		if fault > 0 {
			label += fmt.Sprintf(", write or sync %d failed", fault)
		}
		for _, p := range problems {
			t.violation(label, "%s", p)
		}
		for _, ch := range pickChoices(src, res.crash.Choices(), images) {
			t.cov.count(res.writes, ch)
			image(res.crash.ImageFor(ch), fmt.Sprintf("%s, image %v", label, ch))
		}
		if stopAtFirst && len(t.violations) > 0 {
			break
		}
	}
}

// pickChoices lists the images to check for a crash with these choices:
// all of them if there are at most n, else every write landed, every write
// dropped, and n-2 drawn at random.
func pickChoices(s Source, choices []int, n int) [][]int {
	total := 1
	for _, c := range choices {
		total *= c
		if total > n {
			break
		}
	}
	var out [][]int
	if total <= n {
		pick := make([]int, len(choices))
		for {
			out = append(out, append([]int(nil), pick...))
			i := 0
			for ; i < len(pick); i++ {
				pick[i]++
				if pick[i] < choices[i] {
					break
				}
				pick[i] = 0
			}
			if i == len(pick) {
				return out
			}
		}
	}
	all := make([]int, len(choices))
	for i := range all {
		all[i] = 1
	}
	out = append(out, all, make([]int, len(choices)))
	for len(out) < n {
		out = append(out, device.RandomOutcomes(choices, s.Intn))
	}
	return out
}

// tuneGC makes the garbage collector run rarely while an exploration runs,
// and returns what undoes it. Every Open allocates megabytes of staging
// buffers and channels; with the default settings the runtime returns that
// memory to the OS and faults it in again for the next Open, which costs
// more than the rest of a recovery. With the percentage-based collector off
// and a memory limit, it collects once the heap reaches the limit and keeps
// the pages in between.
func tuneGC() func() {
	limit := int64(512 << 20)
	if raceEnabled {
		limit = 256 << 20
	}
	oldPct := debug.SetGCPercent(-1)
	oldLimit := debug.SetMemoryLimit(limit)
	return func() {
		debug.SetGCPercent(oldPct)
		debug.SetMemoryLimit(oldLimit)
	}
}
