// Package kv is a small persistent key-value store built on a ringlog
// pipeline.Log: every Put and Delete is one durable record, an in-memory
// index maps each key to the position of its newest record, and the log's
// collector reclaims a record as soon as a newer one for the same key makes
// it garbage, so a store under a steady overwrite workload recycles its
// space forever.
//
// Records are encoded as
//
//	op (1 byte: 'P' put, 'D' delete) | uvarint key length | key | value
//
// and Open rebuilds the index by scanning the log from its head (the newest
// record of a key wins).
//
// Space. The collector reclaims only from the head, in order, and stops at
// the first live record; a key written once and never again would pin the
// head for ever. So the store runs a cleaner: when free space runs low it
// collects, and if the head is still a live value it copies that value to
// the tail (same bytes, newer position) so that the old copy becomes
// garbage, and repeats until a comfortable amount of space is free, or
// until so little of the log is garbage that copying would win nothing (the
// store keeps count of the bytes its live values take). Puts and Deletes
// are admitted only while a reserve stays free for the cleaner (Deletes may
// dig deeper into it than Puts, so a full store can still be emptied), and
// wait for the cleaner otherwise; their context bounds the wait, ending
// with an error matching pipeline.ErrNoSpace. A key and value
// together may be at most MaxEntry bytes, a thirty-second of the log.
//
// Tombstones. A Delete writes a tombstone. The tombstone is garbage once it
// reaches the head of the log, because by then every older record of its key
// is already behind the head: writes to one key are serialized, so a key's
// records lie in the log in the order they were made.
//
// Durability: Put and Delete return nil only once their record is durable;
// after a crash, Open shows every acknowledged Put and Delete. An operation
// that returned an error may or may not have taken effect.
package kv

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/pipeline"
)

// Errors returned by the store. A value too large matches
// pipeline.ErrTooLarge; a store that stayed full until the caller's context
// ended matches pipeline.ErrNoSpace.
var (
	// ErrNotFound: the key has no value.
	ErrNotFound = errors.New("kv: key not found")
	// ErrBadRecord: a record in the log is not a kv record.
	ErrBadRecord = errors.New("kv: malformed record")
	// ErrBadKey: the key is empty or too long.
	ErrBadKey = errors.New("kv: bad key")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("kv: closed")
)

// MaxKey is the longest key Put and Delete accept.
const MaxKey = 1 << 16

const (
	opPut    = 'P'
	opDelete = 'D'
	// recordOverhead bounds what a record costs beyond its payload: the
	// log's frame header and rounding, and the op and key length.
	recordOverhead = 64 + 1 + binary.MaxVarintLen64
)

// entry is what the index knows of a key: its newest record.
type entry struct {
	pos     pipeline.Position
	size    int64 // bytes the record takes in the log (an estimate)
	deleted bool  // the newest record is a tombstone
}

