package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/pipeline"
)

// faultRig is a log on a Faulty device over memory, with some records
// already acknowledged.
type faultRig struct {
	inner   *device.Mem
	f       *device.Faulty
	cfg     pipeline.Config
	l       *pipeline.Log
	acked   map[pipeline.Position][]byte
	tried   map[uint64][]byte // every payload ever appended, by id
	nextID  uint64
	mu      sync.Mutex
	checker *setChecker
}

func newFaultRig(t *testing.T) *faultRig {
	t.Helper()
	r := &faultRig{inner: device.NewMem(256 << 10), acked: map[pipeline.Position][]byte{}, tried: map[uint64][]byte{}, checker: newSetChecker()}
	r.cfg = pipeline.Config{Checker: r.checker}
	if err := pipeline.Format(r.inner, r.cfg); err != nil {
		t.Fatal(err)
	}
	r.f = device.NewFaulty(r.inner)
	r.l = mustOpen(t, r.f, r.cfg)
	for range 30 {
		if _, err := r.append(guardCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func (r *faultRig) payload() []byte { return r.payloadN(-1) }

// payloadN returns a new payload of n bytes (n < 0: some size).
func (r *faultRig) payloadN(n int) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nextID++
	if n < 0 {
		n = 8 + int(r.nextID*97%1500)
	}
	p := idPayload(r.nextID, n)
	r.tried[r.nextID] = p
	return p
}

func (r *faultRig) append(ctx context.Context) (pipeline.Position, error) {
	p := r.payload()
	pos, err := r.l.Append(ctx, p)
	if err == nil {
		r.mu.Lock()
		r.acked[pos] = p
		r.mu.Unlock()
	}
	return pos, err
}

// concurrentAppends runs n appends at once and returns their errors.
func (r *faultRig) concurrentAppends(ctx context.Context, n int) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = r.append(ctx)
		}()
	}
	wg.Wait()
	return errs
}

func expectFailed(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, pipeline.ErrFailed) {
		t.Fatalf("%s: %v, want ErrFailed", what, err)
	}
}

// refuses checks that the failed log takes no more writes.
func (r *faultRig) refuses(t *testing.T) {
	t.Helper()
	writes := r.f.Count(device.OpWrite)
	for i := range 3 {
		_, err := r.append(guardCtx(t))
		expectFailed(t, fmt.Sprintf("Append %d after the failure", i), err)
		res, err := r.l.Reserve(guardCtx(t), 100)
		expectFailed(t, fmt.Sprintf("Reserve %d after the failure", i), err)
		if res != nil {
			t.Fatal("Reserve after the failure returned a reservation")
		}
	}
	if n := r.f.Count(device.OpWrite); n != writes {
		t.Fatalf("%d device writes after the log failed", n-writes)
	}
	// Reading still works.
	r.mu.Lock()
	defer r.mu.Unlock()
	for pos, p := range r.acked {
		if got, err := r.l.Read(pos); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("Read(%d) of an acknowledged record on the failed log: %v", pos, err)
		}
	}
}

// release makes every record garbage to the checker: none acknowledged is
// expected after a reopen any more.
func (r *faultRig) release() {
	r.checker.setAll(true)
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.acked)
}

// reopen closes the failed log and opens the inner device: every
// acknowledged record is intact, and nothing that was never appended is
// there.
func (r *faultRig) reopen(t *testing.T) *pipeline.Log {
	t.Helper()
	if err := r.l.Close(); err != nil {
		t.Fatalf("Close of a failed log: %v", err)
	}
	l := mustOpen(t, r.inner, r.cfg)
	seen := map[pipeline.Position]bool{}
	ps, bs := scanAll(t, l)
	for i, pos := range ps {
		id, ok := payloadID(bs[i])
		if !ok || !bytes.Equal(r.tried[id], bs[i]) {
			t.Fatalf("record at %d after reopen was never appended", pos)
		}
		if i > 0 && pos <= ps[i-1] {
			t.Fatalf("scan out of order: %d after %d", pos, ps[i-1])
		}
		seen[pos] = true
	}
	for pos, p := range r.acked {
		if !seen[pos] {
			t.Fatalf("acknowledged record at %d lost after the failure", pos)
		}
		if got, err := l.Read(pos); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("Read(%d) after reopen: %v", pos, err)
		}
	}
	checkStats(t, l)
	// The reopened log takes writes again.
	if _, err := l.Append(guardCtx(t), []byte("after reopen")); err != nil {
		t.Fatal(err)
	}
	return l
}

