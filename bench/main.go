// Command bench runs the same durable-append workloads on ringlog, on three
// peer write-ahead logs (github.com/tidwall/wal, github.com/rosedblabs/wal,
// github.com/hashicorp/raft-wal) and on the raw file, in one run and
// interleaved, and writes a markdown table and throughput charts.
//
// Every append returns only once its data is durable (fsync or fdatasync
// has returned). For each record size, every system is opened fresh on its
// own files; then, for each round, each (writers, system) cell runs for
// -duration, systems in a rotating order, so that drift in the machine's
// speed spreads over all of them. The table reports the median over rounds.
//
//	cd bench && go run . -out results            # what `make bench` runs
//	go run . -duration 3s -rounds 5 -out results # longer, steadier
//
// Files go to a temporary directory under -tmp (bench/tmp by default) and
// are removed when the record size is done.
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

type config struct {
	duration time.Duration
	rounds   int
	sizes    []int
	writers  []int
	systems  []system
	region   int64
	tmp      string
	out      string
}

// sample is one timed run of one cell.
type sample struct {
	records  int
	elapsed  time.Duration
	p50, p99 time.Duration
}

func (s sample) rate() float64 { return float64(s.records) / s.elapsed.Seconds() }

// cell is the key of one measurement.
type cell struct {
	size, writers int
	system        string
}

// result is the median over rounds of one cell.
type result struct {
	cell
	appendsPerSec float64
	mbPerSec      float64
	p50, p99      time.Duration
	rounds        int
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var cfg config
	var sizes, writers, names string
	var regionMiB int64
	fs.DurationVar(&cfg.duration, "duration", time.Second, "how long each cell runs in each round")
	fs.IntVar(&cfg.rounds, "rounds", 3, "rounds per cell; the table reports the median")
	fs.StringVar(&sizes, "sizes", "128,4096,65536", "record sizes in bytes, comma-separated")
	fs.StringVar(&writers, "writers", "1,16,64", "concurrent writers, comma-separated")
	fs.StringVar(&names, "systems", "all", "systems to run, comma-separated: "+systemNames())
	fs.Int64Var(&regionMiB, "region", 256, "MiB of the ringlog and raw files")
	fs.DurationVar(&ringlogCollectInterval, "collect", 0, "ringlog's CollectInterval (0: the library's default; the collector also runs when the log is full)")
	fs.StringVar(&cfg.tmp, "tmp", "tmp", "directory for the systems' files (a temporary directory is made inside)")
	fs.StringVar(&cfg.out, "out", "results", "directory for results.md, results.csv and the charts")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	var err error
	if cfg.sizes, err = ints(sizes); err != nil {
		return cfg, fmt.Errorf("-sizes: %w", err)
	}
	if cfg.writers, err = ints(writers); err != nil {
		return cfg, fmt.Errorf("-writers: %w", err)
	}
	if names == "all" {
		cfg.systems = systems
	} else {
		for _, n := range strings.Split(names, ",") {
			i := slices.IndexFunc(systems, func(s system) bool { return s.name == strings.TrimSpace(n) })
			if i < 0 {
				return cfg, fmt.Errorf("-systems: unknown %q (have %s)", n, systemNames())
			}
			cfg.systems = append(cfg.systems, systems[i])
		}
	}
	if cfg.duration <= 0 || cfg.rounds <= 0 {
		return cfg, fmt.Errorf("-duration and -rounds must be positive")
	}
	cfg.region = regionMiB << 20
	for _, s := range cfg.sizes {
		if int64(s)*int64(slices.Max(cfg.writers))*2 > cfg.region {
			return cfg, fmt.Errorf("-region %d MiB is too small for %d writers of %d-byte records", regionMiB, slices.Max(cfg.writers), s)
		}
	}
	return cfg, nil
}