// tomb is a tombstone the collector has declared garbage; its index entry
// is dropped once the head has passed it.
type tomb struct {
	pos pipeline.Position
	key string
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

// Store is a key-value store on a ringlog. Its methods are safe for
// concurrent use.
type Store struct {
	log      *pipeline.Log
	capacity int64
	reserve  int64 // free bytes Puts leave for the cleaner (Deletes: half)
	maxEntry int

	mu      sync.Mutex
	index   map[string]entry
	locks   map[string]*keyLock // one writer per key at a time
	ready   bool                // the index has been rebuilt; until then nothing is garbage
	dead    []tomb              // garbage tombstones, in position order
	failed  error               // a write failed: the store refuses writes until reopened
	collect error               // the last collector pass failed so, the log being fine (a read)
	closed  bool
	pending int64             // bytes of writes admitted and not yet returned
	live    int64             // bytes of the log the newest values take
	seen    pipeline.Position // the head when waiters were last woken
	space   chan struct{}     // closed (and replaced) when the cleaner has freed space
	changed chan struct{}     // closed (and replaced) when the index changes
	garbage uint64            // records the checker declared garbage
	moved   uint64            // live records the cleaner copied forward

	kick   chan struct{} // wakes the cleaner (capacity 1)
	quit   chan struct{} // closed by Close
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the cleaner has returned
	closes chan struct{} // closed when the first Close has returned
}

// Format writes an empty store (an empty log) into the region cfg
// describes. It is pipeline.Format.
func Format(dev device.Device, cfg pipeline.Config) error {
	return pipeline.Format(dev, cfg)
}

// Open opens the log in the region cfg describes, rebuilds the index by
// scanning it, and starts the cleaner. cfg.Checker must be nil: the store is
// its own checker. Close the store before the device; the store never
// closes dev.
func Open(dev device.Device, cfg pipeline.Config) (*Store, error) {
	if cfg.Checker != nil {
		return nil, fmt.Errorf("kv: Config.Checker must be nil: the store decides what is garbage")
	}
	s := &Store{
		index: make(map[string]entry), locks: make(map[string]*keyLock),
		space: make(chan struct{}), changed: make(chan struct{}),
		kick: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}), closes: make(chan struct{}),
	}
	cfg.Checker = s
	l, err := pipeline.Open(dev, cfg)
	if err != nil {
		return nil, err
	}
	s.log = l
	s.capacity = l.Stats().Capacity
	s.reserve = s.capacity / 8
	s.maxEntry = min(int(s.reserve/4), l.MaxRecord()) - recordOverhead
	err = l.Scan(func(pos pipeline.Position, payload []byte) error {
		op, key, _, err := decode(payload)
		if err != nil {
			return fmt.Errorf("%w at position %d: %w", ErrBadRecord, pos, err)
		}
		s.mu.Lock()
		s.setLocked(string(key), entryFor(pos, op, payload))
		s.mu.Unlock()
		return nil
	})
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("kv: rebuild index: %w", err)
	}
	s.mu.Lock()
	s.ready = true
	s.mu.Unlock()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	go s.clean()
	return s, nil
}

// MaxEntry is the largest len(key)+len(value) Put accepts: a thirty-second
// of the log, so that the cleaner always has room to copy a value.
func (s *Store) MaxEntry() int { return s.maxEntry }

func encode(op byte, key string, value []byte) []byte {
	p := make([]byte, 0, 1+binary.MaxVarintLen64+len(key)+len(value))
	p = append(p, op)
	p = binary.AppendUvarint(p, uint64(len(key)))
	p = append(p, key...)
	return append(p, value...)
}

func decode(p []byte) (op byte, key, value []byte, err error) {
	if len(p) < 2 {
		return 0, nil, nil, fmt.Errorf("%d bytes", len(p))
	}
	op = p[0]
	if op != opPut && op != opDelete {
		return 0, nil, nil, fmt.Errorf("op %q", op)
	}
	n, w := binary.Uvarint(p[1:])
	if w <= 0 || n == 0 || n > uint64(len(p)-1-w) {
		return 0, nil, nil, fmt.Errorf("key length")
	}
	key = p[1+w : 1+w+int(n)]
	value = p[1+w+int(n):]
	if op == opDelete && len(value) != 0 {
		return 0, nil, nil, fmt.Errorf("tombstone with a value")
	}
	return op, key, value, nil
}

func checkKey(key string) error {
	if len(key) == 0 || len(key) > MaxKey {
		return fmt.Errorf("%w: length %d (1..%d)", ErrBadKey, len(key), MaxKey)
	}
	return nil
}

// writable reports why the store cannot take writes, if it cannot.
func (s *Store) writable() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writableLocked()
}

// writableLocked reports why the store cannot take writes, if it cannot.
func (s *Store) writableLocked() error {
	if s.closed {
		return ErrClosed
	}
	return s.failed
}

// lockKey serializes writers (and the cleaner) of one key.
func (s *Store) lockKey(key string) (unlock func()) {
	s.mu.Lock()
	l := s.locks[key]
	if l == nil {
		l = &keyLock{}
		s.locks[key] = l
	}
	l.refs++
	s.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		s.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(s.locks, key)
		}
		s.mu.Unlock()
	}
}

