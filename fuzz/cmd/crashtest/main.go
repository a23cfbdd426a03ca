// Command crashtest explores crash states of ringlog: seeded histories of
// appends, reservations, collections, reopens and reboots on a simulated
// disk (and of transactions on a bare journal), each run to many power-cut
// points, with crash images recovered and checked against every invariant
// (see package fuzz). It prints one line,
//
//	crash states explored: N, violations: V
//
// writes the details of every violation to stderr, and exits 1 if there
// was any. Histories, cut points and crash images come from the seed;
// only the interleaving of goroutines does not. A violation names its
// history; -history reruns just that one.
//
//	go run ./fuzz/cmd/crashtest -states 1000000 -seed 1
//	go run ./fuzz/cmd/crashtest -seed 1 -kind pipeline -history 42 -v
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/ringlog/ringlog/fuzz"
)

func main() {
	var opts fuzz.Options
	flag.Int64Var(&opts.States, "states", 1_000_000, "explore at least this many crash states")
	flag.Uint64Var(&opts.Seed, "seed", 1, "seed of the exploration")
	flag.IntVar(&opts.Workers, "workers", 0, "histories run in parallel (0: 5 per CPU)")
	flag.IntVar(&opts.Only, "history", 0, "explore only this history of the seed (1-based, as violations name it)")
	flag.StringVar(&opts.Kinds, "kind", "", `only "pipeline" or "journal" histories`)
	flag.BoolVar(&opts.StopAtFirst, "stop", false, "stop at the first violation")
	verbose := flag.Bool("v", false, "also write to stderr what the power cuts interrupted")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to this file")
	flag.Parse()
	if opts.Kinds != "" && opts.Kinds != "pipeline" && opts.Kinds != "journal" {
		fmt.Fprintf(os.Stderr, "crashtest: -kind %q: want pipeline or journal\n", opts.Kinds)
		os.Exit(2)
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		defer pprof.StopCPUProfile()
	}
	if opts.Only > 0 {
		opts.States = 1 << 62
	}
	res := fuzz.Explore(opts)
	for _, v := range res.Violations {
		fmt.Fprintln(os.Stderr, v)
	}
	if *verbose {
		fmt.Fprintf(os.Stderr, "histories: %d\ncoverage: %+v\n", res.Histories, res.Coverage)
	}
	fmt.Printf("crash states explored: %d, violations: %d\n", res.States, len(res.Violations))
	if len(res.Violations) > 0 {
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}