func systemNames() string {
	var names []string
	for _, s := range systems {
		names = append(names, s.name)
	}
	return strings.Join(names, ",")
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func run(cfg config) error {
	if err := os.MkdirAll(cfg.tmp, 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	defer os.Remove(cfg.tmp) // only if empty: it may hold someone else's files
	facts := gatherFacts(cfg.tmp)
	started := time.Now()
	samples := map[cell][]sample{}
	for _, size := range cfg.sizes {
		if err := runSize(cfg, size, samples); err != nil {
			return err
		}
	}
	results := summarize(cfg, samples)
	facts.elapsed = time.Since(started)
	if err := writeReport(cfg, facts, results); err != nil {
		return err
	}
	if err := writeCharts(cfg, results); err != nil {
		return err
	}
	fmt.Printf("wrote %s\n", filepath.Join(cfg.out, "results.md"))
	return nil
}

// runSize opens every system fresh for one record size, runs all rounds of
// all writer counts interleaved, and removes the files.
func runSize(cfg config, size int, samples map[cell][]sample) (err error) {
	dir, err := os.MkdirTemp(cfg.tmp, fmt.Sprintf("size-%d-", size))
	if err != nil {
		return err
	}
	defer func() {
		if rerr := os.RemoveAll(dir); err == nil {
			err = rerr
		}
	}()
	targets := make([]target, len(cfg.systems))
	defer func() {
		for i, t := range targets {
			if t == nil {
				continue
			}
			if cerr := t.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("%s: close: %w", cfg.systems[i].name, cerr)
			}
		}
	}()
	for i, s := range cfg.systems {
		d := filepath.Join(dir, strings.ReplaceAll(s.name, "/", "-"))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		t, err := s.open(d, size, cfg.region)
		if err != nil {
			return fmt.Errorf("%s: open: %w", s.name, err)
		}
		targets[i] = t
		// Warm up: first segments, staging buffers, journals.
		if _, err := measure(t, size, 1, 50*time.Millisecond); err != nil {
			return fmt.Errorf("%s: warm-up: %w", s.name, err)
		}
		if c, ok := t.(interface{ Counters() string }); ok {
			c.Counters() // start counting from here
		}
	}
	order := make([]int, len(cfg.systems))
	for i := range order {
		order[i] = i
	}
	for round := range cfg.rounds {
		for _, w := range cfg.writers {
			// Rotate the order each round and writer count.
			shift := (round*len(cfg.writers) + slices.Index(cfg.writers, w)) % len(order)
			for k := range order {
				i := order[(k+shift)%len(order)]
				s := cfg.systems[i]
				smp, err := measure(targets[i], size, w, cfg.duration)
				if err != nil {
					return fmt.Errorf("%s, %d B, %d writers: %w", s.name, size, w, err)
				}
				c := cell{size: size, writers: w, system: s.name}
				samples[c] = append(samples[c], smp)
				extra := ""
				if c, ok := targets[i].(interface{ Counters() string }); ok {
					extra = "  (" + c.Counters() + ")"
				}
				fmt.Printf("round %d  size %6d  writers %2d  %-15s %10.0f appends/s  p50 %8v  p99 %8v%s\n",
					round+1, size, w, s.name, smp.rate(), smp.p50.Round(time.Microsecond), smp.p99.Round(time.Microsecond), extra)
			}
		}
	}
	return nil
}

// measure runs writers goroutines appending size-byte records for d and
// returns the records made durable, the time until the last one returned,
// and the latency percentiles. A batcher instead runs one goroutine that
// makes writers records durable per call.
func measure(t target, size, writers int, d time.Duration) (sample, error) {
	goroutines, perOp := writers, 1
	b, isBatcher := t.(batcher)
	if isBatcher {
		goroutines, perOp = 1, writers
	}
	lats := make([][]time.Duration, goroutines)
	errs := make([]error, goroutines)
	payloads := make([][]byte, goroutines)
	for g := range payloads {
		payloads[g] = make([]byte, size)
		fill(payloads[g], uint64(g+1))
	}
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1024)
			p := payloads[g]
			for {
				t0 := time.Now()
				if !t0.Before(deadline) {
					break
				}
				var err error
				if isBatcher {
					err = b.AppendBatch(writers)
				} else {
					err = t.Append(p)
				}
				if err != nil {
					errs[g] = err
					break
				}
				lat = append(lat, time.Since(t0))
			}
			lats[g] = lat
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, err := range errs {
		if err != nil {
			return sample{}, err
		}
	}
	all := slices.Concat(lats...)
	if len(all) == 0 {
		return sample{}, fmt.Errorf("no append finished in %v", d)
	}
	slices.Sort(all)
	return sample{
		records: len(all) * perOp,
		elapsed: elapsed,
		p50:     all[len(all)/2],
		p99:     all[min(len(all)-1, len(all)*99/100)],
	}, nil
}

// fill writes pseudo-random bytes, so that no layer can win by compressing.
func fill(p []byte, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	for i := range p {
		p[i] = byte(r.Uint32())
	}
}

func median[T any](xs []T, key func(T) float64) float64 {
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = key(x)
	}
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

func summarize(cfg config, samples map[cell][]sample) []result {
	var out []result
	for _, size := range cfg.sizes {
		for _, w := range cfg.writers {
			for _, s := range cfg.systems {
				c := cell{size, w, s.name}
				ss := samples[c]
				if len(ss) == 0 {
					continue
				}
				rate := median(ss, sample.rate)
				out = append(out, result{
					cell:          c,
					appendsPerSec: rate,
					mbPerSec:      rate * float64(size) / 1e6,
					p50:           time.Duration(median(ss, func(s sample) float64 { return float64(s.p50) })),
					p99:           time.Duration(median(ss, func(s sample) float64 { return float64(s.p99) })),
					rounds:        len(ss),
				})
			}
		}
	}
	return out
}