// admit waits until a write of n bytes leaves keep bytes free, and counts
// it as pending. The caller must release(n).
func (s *Store) admit(ctx context.Context, n, keep int64) error {
	for waited := false; ; waited = true {
		s.mu.Lock()
		if err := s.writableLocked(); err != nil {
			s.mu.Unlock()
			return err
		}
		free := s.log.Stats().Free - s.pending - n
		if free < keep && waited && s.collect != nil {
			// The pass this write waited for failed (a read, say): say
			// so rather than wait for one that may fail the same way.
			// The store goes on; the next write tries a new pass.
			err := s.collect
			s.mu.Unlock()
			return err
		}
		if free >= keep {
			s.pending += n
			s.mu.Unlock()
			if free < 2*s.reserve {
				s.wake() // start cleaning before anyone has to wait
			}
			return nil
		}
		freed, changed := s.space, s.changed
		s.mu.Unlock()
		s.wake()
		select {
		case <-freed:
		case <-changed: // a value overwritten or deleted: garbage to win
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", pipeline.ErrNoSpace, ctx.Err())
		case <-s.quit:
			return ErrClosed
		}
	}
}

func (s *Store) release(n int64) {
	s.mu.Lock()
	s.pending -= n
	s.mu.Unlock()
}

func (s *Store) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func entryFor(pos pipeline.Position, op byte, payload []byte) entry {
	return entry{pos: pos, size: int64(len(payload) + recordOverhead), deleted: op == opDelete}
}

// setLocked records that e is key's newest record.
func (s *Store) setLocked(key string, e entry) {
	if old, ok := s.index[key]; ok && !old.deleted {
		s.live -= old.size
	}
	if !e.deleted {
		s.live += e.size
	}
	s.index[key] = e
}

// indexLocked records that e is key's newest record and wakes whoever
// waits for the index to change.
func (s *Store) indexLocked(key string, e entry) {
	s.setLocked(key, e)
	close(s.changed)
	s.changed = make(chan struct{})
}

// append writes one record of key, whose key lock the caller holds, and
// indexes it once it is durable.
func (s *Store) append(ctx context.Context, op byte, key string, payload []byte) error {
	pos, err := s.log.Append(ctx, payload)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if errors.Is(err, pipeline.ErrFailed) && s.failed == nil {
			// The record may be on the device but not in the index: only a
			// reopen (which rescans) can tell.
			s.failed = err
			close(s.changed)
			s.changed = make(chan struct{})
		}
		if errors.Is(err, pipeline.ErrClosed) {
			return fmt.Errorf("%w: %w", ErrClosed, err)
		}
		return err
	}
	s.indexLocked(key, entryFor(pos, op, payload))
	return nil
}

// Put sets key to value; it returns once the change is durable. ctx bounds
// the wait for room (see the package comment).
func (s *Store) Put(ctx context.Context, key string, value []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if len(key)+len(value) > s.maxEntry {
		return fmt.Errorf("%w: a key and value of %d bytes; at most %d fit this store", pipeline.ErrTooLarge, len(key)+len(value), s.maxEntry)
	}
	payload := encode(opPut, key, value)
	n := int64(len(payload) + recordOverhead)
	if err := s.admit(ctx, n, s.reserve); err != nil {
		return err
	}
	defer s.release(n)
	unlock := s.lockKey(key)
	defer unlock()
	return s.append(ctx, opPut, key, payload)
}

// Delete removes key; it returns once the change is durable. Deleting a key
// that has no value writes nothing.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	s.mu.Lock()
	e, ok := s.index[key]
	s.mu.Unlock()
	if !ok || e.deleted {
		return s.writable()
	}
	payload := encode(opDelete, key, nil)
	n := int64(len(payload) + recordOverhead)
	if err := s.admit(ctx, n, s.reserve/2); err != nil {
		return err
	}
	defer s.release(n)
	unlock := s.lockKey(key)
	defer unlock()
	s.mu.Lock()
	e, ok = s.index[key]
	s.mu.Unlock()
	if !ok || e.deleted {
		return nil // deleted meanwhile
	}
	return s.append(ctx, opDelete, key, payload)
}

