package kv_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/examples/kvstore/kv"
	"github.com/ringlog/ringlog/pipeline"
)

const (
	crashSize    = 256 << 10
	crashWriters = 3
	crashKeys    = 6   // per writer
	crashCold    = 2   // per writer: written first, never again
	crashOps     = 300 // per writer
	crashImages  = 6   // random images per cut, besides the all-dropped and all-landed ones
)

// crashValue is the value writer w puts in its op i: its bytes say who
// wrote it, so a mixed-up value cannot pass for the right one.
func crashValue(w, i int) []byte {
	n := 100 + (w*7919+i*104729)%1800
	v := make([]byte, n)
	for j := range v {
		v[j] = byte(w*31 + i*17 + j)
	}
	copy(v, fmt.Sprintf("w%d-op%d|", w, i))
	return v
}

// writerLog is what one writer knows after a crash: the last acknowledged
// state of each of its keys (nil: no value) and the one operation that was
// in flight when the power failed, which may or may not have taken effect.
type writerLog struct {
	acked       map[string][]byte
	inflight    bool
	inflightKey string
	inflightVal []byte // nil for a Delete
	ops         int    // operations acknowledged
}

// runCrashWorkload runs the writers until the workload ends or the power
// fails, and returns what each writer saw.
func runCrashWorkload(t *testing.T, s *kv.Store, seed uint64) []*writerLog {
	logs := make([]*writerLog, crashWriters)
	var wg sync.WaitGroup
	for w := range crashWriters {
		wl := &writerLog{acked: map[string][]byte{}}
		logs[w] = wl
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for i := range crashOps {
				key := fmt.Sprintf("w%d-k%d", w, rng.IntN(crashKeys))
				if i < crashCold {
					key = fmt.Sprintf("w%d-c%d", w, i)
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				var val []byte
				var err error
				if rng.IntN(6) == 0 && i >= crashCold {
					err = s.Delete(ctx, key)
				} else {
					val = crashValue(w, i)
					err = s.Put(ctx, key, val)
				}
				cancel()
				if err != nil {
					if !errors.Is(err, device.ErrPowerCut) && !errors.Is(err, pipeline.ErrFailed) {
						t.Errorf("writer %d op %d: %v; want an error caused by the power cut", w, i, err)
					}
					wl.inflight, wl.inflightKey, wl.inflightVal = true, key, val
					return
				}
				wl.acked[key] = val
				wl.ops++
			}
		}()
	}
	wg.Wait()
	return logs
}

// TestCrash cuts the power at many points of a concurrent put/delete
// workload that wraps the log several times (so crashes land in group
// commits, collector passes and the cleaner's copies), and reopens every
// image the cut could leave — all unsynced writes dropped, all landed, and
// random mixes of dropped, landed and torn ones. Every acknowledged Put and
// Delete must be there; an operation in flight at the cut may show its old
// or its new state, nothing else; and the reopened store must take writes.
func TestCrash(t *testing.T) {
	cfg := pipeline.Config{CollectInterval: 5 * time.Millisecond}

	// Calibrate: how many device writes and syncs does the whole workload
	// take without a cut?
	dev := device.NewCrash(crashSize)
	s := newStore(t, dev, cfg)
	before := dev.Ops()
	runCrashWorkload(t, s, 0)
	st := s.Stats()
	total := dev.Ops() - before
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("workload: %d device writes and syncs, %d records, log wrapped to lap %d, %d values copied by the cleaner",
		total, st.Log.Appends, int64(st.Log.Tail)/st.Log.Capacity, st.Moved)
	if int64(st.Log.Tail) < 2*st.Log.Capacity || st.Moved < crashWriters*crashCold {
		t.Fatalf("the workload should wrap the log twice and make the cleaner copy the cold values: %+v", st)
	}

	cuts := 60
	if testing.Short() {
		cuts = 15
	}
	var images, checked, inflightOld, inflightNew, inflightSame int
	rng := rand.New(rand.NewPCG(42, 42))
	for c := range cuts {
		cut := int64(c) * total / int64(cuts)
		cut += rng.Int64N(max(1, total/int64(cuts)))
		dev := device.NewCrash(crashSize)
		s := newStore(t, dev, cfg)
		dev.CutAfter(cut)
		logs := runCrashWorkload(t, s, uint64(c+1))
		s.Close() // may fail: the power is out
		if t.Failed() {
			return
		}
		imgs := [][]byte{dev.DurableImage(), dev.ImageFor(allLanded(dev.Choices()))}
		for range crashImages {
			imgs = append(imgs, dev.Image(rng))
		}
		for i, img := range imgs {
			images++
			o, n, same, k := checkImage(t, img, cfg, logs, fmt.Sprintf("cut %d (after %d ops), image %d", c, cut, i))
			inflightOld += o
			inflightNew += n
			inflightSame += same
			checked += k
			if t.Failed() {
				return
			}
		}
	}
	t.Logf("%d cuts, %d images reopened, %d key states checked; operations in flight at the cut: %d showed the old state, %d the new, %d could not tell (same)",
		cuts, images, checked, inflightOld, inflightNew, inflightSame)
}

func allLanded(choices []int) []int {
	pick := make([]int, len(choices))
	for i := range pick {
		pick[i] = 1
	}
	return pick
}

// checkImage boots img, opens the store, and compares every key with what
// the writers were told.
func checkImage(t *testing.T, img []byte, cfg pipeline.Config, logs []*writerLog, what string) (old, new, same, checked int) {
	t.Helper()
	dev := device.NewCrashFrom(img)
	s, err := kv.Open(dev, cfg)
	if err != nil {
		t.Fatalf("%s: Open: %v", what, err)
	}
	defer s.Close()
	for w, wl := range logs {
		var keys []string
		for k := range crashKeys {
			keys = append(keys, fmt.Sprintf("w%d-k%d", w, k))
		}
		for k := range crashCold {
			keys = append(keys, fmt.Sprintf("w%d-c%d", w, k))
		}
		for _, key := range keys {
			got, err := s.Get(key)
			if err != nil && !errors.Is(err, kv.ErrNotFound) {
				t.Fatalf("%s: Get(%q): %v", what, key, err)
			}
			if errors.Is(err, kv.ErrNotFound) {
				got = nil
			}
			want := wl.acked[key]
			checked++
			if wl.inflight && wl.inflightKey == key {
				isOld, isNew := equalVal(got, want), equalVal(got, wl.inflightVal)
				switch {
				case isOld && isNew:
					same++
				case isOld:
					old++
				case isNew:
					new++
				default:
					t.Fatalf("%s: key %q = %s; want the acknowledged %s or the in-flight %s", what, key, show(got), show(want), show(wl.inflightVal))
				}
				continue
			}
			if !equalVal(got, want) {
				t.Fatalf("%s: key %q = %s; want the acknowledged %s", what, key, show(got), show(want))
			}
		}
	}
	// The recovered store takes writes and keeps them.
	ctx := context.Background()
	if err := s.Put(ctx, "after-crash", []byte("ok")); err != nil {
		t.Fatalf("%s: Put after recovery: %v", what, err)
	}
	mustGet(t, s, "after-crash", []byte("ok"))
	return old, new, same, checked
}

func equalVal(a, b []byte) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return bytes.Equal(a, b)
}

func show(v []byte) string {
	if v == nil {
		return "<no value>"
	}
	if i := bytes.IndexByte(v, '|'); i > 0 {
		return fmt.Sprintf("%q (%d bytes)", v[:i], len(v))
	}
	return fmt.Sprintf("%d bytes", len(v))
}
