// Command quickstart is ringlog in one page: it formats a log on a
// temporary file, appends from several goroutines at once, reads the
// records back, lets the collector reclaim half of them, keeps appending
// until the log has wrapped around its end, then closes, reopens and scans.
//
//	go run ./examples/quickstart
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/pipeline"
)

const (
	deviceSize = 4 << 20 // a small region, so that the demo wraps quickly
	writers    = 8
	perWriter  = 250
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// garbage is the application's view of which records it no longer needs:
// here, every record whose sequence number it has released.
type garbage struct {
	mu       sync.Mutex
	released map[uint64]bool
}

func (g *garbage) IsGarbage(_ pipeline.Position, payload []byte) (bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.released[binary.BigEndian.Uint64(payload)], nil
}

func (g *garbage) release(seq uint64) {
	g.mu.Lock()
	g.released[seq] = true
	g.mu.Unlock()
}

// record is a payload whose first 8 bytes are a sequence number, the rest a
// pattern derived from it, so every read can be checked.
func record(seq uint64) []byte {
	p := make([]byte, 8+int(seq%1500))
	binary.BigEndian.PutUint64(p, seq)
	for i := 8; i < len(p); i++ {
		p[i] = byte(seq*31 + uint64(i))
	}
	return p
}

func run() error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "ringlog-quickstart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "ring.log")

	dev, err := device.OpenFile(path, device.FileOptions{Size: deviceSize})
	if err != nil {
		return err
	}
	defer dev.Close()
	cfg := pipeline.Config{CollectInterval: 50 * time.Millisecond}
	if err := pipeline.Format(dev, cfg); err != nil {
		return err
	}
	fmt.Printf("1. formatted %s: %d MiB region\n", path, deviceSize>>20)

	g := &garbage{released: map[uint64]bool{}}
	cfg.Checker = g
	log, err := pipeline.Open(dev, cfg)
	if err != nil {
		return err
	}
	st := log.Stats()
	fmt.Printf("2. opened: capacity %d bytes, epoch %d\n", st.Capacity, st.Epoch)

	// Several goroutines append at once; their fdatasyncs are shared.
	start := time.Now()
	positions := make(map[uint64]pipeline.Position)
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				seq := uint64(w*perWriter + i)
				pos, err := log.Append(ctx, record(seq))
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				positions[seq] = pos
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	st = log.Stats()
	fmt.Printf("3. %d goroutines appended %d records in %v: %d group commits, %.1f records per fdatasync\n",
		writers, len(positions), time.Since(start).Round(time.Millisecond), st.Groups, float64(st.Appends)/float64(st.Groups))

	for seq, pos := range positions {
		got, err := log.Read(pos)
		if err != nil {
			return fmt.Errorf("read %d: %w", pos, err)
		}
		if !bytes.Equal(got, record(seq)) {
			return fmt.Errorf("record %d at %d differs", seq, pos)
		}
	}
	fmt.Printf("4. read back and verified all %d records\n", len(positions))

	// Release the older half, by position: the collector reclaims from the
	// head and stops at the first record that is still live.
	bySeq := make([]uint64, 0, len(positions))
	for seq := range positions {
		bySeq = append(bySeq, seq)
	}
	sort.Slice(bySeq, func(i, j int) bool { return positions[bySeq[i]] < positions[bySeq[j]] })
	half := uint64(len(positions) / 2)
	for _, seq := range bySeq[:half] {
		g.release(seq)
	}
	window := bySeq[half:] // live records, oldest first
	before := log.Stats().Head
	if err := log.Collect(ctx); err != nil {
		return err
	}
	st = log.Stats()
	fmt.Printf("5. released %d records: head %d -> %d, used %d of %d bytes\n", half, before, st.Head, st.Used, st.Capacity)

	// Keep appending, releasing as we go, until the tail has wrapped.
	seq := uint64(len(positions))
	laps := func() int64 { return int64(log.Stats().Tail) / log.Stats().Capacity }
	for laps() < 2 {
		if _, err := log.Append(ctx, record(seq)); err != nil {
			return err
		}
		window = append(window, seq)
		g.release(window[0]) // keep a sliding window of live records
		window = window[1:]
		seq++
	}
	if err := log.Collect(ctx); err != nil {
		return err
	}
	st = log.Stats()
	fmt.Printf("6. appended until the tail wrapped: tail %d is in lap %d, %d bytes of padding at lap ends, %d collector passes\n",
		st.Tail, laps(), st.Padding, st.CollectPasses)

	live := 0
	if err := log.Scan(func(pipeline.Position, []byte) error { live++; return nil }); err != nil {
		return err
	}
	if err := log.Close(); err != nil {
		return err
	}
	fmt.Printf("7. closed with %d live records\n", live)

	log, err = pipeline.Open(dev, cfg)
	if err != nil {
		return err
	}
	defer log.Close()
	scanned := 0
	err = log.Scan(func(pos pipeline.Position, p []byte) error {
		if !bytes.Equal(p, record(binary.BigEndian.Uint64(p))) {
			return fmt.Errorf("record at %d differs after reopen", pos)
		}
		scanned++
		return nil
	})
	if err != nil {
		return err
	}
	st = log.Stats()
	fmt.Printf("8. reopened (epoch %d) and scanned %d verified records from head %d to tail %d\n", st.Epoch, scanned, st.Head, st.Durable)
	if scanned != live {
		return fmt.Errorf("scanned %d records after reopen, %d before", scanned, live)
	}
	fmt.Println("ok: every acknowledged, unreleased record survived")
	return nil
}