// Get returns a copy of key's value, or ErrNotFound.
func (s *Store) Get(key string) ([]byte, error) {
	var last pipeline.Position
	for try := 0; ; try++ {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, ErrClosed
		}
		e, ok := s.index[key]
		s.mu.Unlock()
		if !ok || e.deleted {
			return nil, ErrNotFound
		}
		p, err := s.log.Read(e.pos)
		if errors.Is(err, pipeline.ErrCollected) && (try == 0 || e.pos != last) {
			// A newer record (a new value, or the cleaner's copy) replaced
			// this one and the collector reclaimed it between the lookup
			// and the read: look again.
			last = e.pos
			continue
		}
		if errors.Is(err, pipeline.ErrClosed) {
			return nil, fmt.Errorf("%w: %w", ErrClosed, err)
		}
		if err != nil {
			return nil, fmt.Errorf("kv: get %q: %w", key, err)
		}
		_, k, v, err := decode(p)
		if err != nil || string(k) != key {
			return nil, fmt.Errorf("%w at position %d (key %q)", ErrBadRecord, e.pos, key)
		}
		return v, nil
	}
}

// Keys returns every key that has a value, sorted.
func (s *Store) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.index))
	for k, e := range s.index {
		if !e.deleted {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// garbageLocked is the store's rule. A record is garbage once a newer
// record of its key is indexed. A tombstone that is still its key's newest
// record is garbage too: the collector asks about it only at the head, and
// then every older record of its key is already gone. A record newer than
// what the index holds for its key (or of a key the index does not know)
// has been made durable but not indexed yet — its Append has not returned —
// so it is live.
func (s *Store) garbageLocked(pos pipeline.Position, op byte, key []byte) bool {
	if !s.ready {
		return false
	}
	e, ok := s.index[string(key)]
	switch {
	case !ok || pos > e.pos:
		return false
	case pos < e.pos:
		return true
	default:
		return op == opDelete
	}
}

// IsGarbage implements pipeline.GarbageChecker; the log's collector calls
// it, oldest record first, from its own goroutine.
func (s *Store) IsGarbage(pos pipeline.Position, payload []byte) (bool, error) {
	op, key, _, err := decode(payload)
	if err != nil {
		return false, fmt.Errorf("%w at position %d: %w", ErrBadRecord, pos, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.purgeLocked()
	g := s.garbageLocked(pos, op, key)
	if g {
		s.garbage++
		if e := s.index[string(key)]; e.pos == pos {
			// A tombstone at the head: its index entry goes once the head
			// has passed it for good.
			s.dead = append(s.dead, tomb{pos: pos, key: string(key)})
		}
	}
	return g, nil
}

// purgeLocked drops the index entries of tombstones the head has passed.
func (s *Store) purgeLocked() {
	if len(s.dead) == 0 {
		return
	}
	head := s.log.Stats().Head
	i := 0
	for ; i < len(s.dead) && s.dead[i].pos < head; i++ {
		t := s.dead[i]
		if e, ok := s.index[t.key]; ok && e.pos == t.pos {
			delete(s.index, t.key)
		}
	}
	s.dead = s.dead[i:]
}

// clean is the cleaner's goroutine: woken when free space runs low, it
// collects and copies live values off the head until enough is free.
func (s *Store) clean() {
	defer close(s.done)
	for {
		select {
		case <-s.kick:
		case <-s.quit:
			return
		}
		s.cleanRound()
	}
}

// cleanRound frees space until 3/8 of the log is free, there is too little
// garbage left to be worth copying live values for, the store closes, or it
// has copied a whole log's worth of live values.
func (s *Store) cleanRound() {
	var copied int64
	for {
		err := s.log.Collect(s.ctx)
		s.announce(err)
		if err != nil {
			return
		}
		st := s.log.Stats()
		s.mu.Lock()
		pending, live, changed := s.pending, s.live, s.changed
		s.mu.Unlock()
		if st.Free-pending >= 3*s.reserve || st.Used-live < s.reserve/4 || copied >= s.capacity {
			return
		}
		n, progress, err := s.moveHead()
		switch {
		case err != nil:
			return // closed or failed: the writers see it for themselves
		case !progress:
			// The head is a record whose Append has not returned yet: wait
			// until it is indexed.
			select {
			case <-changed:
			case <-s.quit:
				return
			}
		}
		copied += n
	}
}

// announce wakes the writers waiting for space if the head has moved since
// they were last woken, or if the collector failed. A head that could not be
// made durable, or a record that is not the store's, fails the store (it
// needs a reopen); any other failure, a read say, leaves the log as it was,
// so the writers waiting hear of it (admit) and the next pass tries again.
func (s *Store) announce(err error) {
	head := s.log.Stats().Head
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err == nil || errors.Is(err, context.Canceled) || errors.Is(err, pipeline.ErrClosed):
		s.collect = nil
	case errors.Is(err, pipeline.ErrFailed) || errors.Is(err, ErrBadRecord):
		if s.failed == nil {
			s.failed = fmt.Errorf("kv: collect: %w", err)
			close(s.changed)
			s.changed = make(chan struct{})
		}
	default:
		s.collect = fmt.Errorf("kv: collect: %w", err)
	}
	if err != nil || head > s.seen {
		s.seen = head
		close(s.space)
		s.space = make(chan struct{})
	}
}

// moveHead copies the live value at the head of the log to its tail, so
// that the head becomes garbage. progress is false when the head record
// cannot be moved until the index changes.
func (s *Store) moveHead() (n int64, progress bool, err error) {
	st := s.log.Stats()
	if st.Head >= st.Durable {
		return 0, false, nil
	}
	pos := st.Head
	p, err := s.log.Read(pos)
	if errors.Is(err, pipeline.ErrCollected) {
		return 0, true, nil // the head moved on by itself
	}
	if err != nil {
		return 0, false, err
	}
	op, key, _, err := decode(p)
	if err != nil {
		return 0, false, fmt.Errorf("%w at position %d: %w", ErrBadRecord, pos, err)
	}
	s.mu.Lock()
	e, ok := s.index[string(key)]
	garbage := s.garbageLocked(pos, op, key)
	s.mu.Unlock()
	if garbage {
		return 0, true, nil // became garbage since the last pass
	}
	if !ok || e.pos != pos {
		return 0, false, nil // not indexed yet
	}
	unlock := s.lockKey(string(key))
	defer unlock()
	s.mu.Lock()
	e, ok = s.index[string(key)]
	s.mu.Unlock()
	if !ok || e.pos != pos {
		return 0, true, nil // overwritten or deleted meanwhile
	}
	if err := s.append(s.ctx, opPut, string(key), p); err != nil {
		return 0, false, err
	}
	s.mu.Lock()
	s.moved++
	s.mu.Unlock()
	return int64(len(p)), true, nil
}

// Collect runs a collector pass now (see pipeline.Log.Collect).
func (s *Store) Collect(ctx context.Context) error { return s.log.Collect(ctx) }

// Stats is a snapshot of the store and its log.
type Stats struct {
	Keys       int    // keys with a value
	Tombstones int    // deleted keys whose tombstone is still in the log
	Garbage    uint64 // records the store has declared garbage since Open
	Moved      uint64 // live values the cleaner copied off the head since Open
	Log        pipeline.Stats
}

// Stats returns a snapshot of the store.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.purgeLocked()
	st := Stats{Log: s.log.Stats()}
	for _, e := range s.index {
		if e.deleted {
			st.Tombstones++
		} else {
			st.Keys++
		}
	}
	st.Garbage, st.Moved = s.garbage, s.moved
	return st
}

// Close stops the cleaner and closes the log (not the device). Operations
// in flight return an error. A second Close returns ErrClosed once the first
// has returned.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.closes // the caller may close the device next
		return ErrClosed
	}
	s.closed = true
	s.mu.Unlock()
	defer close(s.closes)
	s.cancel()
	close(s.quit)
	<-s.done
	return s.log.Close()
}