// TestFailedDataWriteFailsLog fails the writer's data write, landing none,
// some or all of its blocks first: every append waiting on it fails, and
// after a reopen the acknowledged records are all there, with no frame the
// failed write tore.
func TestFailedDataWriteFailsLog(t *testing.T) {
	for _, land := range []int{0, 512, 2048, 1 << 20} {
		t.Run(fmt.Sprintf("land=%d", land), func(t *testing.T) {
			r := newFaultRig(t)
			// The log is idle: its next write is the writer's data write.
			r.f.Inject(device.Fault{Op: device.OpWrite, N: r.f.Count(device.OpWrite) + 1, Land: land})
			for i, err := range r.concurrentAppends(guardCtx(t), 8) {
				expectFailed(t, fmt.Sprintf("append %d waiting on the failed write", i), err)
				if !errors.Is(err, syscall.EIO) || !device.IsInjected(err) {
					t.Fatalf("append %d: %v does not carry the device error", i, err)
				}
			}
			r.refuses(t)
			r.reopen(t)
		})
	}
}

func TestFailedSyncFailsLog(t *testing.T) {
	r := newFaultRig(t)
	// Two reservations placed before the failure. The tail is first
	// brought to a block so they need no padding: padding would be
	// committed in the background, and the log must be idle when the fault
	// is injected so that the next sync is the one that fails.
	if gap := roundUp(uint64(r.l.Stats().Tail), testBS) - uint64(r.l.Stats().Tail); gap > 0 {
		if gap < 64 {
			gap += testBS // room for an 8-byte id
		}
		p := r.payloadN(int(gap) - 32)
		pos, err := r.l.Append(guardCtx(t), p)
		if err != nil {
			t.Fatal(err)
		}
		r.acked[pos] = p
	}
	res1, err := r.l.Reserve(guardCtx(t), 700)
	if err != nil {
		t.Fatal(err)
	}
	res2, err := r.l.Reserve(guardCtx(t), 50)
	if err != nil {
		t.Fatal(err)
	}
	if res1.Position()%testBS != 0 || res2.Position() != res1.Position()+1536 {
		t.Fatalf("reservations at %d and %d: padding was needed", res1.Position(), res2.Position())
	}
	r.f.WriteAt(r.payloadN(50), res2.Offset())
	r.f.Inject(device.Fault{Op: device.OpSync, N: r.f.Count(device.OpSync) + 1})
	// Appends queue behind res1; its Commit sends them all to one group,
	// whose sync fails.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := r.append(context.Background())
			errs <- err
		}()
	}
	r.f.WriteAt(r.payloadN(700), res1.Offset())
	expectFailed(t, "Commit whose sync failed", res1.Commit(guardCtx(t)))
	wg.Wait()
	close(errs)
	for err := range errs {
		expectFailed(t, "append in the failed group", err)
	}
	// A reservation placed before the failure cannot be committed after it.
	expectFailed(t, "Commit after the failure", res2.Commit(guardCtx(t)))
	r.refuses(t)
	// The sync is not retried: a sync succeeds on the device again, yet the
	// log stays failed.
	if err := r.f.Sync(); err != nil {
		t.Fatal(err)
	}
	_, err = r.append(guardCtx(t))
	expectFailed(t, "Append after a later good sync", err)
	r.reopen(t)
}

func TestFailedJournalWriteFailsLog(t *testing.T) {
	// The write after the data write is the journal's batch, when every
	// group writes its tail record.
	defer exactTail(t)()
	r := newFaultRig(t)
	r.f.Inject(device.Fault{Op: device.OpWrite, N: r.f.Count(device.OpWrite) + 2})
	_, err := r.append(guardCtx(t))
	expectFailed(t, "append whose journal write failed", err)
	r.refuses(t)
	r.reopen(t)
}

func TestCollectAfterFailure(t *testing.T) {
	// A failed sync fails the journal: the collector cannot persist a head
	// and says so, and the log still refuses writes.
	r := newFaultRig(t)
	r.f.Inject(device.Fault{Op: device.OpSync, N: r.f.Count(device.OpSync) + 1})
	_, err := r.append(guardCtx(t))
	expectFailed(t, "append", err)
	r.mu.Lock()
	for pos := range r.acked {
		r.checker.mark(pos)
	}
	r.mu.Unlock()
	if err := r.l.Collect(guardCtx(t)); err == nil {
		t.Fatal("Collect on a failed journal returned nil")
	}
	r.refuses(t)
	r.reopen(t)
}

