package main

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// facts describe the machine and the run, for the report's header.
type facts struct {
	date    time.Time
	goVer   string
	nproc   int
	cpu     string
	memory  string
	kernel  string
	fs      string
	elapsed time.Duration
}

func gatherFacts(dir string) facts {
	f := facts{
		date:   time.Now().UTC(),
		goVer:  runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
		nproc:  runtime.NumCPU(),
		cpu:    "unknown",
		memory: "unknown",
		kernel: "unknown",
		fs:     "unknown",
	}
	if v, ok := procField("/proc/cpuinfo", "model name"); ok {
		f.cpu = v
	}
	if v, ok := procField("/proc/meminfo", "MemTotal"); ok {
		if kb, err := strconv.ParseInt(strings.Fields(v)[0], 10, 64); err == nil {
			f.memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		f.kernel = "Linux " + strings.TrimSpace(string(b))
	}
	if abs, err := filepath.Abs(dir); err == nil {
		f.fs = mountOf(abs)
	}
	return f
}

// procField returns the value of the first "key : value" line of a /proc file.
func procField(path, key string) (string, bool) {
	file, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// mountOf names the device and file system type that hold path.
func mountOf(path string) string {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return "unknown"
	}
	best, desc := "", "unknown"
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		mp := f[1]
		if (path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(best) {
			best, desc = mp, fmt.Sprintf("%s (%s) mounted on %s", f[0], f[2], mp)
		}
	}
	return desc
}

func sizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

func fmtDur(d time.Duration) string {
	us := float64(d) / float64(time.Microsecond)
	switch {
	case us >= 10000:
		return fmt.Sprintf("%.1f ms", us/1000)
	case us >= 1000:
		return fmt.Sprintf("%.2f ms", us/1000)
	}
	return fmt.Sprintf("%.0f µs", us)
}

// thousands formats a rate with thin grouping, e.g. 123,456.
func thousands(x float64) string {
	s := strconv.FormatInt(int64(x+0.5), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// limit is the raw group-commit limit for a cell, 0 if it was not run.
func limit(results []result, size, writers int) float64 {
	for _, r := range results {
		if r.size == size && r.writers == writers && r.system == "raw-group" {
			return r.appendsPerSec
		}
	}
	return 0
}

// Table renders the markdown table of results, one row per cell.
func table(results []result) string {
	var b strings.Builder
	b.WriteString("| record | writers | system | appends/s | MB/s | p50 | p99 | × raw group limit |\n")
	b.WriteString("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range results {
		ratio := "—"
		if l := limit(results, r.size, r.writers); l > 0 {
			ratio = fmt.Sprintf("%.2f", r.appendsPerSec/l)
		}
		name := r.system
		if name == "ringlog" {
			name = "**ringlog**"
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %.1f | %s | %s | %s |\n",
			sizeName(r.size), r.writers, name, thousands(r.appendsPerSec), r.mbPerSec, fmtDur(r.p50), fmtDur(r.p99), ratio)
	}
	return b.String()
}

func writeReport(cfg config, f facts, results []result) error {
	var b strings.Builder
	b.WriteString("# Durable appends: ringlog, peers and the raw file\n\n")
	fmt.Fprintf(&b, "Run on %s: %s, %d CPUs (%s), %s memory, %s; files on %s. Run took %s.\n\n",
		f.date.Format("2006-01-02 15:04 MST"), f.goVer, f.nproc, f.cpu, f.memory, f.kernel, f.fs, f.elapsed.Round(time.Second))
	fmt.Fprintf(&b, "Every append returns only once its data is durable. Each cell ran %v per round, %d rounds, "+
		"systems interleaved in a rotating order; the table shows the median over rounds (p50 and p99 are medians of each round's percentiles). "+
		"`× raw group limit` is appends/s divided by the raw group-commit limit of the same record size and writer count: "+
		"N = writers records in one pwrite plus one fdatasync. Run-to-run noise on this kind of machine is about ±35%%; compare within one run.\n\n",
		cfg.duration, cfg.rounds)
	b.WriteString(table(results))
	b.WriteString("\nSystems:\n\n")
	for _, s := range cfg.systems {
		fmt.Fprintf(&b, "- `%s`: %s.\n", s.name, s.note)
	}
	fmt.Fprintf(&b, "\nCharts: %s.\n", chartList(cfg))
	fmt.Fprintf(&b, "\nRerun: `make bench` (or `cd bench && go run . -out results -duration %v -rounds %d`).\n", cfg.duration, cfg.rounds)
	if err := os.WriteFile(filepath.Join(cfg.out, "results.md"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	return writeCSV(filepath.Join(cfg.out, "results.csv"), results)
}

func chartList(cfg config) string {
	list := []string{"[throughput.png](throughput.png) (all record sizes)"}
	for _, s := range cfg.sizes {
		list = append(list, fmt.Sprintf("[%s](%s)", chartName(s), chartName(s)))
	}
	return strings.Join(list, ", ")
}

func writeCSV(path string, results []result) error {
	file, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(file)
	w.Write([]string{"record_bytes", "writers", "system", "appends_per_s", "mb_per_s", "p50_us", "p99_us", "ratio_to_raw_group", "rounds"})
	for _, r := range results {
		ratio := ""
		if l := limit(results, r.size, r.writers); l > 0 {
			ratio = strconv.FormatFloat(r.appendsPerSec/l, 'f', 4, 64)
		}
		w.Write([]string{
			strconv.Itoa(r.size), strconv.Itoa(r.writers), r.system,
			strconv.FormatFloat(r.appendsPerSec, 'f', 1, 64), strconv.FormatFloat(r.mbPerSec, 'f', 2, 64),
			strconv.FormatInt(r.p50.Microseconds(), 10), strconv.FormatInt(r.p99.Microseconds(), 10),
			ratio, strconv.Itoa(r.rounds),
		})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		file.Close()
		return err
	}
	return file.Close()
}
