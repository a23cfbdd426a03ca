package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/pipeline"
	rosewal "github.com/rosedblabs/wal"
	tidwal "github.com/tidwall/wal"
)

// target is one system under test, opened on its own files. Append returns
// only once p is durable (fsync or fdatasync has returned), and is called
// from many goroutines at once.
type target interface {
	Append(p []byte) error
	Close() error
}

// batcher is a target that makes n records durable per call (one write, one
// fdatasync); the runner calls it from one goroutine with n = writers.
type batcher interface {
	AppendBatch(n int) error
}

// system names a target and knows how to open a fresh one in dir.
type system struct {
	name string
	note string // how it is configured, for the report
	open func(dir string, size int, region int64) (target, error)
}

var systems = []system{
	{"ringlog", "pipeline.Log on a pre-formatted file (buffered I/O), checker says everything is garbage so the region recycles; Append is durable on return (group commit)", openRinglog},
	{"tidwall/wal", "v1.2.1, NoSync=false (fsync after every Write); index assignment + Write under a mutex, since indexes must be consecutive", openTidwall},
	{"rosedblabs/wal", "v1.3.8, Sync=true (fsync after every Write); safe for concurrent use, no extra lock", openRose},
	{"raft-wal", "v0.4.2, StoreLog (fsync per call); index assignment + StoreLog under a mutex, since indexes must be monotonic", openRaftWAL},
	{"raw", "pwrite of the caller's record + fdatasync, each writer on its own (no grouping), on a pre-written file", openRaw},
	{"raw-group", "the raw group-commit limit: one goroutine, N = writers records in one pwrite + one fdatasync, on a pre-written file", openRawGroup},
}

// ---- ringlog ----

// ringlogCollectInterval is the -collect flag: 0 keeps the library's default.
var ringlogCollectInterval time.Duration

type ringlogTarget struct {
	dev  *device.File
	log  *pipeline.Log
	last pipeline.Stats
}

// Counters says how many records each fdatasync carried since the last
// call, and how often appends waited for space.
func (t *ringlogTarget) Counters() string {
	st := t.log.Stats()
	appends, groups := st.Appends-t.last.Appends, st.Groups-t.last.Groups
	parked := st.Parked - t.last.Parked
	t.last = st
	return fmt.Sprintf("%.1f records/group commit, %d parked", float64(appends)/float64(max(groups, 1)), parked)
}

func openRinglog(dir string, _ int, region int64) (target, error) {
	dev, err := device.OpenFile(filepath.Join(dir, "ringlog.dev"), device.FileOptions{Size: region})
	if err != nil {
		return nil, err
	}
	everything := pipeline.GarbageFunc(func(pipeline.Position, []byte) (bool, error) { return true, nil })
	cfg := pipeline.Config{Checker: everything, CollectInterval: ringlogCollectInterval}
	if err := pipeline.Format(dev, cfg); err != nil {
		dev.Close()
		return nil, err
	}
	l, err := pipeline.Open(dev, cfg)
	if err != nil {
		dev.Close()
		return nil, err
	}
	return &ringlogTarget{dev: dev, log: l}, nil
}

func (t *ringlogTarget) Append(p []byte) error {
	_, err := t.log.Append(context.Background(), p)
	return err
}

func (t *ringlogTarget) Close() error {
	err := t.log.Close()
	if cerr := t.dev.Close(); err == nil {
		err = cerr
	}
	return err
}

// ---- github.com/tidwall/wal ----

type tidwallTarget struct {
	mu   sync.Mutex
	log  *tidwal.Log
	next uint64
}

func openTidwall(dir string, _ int, _ int64) (target, error) {
	opts := *tidwal.DefaultOptions
	opts.NoSync = false // fsync after every write: the durable setting
	l, err := tidwal.Open(filepath.Join(dir, "tidwall"), &opts)
	if err != nil {
		return nil, err
	}
	return &tidwallTarget{log: l, next: 1}, nil
}

func (t *tidwallTarget) Append(p []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.log.Write(t.next, p); err != nil {
		return err
	}
	t.next++
	return nil
}

func (t *tidwallTarget) Close() error { return t.log.Close() }

// ---- github.com/rosedblabs/wal ----