func TestOpenWithFaults(t *testing.T) {
	// Every read, write or sync of Open failing in turn: Open returns an
	// error (never panics, never leaks the journal's goroutine), and the
	// device then opens cleanly with every record.
	r := newFaultRig(t)
	if err := r.l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, op := range []device.Op{device.OpRead, device.OpWrite, device.OpSync} {
		for n := int64(1); ; n++ {
			f := device.NewFaulty(r.inner, device.Fault{Op: op, N: n})
			l, err := pipeline.Open(f, r.cfg)
			if err == nil {
				l.Close()
				if f.Count(op) >= n {
					t.Fatalf("Open succeeded although %s %d failed", op, n)
				}
				break // Open does fewer than n of these
			}
			if !device.IsInjected(err) {
				t.Fatalf("Open with %s %d failing: %v, want the injected error", op, n, err)
			}
			if n > 1000 {
				t.Fatal("Open never finished")
			}
		}
	}
	r.l = mustOpen(t, r.inner, r.cfg)
	r.reopen(t)
}

// TestFailureEndsEveryWaiter fails the log while appends wait behind an
// uncommitted reservation and more are parked on the full log: every one
// of them ends with ErrFailed, none waits for space or for the reservation.
func TestFailureEndsEveryWaiter(t *testing.T) {
	inner := device.NewMem(128 << 10)
	c := newSetChecker() // nothing is garbage
	cfg := pipeline.Config{Checker: c}
	if err := pipeline.Format(inner, cfg); err != nil {
		t.Fatal(err)
	}
	f := device.NewFaulty(inner)
	l := mustOpen(t, f, cfg)
	first := idPayload(1, 100)
	firstPos, err := l.Append(guardCtx(t), first)
	if err != nil {
		t.Fatal(err)
	}
	res, err := l.Reserve(guardCtx(t), 100)
	if err != nil {
		t.Fatal(err)
	}
	before := l.Stats().Parked
	const n = 40 // 40 × 3 KiB do not fit in 80 KiB
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := l.Append(context.Background(), idPayload(uint64(100+i), 3000))
			errs <- err
		}()
	}
	waitParked(t, l, c, before, make(chan struct{}))
	f.Inject(device.Fault{Op: device.OpWrite, N: f.Count(device.OpWrite) + 1, Sticky: true})
	expectFailed(t, "Commit", res.Commit(guardCtx(t)))
	for range n {
		expectFailed(t, "append waiting behind the reservation or for space", <-errs)
	}
	_, err = l.Reserve(guardCtx(t), 10)
	expectFailed(t, "Reserve after the failure", err)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2 := mustOpen(t, inner, cfg)
	ps, bs := scanAll(t, l2)
	if len(ps) != 1 || ps[0] != firstPos || !bytes.Equal(bs[0], first) {
		t.Fatalf("after reopen: %v, want only the first record", ps)
	}
}

// TestCollectorFailureEndsParkedRequests fails the journal under the
// collector while appends are parked on a full log: the collector can never
// free space now, so they end with ErrFailed at once instead of waiting for
// their context.
func TestCollectorFailureEndsParkedRequests(t *testing.T) {
	inner := device.NewMem(128 << 10)
	c := newSetChecker()
	cfg := pipeline.Config{Checker: c, CollectInterval: time.Hour}
	if err := pipeline.Format(inner, cfg); err != nil {
		t.Fatal(err)
	}
	f := device.NewFaulty(inner)
	l := mustOpen(t, f, cfg)
	var ps []pipeline.Position
	for i := 0; ; i++ {
		if !fitsNow(l.Stats(), false, 3000) {
			break
		}
		pos, err := l.Append(guardCtx(t), idPayload(uint64(i), 3000))
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, pos)
	}
	before := l.Stats().Parked
	done := goAppend(guardCtx(t), l, idPayload(1000, 3000))
	waitParked(t, l, c, before, done)
	// The collector's next head commit fails: its journal write.
	f.Inject(device.Fault{Op: device.OpWrite, N: f.Count(device.OpWrite) + 1, Sticky: true})
	c.mark(ps[:5]...)
	if err := l.Collect(guardCtx(t)); err == nil {
		t.Fatal("Collect with a failing journal returned nil")
	}
	select {
	case r := <-done:
		expectFailed(t, "append parked when the collector failed", r.err)
	case <-time.After(hangGuard / 2):
		t.Fatal("the parked append still waits for space the failed journal can never free")
	}
	_, err := l.Append(guardCtx(t), []byte("later"))
	expectFailed(t, "Append after the collector failed", err)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2 := mustOpen(t, inner, cfg)
	if got, _ := scanAll(t, l2); len(got) < len(ps)-5 {
		t.Fatalf("after reopen %d records, want at least %d", len(got), len(ps)-5)
	}
}

