package kv_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/examples/kvstore/kv"
	"github.com/ringlog/ringlog/pipeline"
)

func newStore(t *testing.T, dev device.Device, cfg pipeline.Config) *kv.Store {
	t.Helper()
	if err := kv.Format(dev, cfg); err != nil {
		t.Fatal(err)
	}
	s, err := kv.Open(dev, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustGet(t *testing.T, s *kv.Store, key string, want []byte) {
	t.Helper()
	got, err := s.Get(key)
	if want == nil {
		if !errors.Is(err, kv.ErrNotFound) {
			t.Fatalf("Get(%q) = %q, %v; want ErrNotFound", key, got, err)
		}
		return
	}
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) = %q, %v; want %q", key, got, err, want)
	}
}

func TestPutGetDeleteReopen(t *testing.T) {
	ctx := context.Background()
	dev := device.NewMem(1 << 20)
	s := newStore(t, dev, pipeline.Config{})
	mustGet(t, s, "a", nil)
	for _, kvp := range [][2]string{{"a", "1"}, {"b", "2"}, {"a", "3"}, {"c", ""}, {"long", string(bytes.Repeat([]byte("x"), 10000))}} {
		if err := s.Put(ctx, kvp[0], []byte(kvp[1])); err != nil {
			t.Fatal(err)
		}
	}
	mustGet(t, s, "a", []byte("3"))
	mustGet(t, s, "b", []byte("2"))
	mustGet(t, s, "c", []byte{})
	if err := s.Delete(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "never"); err != nil {
		t.Fatal(err)
	}
	mustGet(t, s, "b", nil)
	if got, want := s.Keys(), []string{"a", "c", "long"}; !slices.Equal(got, want) {
		t.Fatalf("Keys() = %q, want %q", got, want)
	}
	st := s.Stats()
	if st.Keys != 3 || st.Tombstones != 1 || st.Log.Appends != 6 {
		t.Fatalf("Stats() = %+v; want 3 keys, 1 tombstone, 6 appends (Delete of a missing key writes nothing)", st)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "a", nil); !errors.Is(err, kv.ErrClosed) {
		t.Fatalf("Put after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Get("a"); !errors.Is(err, kv.ErrClosed) {
		t.Fatalf("Get after Close: %v, want ErrClosed", err)
	}

	s, err := kv.Open(dev, pipeline.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustGet(t, s, "a", []byte("3"))
	mustGet(t, s, "b", nil)
	mustGet(t, s, "c", []byte{})
	mustGet(t, s, "long", bytes.Repeat([]byte("x"), 10000))
	if got, want := s.Keys(), []string{"a", "c", "long"}; !slices.Equal(got, want) {
		t.Fatalf("after reopen Keys() = %q, want %q", got, want)
	}
	// The superseded "a" and "b" and the tombstone of "b" are garbage: a
	// pass reclaims everything up to the first live record ("a"=3 is the
	// third record, so the first two go).
	if err := s.Collect(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Log.Collected != 2 {
		t.Fatalf("after Collect: %+v; want the 2 leading superseded records collected", st.Log)
	}
	mustGet(t, s, "a", []byte("3"))
}

// A tombstone is reclaimed once it reaches the head, and its key leaves the
// index; the deletion survives a reopen after that.
func TestTombstoneReclaimed(t *testing.T) {
	ctx := context.Background()
	dev := device.NewMem(1 << 20)
	s := newStore(t, dev, pipeline.Config{})
	defer func() { s.Close() }()
	for _, k := range []string{"a", "b", "c"} {
		if err := s.Put(ctx, k, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"a", "b"} {
		if err := s.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(ctx, "c", []byte("c2")); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Keys != 1 || st.Tombstones != 2 {
		t.Fatalf("before collection: %+v; want 1 key, 2 tombstones", st)
	}
	// One pass reclaims all six records but the newest "c", and the
	// tombstones' keys leave the index.
	if err := s.Collect(ctx); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Log.Collected != 5 || st.Keys != 1 || st.Tombstones != 0 {
		t.Fatalf("after collection: %+v; want 5 records collected, 1 key, no tombstone", st)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var err error
	if s, err = kv.Open(dev, pipeline.Config{}); err != nil {
		t.Fatal(err)
	}
	mustGet(t, s, "a", nil)
	mustGet(t, s, "b", nil)
	mustGet(t, s, "c", []byte("c2"))
	if st := s.Stats(); st.Keys != 1 || st.Tombstones != 0 {
		t.Fatalf("after reopen: %+v; want 1 key, no tombstone", st)
	}
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	dev := device.NewMem(1 << 20)
	if _, err := kv.Open(dev, pipeline.Config{}); !errors.Is(err, pipeline.ErrBadFormat) {
		t.Fatalf("Open of an unformatted device: %v, want ErrBadFormat", err)
	}
	checker := pipeline.GarbageFunc(func(pipeline.Position, []byte) (bool, error) { return false, nil })
	if _, err := kv.Open(dev, pipeline.Config{Checker: checker}); err == nil {
		t.Fatal("Open with a Checker succeeded")
	}
	s := newStore(t, dev, pipeline.Config{})
	defer s.Close()
	if err := s.Put(ctx, "", []byte("v")); !errors.Is(err, kv.ErrBadKey) {
		t.Fatalf("Put with an empty key: %v, want ErrBadKey", err)
	}
	if err := s.Put(ctx, string(make([]byte, kv.MaxKey+1)), nil); !errors.Is(err, kv.ErrBadKey) {
		t.Fatalf("Put with a long key: %v, want ErrBadKey", err)
	}
	if err := s.Put(ctx, "big", make([]byte, s.MaxEntry()-2)); !errors.Is(err, pipeline.ErrTooLarge) {
		t.Fatalf("Put of MaxEntry+1 bytes: %v, want ErrTooLarge", err)
	}
	if err := s.Put(ctx, "bi", make([]byte, s.MaxEntry()-2)); err != nil {
		t.Fatalf("Put of MaxEntry bytes: %v", err)
	}
	mustGet(t, s, "bi", make([]byte, s.MaxEntry()-2))
}

// A log that is not a kv store is refused on Open, not misread.
func TestForeignRecords(t *testing.T) {
	ctx := context.Background()
	dev := device.NewMem(1 << 20)
	if err := pipeline.Format(dev, pipeline.Config{}); err != nil {
		t.Fatal(err)
	}
	l, err := pipeline.Open(dev, pipeline.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, []byte("not a kv record")); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, err := kv.Open(dev, pipeline.Config{}); !errors.Is(err, kv.ErrBadRecord) {
		t.Fatalf("Open of a foreign log: %v, want ErrBadRecord", err)
	}
}

// TestOverwriteForever writes many times the log's capacity over a fixed
// set of keys, from several goroutines, and never runs out of space: every
// overwritten value and every tombstone that reaches the head is garbage,
// and the cleaner copies the values that stay live — among them a set of
// cold keys written once at the start — off the head.
func TestOverwriteForever(t *testing.T) {
	const (
		size    = 512 << 10
		writers = 4
		keys    = 16 // per writer
		cold    = 20
	)
	dev := device.NewMem(size)
	// No periodic collection: space comes from the cleaner alone.
	s := newStore(t, dev, pipeline.Config{CollectInterval: time.Hour})
	defer s.Close()
	capacity := s.Stats().Log.Capacity
	target := 20 * capacity

	var mu sync.Mutex
	model := map[string][]byte{}
	for i := range cold {
		k, v := fmt.Sprintf("cold-%d", i), bytes.Repeat([]byte{'c', byte(i)}, 500)
		if err := s.Put(context.Background(), k, v); err != nil {
			t.Fatal(err)
		}
		model[k] = v
	}
	var written int64
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := 0; ; i++ {
				mu.Lock()
				done := written >= target
				mu.Unlock()
				if done {
					return
				}
				key := fmt.Sprintf("w%d-k%d", w, rng.IntN(keys))
				// A deadline turns a store that never frees space into a
				// failure (ErrNoSpace) instead of a hang.
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				var err error
				var val []byte
				if rng.IntN(8) == 0 {
					err = s.Delete(ctx, key)
				} else {
					val = bytes.Repeat([]byte{byte(i), byte(w)}, 50+rng.IntN(1500))
					err = s.Put(ctx, key, val)
				}
				cancel()
				if err != nil {
					t.Errorf("writer %d, op %d: %v", w, i, err)
					return
				}
				mu.Lock()
				model[key] = val
				written += int64(len(val))
				mu.Unlock()
				if i%50 == 0 {
					mustGetModel(t, s, key, val)
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	st := s.Stats()
	t.Logf("wrote %d bytes of values into a %d-byte log: %d records, %d collected, %d live values copied by the cleaner, tail in lap %d",
		written, capacity, st.Log.Appends, st.Log.Collected, st.Moved, int64(st.Log.Tail)/capacity)
	if int64(st.Log.Tail) < 10*capacity {
		t.Fatalf("tail %d: the log wrapped fewer than 10 times", st.Log.Tail)
	}
	if st.Log.Collected == 0 || st.Moved < cold {
		t.Fatalf("expected collection and the cold values copied forward: %+v", st)
	}
	for k, v := range model {
		mustGet(t, s, k, v)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := kv.Open(dev, pipeline.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for k, v := range model {
		mustGet(t, s2, k, v)
	}
	if got := s2.Stats().Keys; got != countLive(model) {
		t.Fatalf("after reopen %d keys, want %d", got, countLive(model))
	}
}

// TestFull fills a store with live values: a Put that cannot fit fails with
// ErrNoSpace once its context ends, Deletes still go through (they may use
// part of the cleaner's reserve), and the space they free takes Puts again.
func TestFull(t *testing.T) {
	dev := device.NewMem(512 << 10)
	s := newStore(t, dev, pipeline.Config{})
	defer s.Close()
	val := bytes.Repeat([]byte("v"), 4000)
	var stored []string
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		k := fmt.Sprintf("key-%03d", i)
		err := s.Put(ctx, k, val)
		cancel()
		if errors.Is(err, pipeline.ErrNoSpace) && errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatalf("Put %d: %v", i, err)
		}
		stored = append(stored, k)
		if i > 1000 {
			t.Fatal("a 512 KiB store took 4 MB of live values")
		}
	}
	st := s.Stats()
	t.Logf("full after %d values of %d bytes in a %d-byte log (%d bytes live); the cleaner copied %d values",
		len(stored), len(val), st.Log.Capacity, len(stored)*len(val), st.Moved)
	if st.Moved > uint64(len(stored)) {
		// Copying live values wins nothing when there is no garbage
		// behind them: the cleaner must not churn a full store.
		t.Fatalf("the cleaner copied %d values of a store that never had garbage", st.Moved)
	}
	if live := int64(len(stored) * len(val)); live < st.Log.Capacity/2 {
		t.Fatalf("full with only %d of %d bytes live", live, st.Log.Capacity)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, k := range stored[:len(stored)/2] {
		if err := s.Delete(ctx, k); err != nil {
			t.Fatalf("Delete(%q) on a full store: %v", k, err)
		}
	}
	for i := range len(stored) / 4 {
		if err := s.Put(ctx, fmt.Sprintf("again-%d", i), val); err != nil {
			t.Fatalf("Put after deleting half: %v", err)
		}
	}
	for i, k := range stored {
		if i < len(stored)/2 {
			mustGet(t, s, k, nil)
		} else {
			mustGet(t, s, k, val)
		}
	}
}

func mustGetModel(t *testing.T, s *kv.Store, key string, want []byte) {
	t.Helper()
	got, err := s.Get(key)
	switch {
	case want == nil && !errors.Is(err, kv.ErrNotFound):
		t.Errorf("Get(%q) = %d bytes, %v; want ErrNotFound", key, len(got), err)
	case want != nil && (err != nil || !bytes.Equal(got, want)):
		t.Errorf("Get(%q) = %d bytes, %v; want %d bytes", key, len(got), err, len(want))
	}
}

func countLive(m map[string][]byte) int {
	n := 0
	for _, v := range m {
		if v != nil {
			n++
		}
	}
	return n
}

// TestReadErrorDuringCleaningIsTransient: reads that fail while the cleaner
// collects leave the log as it was, so they do not fail the store: a write
// waiting for that pass hears of the error, and later writes go on.
func TestReadErrorDuringCleaningIsTransient(t *testing.T) {
	f := device.NewFaulty(device.NewMem(256 << 10))
	cfg := pipeline.Config{CollectInterval: time.Hour}
	s := newStore(t, f, cfg)
	defer s.Close()
	ctx := context.Background()
	if err := s.Put(ctx, "k", make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	n := f.Count(device.OpRead)
	f.Inject(device.Fault{Op: device.OpRead, N: n + 1}, device.Fault{Op: device.OpRead, N: n + 2}, device.Fault{Op: device.OpRead, N: n + 3})
	// Overwrites fill the log with garbage: the cleaner runs and meets the
	// failed reads.
	var failed int
	for i := range 600 {
		err := s.Put(ctx, "k", bytes.Repeat([]byte{byte(i)}, 1000))
		switch {
		case err == nil:
		case device.IsInjected(err) && !errors.Is(err, pipeline.ErrFailed):
			failed++
		default:
			t.Fatalf("put %d: %v", i, err)
		}
	}
	if f.Count(device.OpRead) < n+3 {
		t.Fatal("the faults were never reached: the test shows nothing")
	}
	if err := s.Put(ctx, "k", []byte("last")); err != nil {
		t.Fatalf("put after the failed reads: %v", err)
	}
	if v, err := s.Get("k"); err != nil || string(v) != "last" {
		t.Fatalf("get: %q, %v", v, err)
	}
	t.Logf("%d puts heard of a failed read", failed)
}
