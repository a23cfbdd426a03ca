package wal

import (
	"fmt"
	"sync/atomic"
)

const (
	txOpen int32 = iota
	txQueued
	txTaken
	txCancelled
)

// Tx is a set of writes that a Journal applies atomically. A Tx is used by
// one goroutine until it is passed to Commit or Discard; after that only
// BeginWith may use it again.
type Tx struct {
	j      *Journal
	seq    uint64
	writes []write
	arena  []byte // the bytes of writes, reused by BeginWith
	size   int
	err    error // first bad Write, reported by Commit
	state  atomic.Int32
	done   chan struct{}
	result error
}

// Write adds a write of p at device offset off. p is copied. A write that
// falls outside the device or overlaps the journal's own region makes
// Commit fail with ErrBadWrite.
func (t *Tx) Write(off int64, p []byte) {
	if t.err != nil {
		return
	}
	end := off + int64(len(p))
	switch {
	case off < 0 || end > t.j.dev.Size():
		t.err = fmt.Errorf("%w: [%d, %d) on a device of %d bytes", ErrBadWrite, off, end, t.j.dev.Size())
		return
	case off < t.j.offset+t.j.size && end > t.j.offset:
		t.err = fmt.Errorf("%w: [%d, %d) overlaps the journal [%d, %d)", ErrBadWrite, off, end, t.j.offset, t.j.offset+t.j.size)
		return
	}
	start := len(t.arena)
	t.arena = append(t.arena, p...)
	t.writes = append(t.writes, write{off: off, data: t.arena[start:len(t.arena):len(t.arena)]})
	t.size += len(p)
}

// finish gives a transaction its outcome. Whoever moved it to txTaken
// calls it, once.
func (t *Tx) finish(err error) {
	t.result = err
	t.done <- struct{}{} // capacity 1, sent once: the Tx can be reused
}

// Done delivers one token once a submitted transaction has its outcome
// (Result). Commit consumes it; after Submit the caller receives it.
func (t *Tx) Done() <-chan struct{} { return t.done }

// Result is the outcome of a transaction whose Done token was received: nil
// once it is durable and applied, else why not.
func (t *Tx) Result() error { return t.result }

// Len is the number of writes in the transaction.
func (t *Tx) Len() int { return len(t.writes) }

// Discard abandons a transaction that will not be committed, so that
// transactions begun after it can take effect.
func (t *Tx) Discard() {
	if t.state.CompareAndSwap(txOpen, txCancelled) {
		select {
		case t.j.submit <- t:
		case <-t.j.done:
		}
	}
}