// TestCommitAfterFailureWritesNothing: once the log has failed (here a
// lost sync: the collector's head commit's, or a sync barrier's just
// before), a reservation placed before commits nothing: Commit is
// ErrFailed without writing its header, so the record cannot come back at
// the next Open.
func TestCommitAfterFailureWritesNothing(t *testing.T) {
	r := newFaultRig(t)
	res, err := r.l.Reserve(guardCtx(t), 300)
	if err != nil {
		t.Fatal(err)
	}
	p := r.payloadN(300)
	if _, err := r.f.WriteAt(p, res.Offset()); err != nil {
		t.Fatal(err)
	}
	// An append placed behind the reservation waits for it.
	before := r.l.Stats().Tail
	behind := goAppend(context.Background(), r.l, r.payloadN(50))
	for r.l.Stats().Tail == before {
		runtime.Gosched() // until the allocator has placed it
	}
	// Everything acknowledged is garbage now: the reopened log may have
	// collected it. The next sync fails: most often the collector's head
	// commit, but it may be a sync barrier of the committer's, after which
	// the head commit can still reach the device.
	r.release()
	r.f.Inject(device.Fault{Op: device.OpSync, N: r.f.Count(device.OpSync) + 1})
	if err := r.l.Collect(guardCtx(t)); err == nil {
		t.Fatal("Collect whose head commit failed its sync succeeded")
	}
	_, err = r.append(guardCtx(t))
	expectFailed(t, "Append after the failed head commit", err)
	// The reservation's header block, the one write a Commit makes. (The
	// append behind it may still be written meanwhile: counting every
	// device write would count that one too.)
	hdr := make([]byte, r.inner.BlockSize())
	readHeader := func() []byte {
		b := make([]byte, len(hdr))
		if _, err := r.inner.ReadAt(b, res.Offset()-int64(len(b))); err != nil {
			t.Fatal(err)
		}
		return b
	}
	copy(hdr, readHeader())
	expectFailed(t, "Commit after the failure", res.Commit(guardCtx(t)))
	if !bytes.Equal(readHeader(), hdr) {
		t.Fatal("Commit after the failure wrote the reservation's header")
	}
	// The Commit closed the hole all the same: the append behind it ends.
	select {
	case res := <-behind:
		expectFailed(t, "append behind the reservation", res.err)
	case <-time.After(hangGuard):
		t.Fatal("the append behind the reservation still waits after its Commit")
	}
	r.checker.setAll(false)
	l := r.reopen(t) // nothing never appended
	defer l.Close()
	// (The reopened log reuses the position, which nothing acknowledged.)
	if got, err := l.Read(res.Position()); err == nil && bytes.Equal(got, p) {
		t.Fatalf("the record whose Commit failed is in the reopened log at %d", res.Position())
	}
}

// TestWriteFailureBehindOpenReservation: a write that fails past an open
// reservation fails the log at once. Its caller gets ErrFailed without
// waiting for the reservation before it, and new writes are refused, though
// the failed write is not yet next in line to be synced.
func TestWriteFailureBehindOpenReservation(t *testing.T) {
	r := newFaultRig(t)
	held, err := r.l.Reserve(guardCtx(t), 100)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.l.Reserve(guardCtx(t), 100)
	if err != nil {
		t.Fatal(err)
	}
	// The next write is res's header block (its payload goes through f
	// too, so it is written first).
	if _, err := r.f.WriteAt(r.payloadN(100), res.Offset()); err != nil {
		t.Fatal(err)
	}
	r.f.Inject(device.Fault{Op: device.OpWrite, N: r.f.Count(device.OpWrite) + 1})
	err = res.Commit(guardCtx(t))
	expectFailed(t, "Commit whose header write failed, behind an open reservation", err)
	if !device.IsInjected(err) {
		t.Fatalf("Commit: %v does not carry the device error", err)
	}
	_, err = r.append(guardCtx(t))
	expectFailed(t, "Append after the failed write", err)
	if x, err := r.l.Reserve(guardCtx(t), 100); err == nil || x != nil {
		t.Fatalf("Reserve after the failed write: %v, %v; want ErrFailed", x, err)
	}
	expectFailed(t, "Commit of the reservation held open", held.Commit(guardCtx(t)))
	r.reopen(t).Close()
}
