package wal

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ringlog/ringlog/device"
)

// wbDev models Linux writeback errors on one open file description: a write
// lands in the page cache; a writeback failure (at a random moment while a
// sync runs) drops every dirty page and bumps an error sequence; the first
// sync to check afterwards gets EIO, every other one nil, whichever pages
// were its own. Device's Faulty reports a failure to the sync it injects it
// into; this is the case that it does not cover: overlapping syncs, one of
// which takes the error for the other.
type wbDev struct {
	mu       sync.Mutex
	cache    []byte
	durable  []byte
	pending  []wbWrite
	nextID   uint64
	errSeq   int
	seen     int
	rng      *rand.Rand
	failLeft int
	failP    float64
	armed    atomic.Bool
	lost     int
}

type wbWrite struct {
	id   uint64
	off  int64
	data []byte
}

func newWBDev(size int64, seed int64) *wbDev {
	return &wbDev{cache: make([]byte, size), durable: make([]byte, size), rng: rand.New(rand.NewSource(seed)), failLeft: 1}
}

func (d *wbDev) ReadAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return copy(p, d.cache[off:]), nil
}

func (d *wbDev) WriteAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	copy(d.cache[off:], p)
	d.pending = append(d.pending, wbWrite{id: d.nextID, off: off, data: append([]byte(nil), p...)})
	d.nextID++
	return len(p), nil
}

func (d *wbDev) maybeFail() {
	if d.armed.Load() && d.failLeft > 0 && len(d.pending) > 0 && d.rng.Float64() < d.failP {
		d.lost += len(d.pending)
		d.pending = nil
		d.errSeq++
		d.failLeft--
	}
}

// pause lets other goroutines run a random number of times, so that the
// syncs of different callers interleave differently from seed to seed.
func (d *wbDev) pause() {
	d.mu.Lock()
	n := d.rng.Intn(8)
	d.mu.Unlock()
	for range n {
		runtime.Gosched()
	}
}

func (d *wbDev) Sync() error {
	d.mu.Lock()
	upto := d.nextID
	d.maybeFail()
	d.mu.Unlock()
	d.pause()
	d.mu.Lock()
	d.maybeFail()
	i := 0
	for ; i < len(d.pending) && d.pending[i].id < upto; i++ {
		w := d.pending[i]
		copy(d.durable[w.off:], w.data)
	}
	d.pending = d.pending[i:]
	var err error
	if d.errSeq != d.seen {
		d.seen = d.errSeq
		err = device.EIO
	}
	d.mu.Unlock()
	d.pause()
	return err
}

func (d *wbDev) Size() int64    { return int64(len(d.cache)) }
func (d *wbDev) BlockSize() int { return 512 }
func (d *wbDev) Close() error   { return nil }

// TestWritebackErrorReportedOnce commits from several goroutines, at one to
// three batches in flight, while another writes outside the journal and
// calls Journal.Sync; one writeback fails somewhere. After a crash (only
// what reached the medium survives), every acknowledged commit and every
// write a successful Sync covered must be there.
func TestWritebackErrorReportedOnce(t *testing.T) {
	const (
		size     = 128 << 10
		home     = 32 << 10 // home slots: K of 8 bytes
		K        = 64
		dataBase = 64 << 10 // Journal.Sync callers' data, 8 bytes each
		nData    = 4096
	)
	iters := 150
	if testing.Short() {
		iters = 30
	}
	violations := 0
	for it := 0; it < iters; it++ {
		for _, depth := range []int{1, 2, 3} {
			for _, deferApply := range []bool{false, true} {
				seed := int64(it*100 + depth*10)
				if deferApply {
					seed++
				}
				d := newWBDev(size, seed)
				d.failP = 0.05
				if err := Format(d, 0, MinSize); err != nil {
					t.Fatal(err)
				}
				j, err := Open(d, 0, MinSize, Options{MaxInFlight: depth, DeferApply: deferApply})
				if err != nil {
					t.Fatal(err)
				}
				d.armed.Store(true)
				var mu sync.Mutex
				acked := map[int]uint64{} // slot -> max acked tx value
				var dataOK []int64
				var next atomic.Uint64
				var wg sync.WaitGroup
				for g := 0; g < 6; g++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for k := 0; k < 60; k++ {
							v := next.Add(1)
							slot := int(v % K)
							tx := j.Begin()
							tx.Write(home+int64(slot)*8, binary.LittleEndian.AppendUint64(nil, v))
							if err := j.Commit(context.Background(), tx); err != nil {
								return
							}
							mu.Lock()
							if v > acked[slot] {
								acked[slot] = v
							}
							mu.Unlock()
						}
					}()
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for k := 0; k < 60; k++ {
						off := dataBase + int64((int(seed)*7+k)%nData)*8
						d.WriteAt(binary.LittleEndian.AppendUint64(nil, uint64(k+1)), off)
						if err := j.Sync(); err != nil {
							return
						}
						mu.Lock()
						dataOK = append(dataOK, off)
						mu.Unlock()
					}
				}()
				wg.Wait()
				j.Close()
				// Crash: only the durable image survives.
				mem := device.NewMem(size)
				mem.WriteAt(d.durable, 0)
				j2, err := Open(mem, 0, MinSize, Options{})
				if err != nil {
					t.Fatalf("reopen: %v", err)
				}
				j2.Close()
				var msgs []string
				for slot, v := range acked {
					got := binary.LittleEndian.Uint64(readAt(t, mem, home+int64(slot)*8, 8))
					if got < v {
						msgs = append(msgs, fmt.Sprintf("slot %d: acked %d, durable %d", slot, v, got))
					}
				}
				for _, off := range dataOK {
					if binary.LittleEndian.Uint64(readAt(t, mem, off, 8)) == 0 {
						msgs = append(msgs, fmt.Sprintf("Sync data at %d lost", off))
					}
				}
				if len(msgs) > 0 {
					violations++
					if violations <= 5 {
						t.Errorf("depth %d defer %v seed %d lost=%d: %v", depth, deferApply, seed, d.lost, msgs[:min(3, len(msgs))])
					}
				}
			}
		}
	}
	if violations > 0 {
		t.Errorf("%d of %d runs lost acknowledged data", violations, iters*6)
	}
}