type roseTarget struct{ w *rosewal.WAL }

func openRose(dir string, _ int, _ int64) (target, error) {
	opts := rosewal.DefaultOptions
	opts.DirPath = filepath.Join(dir, "rosedb")
	opts.Sync = true // fsync after every Write: the durable setting
	opts.BytesPerSync = 0
	w, err := rosewal.Open(opts)
	if err != nil {
		return nil, err
	}
	return &roseTarget{w: w}, nil
}

func (t *roseTarget) Append(p []byte) error {
	_, err := t.w.Write(p)
	return err
}

func (t *roseTarget) Close() error { return t.w.Close() }

// ---- github.com/hashicorp/raft-wal ----

type raftWALTarget struct {
	mu   sync.Mutex
	w    *raftwal.WAL
	next uint64
}

func openRaftWAL(dir string, _ int, _ int64) (target, error) {
	d := filepath.Join(dir, "raftwal")
	if err := os.MkdirAll(d, 0o755); err != nil {
		return nil, err
	}
	w, err := raftwal.Open(d, raftwal.WithLogger(hclog.NewNullLogger()))
	if err != nil {
		return nil, err
	}
	return &raftWALTarget{w: w, next: 1}, nil
}

func (t *raftWALTarget) Append(p []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.w.StoreLog(&raft.Log{Index: t.next, Term: 1, Type: raft.LogCommand, Data: p}); err != nil {
		return err
	}
	t.next++
	return nil
}

func (t *raftWALTarget) Close() error { return t.w.Close() }

// ---- the raw device ----

// rawFile is a file written whole once, so that every later write
// overwrites (as a formatted ringlog does), cut into slots of one record.
type rawFile struct {
	dev    *device.File
	size   int64 // record size
	slots  int64
	cursor atomic.Int64
}

func openRawFile(path string, size int, region int64) (*rawFile, error) {
	dev, err := device.OpenFile(path, device.FileOptions{Size: region})
	if err != nil {
		return nil, err
	}
	chunk := device.AlignedBuffer(1 << 20)
	for off := int64(0); off < region; off += int64(len(chunk)) {
		if _, err := dev.WriteAt(chunk[:min(int64(len(chunk)), region-off)], off); err != nil {
			dev.Close()
			return nil, err
		}
	}
	if err := dev.Sync(); err != nil {
		dev.Close()
		return nil, err
	}
	return &rawFile{dev: dev, size: int64(size), slots: region / int64(size)}, nil
}

// claim returns the offset of the next n consecutive slots, wrapping to
// the start when they would pass the end.
func (r *rawFile) claim(n int64) int64 {
	for {
		cur := r.cursor.Load()
		start := cur
		if start+n > r.slots {
			start = 0
		}
		if r.cursor.CompareAndSwap(cur, start+n) {
			return start * r.size
		}
	}
}

func (r *rawFile) Close() error { return r.dev.Close() }

type rawTarget struct{ *rawFile }

func openRaw(dir string, size int, region int64) (target, error) {
	f, err := openRawFile(filepath.Join(dir, "raw.dev"), size, region)
	if err != nil {
		return nil, err
	}
	return rawTarget{f}, nil
}

func (t rawTarget) Append(p []byte) error {
	if _, err := t.dev.WriteAt(p, t.claim(1)); err != nil {
		return err
	}
	return t.dev.Sync()
}

type rawGroupTarget struct {
	*rawFile
	buf []byte
}

func openRawGroup(dir string, size int, region int64) (target, error) {
	f, err := openRawFile(filepath.Join(dir, "rawgroup.dev"), size, region)
	if err != nil {
		return nil, err
	}
	return &rawGroupTarget{rawFile: f}, nil
}

func (t *rawGroupTarget) Append(p []byte) error {
	return fmt.Errorf("raw-group appends only in batches")
}

func (t *rawGroupTarget) AppendBatch(n int) error {
	need := n * int(t.size)
	if len(t.buf) < need {
		t.buf = device.AlignedBuffer(need)
		fill(t.buf, 0x5eed)
	}
	if _, err := t.dev.WriteAt(t.buf[:need], t.claim(int64(n))); err != nil {
		return err
	}
	return t.dev.Sync()
}
