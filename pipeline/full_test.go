package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/pipeline"
)

// smallLog is a log on a 128 KiB device (80 KiB of data) whose collector
// runs only when asked or under pressure.
func smallLog(t *testing.T, c *setChecker) (*device.Mem, pipeline.Config, *pipeline.Log) {
	t.Helper()
	dev := device.NewMem(128 << 10)
	cfg := pipeline.Config{CollectInterval: time.Hour}
	if c != nil {
		cfg.Checker = c
	}
	return dev, cfg, formatOpen(t, dev, cfg)
}

// appendNoSpace appends p to a full log with a context that times out and
// returns the error. A request that times out before the allocator even
// looked at it would end with the bare context error, so the timeout grows
// until the request had time to park.
func appendNoSpace(t *testing.T, l *pipeline.Log, p []byte) error {
	t.Helper()
	for d := 50 * time.Millisecond; ; d *= 2 {
		before := l.Stats()
		ctx, cancel := context.WithTimeout(context.Background(), d)
		pos, err := l.Append(ctx, p)
		cancel()
		if err == nil {
			t.Fatalf("Append to a full log succeeded at %d (stats before %+v)", pos, before)
		}
		if errors.Is(err, pipeline.ErrNoSpace) || !errors.Is(err, context.DeadlineExceeded) || d > hangGuard {
			if after := l.Stats(); after.Tail != before.Tail {
				t.Fatalf("a failed Append moved the tail from %d to %d", before.Tail, after.Tail)
			}
			return err
		}
	}
}

// fill appends records of n bytes until the log is full, returning their
// positions and payloads and the error of the append that did not fit.
func fill(t *testing.T, l *pipeline.Log, n int, id uint64) ([]pipeline.Position, [][]byte, error) {
	t.Helper()
	var ps []pipeline.Position
	var bs [][]byte
	for {
		s := l.Stats()
		p := idPayload(id, n)
		id++
		if !fitsNow(s, false, n) {
			err := appendNoSpace(t, l, p)
			if s2 := l.Stats(); s2.Head != s.Head || s2.Tail != s.Tail {
				t.Fatalf("stats moved while full: %+v then %+v", s, s2)
			}
			return ps, bs, err
		}
		pos, err := l.Append(guardCtx(t), p)
		if err != nil {
			t.Fatalf("Append of %d bytes with stats %+v: %v", n, s, err)
		}
		ps = append(ps, pos)
		bs = append(bs, p)
	}
}

func TestFullLogNoSpaceThenCollect(t *testing.T) {
	c := newSetChecker() // nothing is garbage
	_, _, l := smallLog(t, c)
	total := 0
	var all []pipeline.Position
	payloads := map[pipeline.Position][]byte{}
	for round := range 4 {
		ps, bs, err := fill(t, l, 1000+round*333, uint64(round)<<32)
		if !errors.Is(err, pipeline.ErrNoSpace) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("round %d: Append to a full log: %v, want ErrNoSpace and DeadlineExceeded", round, err)
		}
		for i, p := range ps {
			payloads[p] = bs[i]
		}
		all = append(all, ps...)
		total += len(ps)
		s := checkStats(t, l)
		if s.Parked == 0 {
			t.Fatal("the failed append never parked")
		}
		// Everything appended is still there.
		gotPs, gotBs := scanAll(t, l)
		for i, p := range gotPs {
			if want, ok := payloads[p]; !ok || !bytes.Equal(want, gotBs[i]) {
				t.Fatalf("scan: record at %d is not the one appended", p)
			}
		}
		if gotPs[len(gotPs)-1] != all[len(all)-1] {
			t.Fatalf("scan ends at %d, last append at %d", gotPs[len(gotPs)-1], all[len(all)-1])
		}
		// Garbage-collect all but the last three: appends succeed again.
		keep := all[len(all)-3:]
		c.mark(all[:len(all)-3]...)
		if err := l.Collect(guardCtx(t)); err != nil {
			t.Fatal(err)
		}
		s = checkStats(t, l)
		if s.Head != keep[0] {
			t.Fatalf("head %d after collect, want %d", s.Head, keep[0])
		}
		for _, p := range all[:len(all)-3] {
			if _, err := l.Read(p); !errors.Is(err, pipeline.ErrCollected) {
				t.Fatalf("Read(%d) of a collected record: %v, want ErrCollected", p, err)
			}
		}
		for _, p := range keep {
			if got, err := l.Read(p); err != nil || !bytes.Equal(got, payloads[p]) {
				t.Fatalf("Read(%d) of a kept record: %v", p, err)
			}
		}
		all = keep
	}
	if s := l.Stats(); uint64(s.Tail) < 3*uint64(s.Capacity) {
		t.Fatalf("tail %d: the log did not wrap several times", s.Tail)
	}
	t.Logf("%d appends over %d laps", total, l.Stats().Tail/pipeline.Position(l.Stats().Capacity))
}

func TestParkedAppendResumesOnCollect(t *testing.T) {
	c := newSetChecker()
	_, _, l := smallLog(t, c)
	ps, _, err := fill(t, l, 3000, 1)
	if !errors.Is(err, pipeline.ErrNoSpace) {
		t.Fatalf("fill: %v", err)
	}
	before := l.Stats()
	p := idPayload(99, 3000)
	done := goAppend(context.Background(), l, p)
	waitParked(t, l, c, before.Parked, done)
	select {
	case r := <-done:
		t.Fatalf("parked append returned %+v before any space was freed", r)
	default:
	}
	// A parked Reserve queues behind it, first come first served.
	resDone := make(chan error, 1)
	var res *pipeline.Reservation
	go func() {
		var err error
		res, err = l.Reserve(context.Background(), 100)
		resDone <- err
	}()
	c.mark(ps[:len(ps)/2]...)
	if err := l.Collect(guardCtx(t)); err != nil {
		t.Fatal(err)
	}
	var r appendResult
	select {
	case r = <-done:
	case <-time.After(hangGuard):
		t.Fatal("parked append did not resume after Collect freed space")
	}
	if r.err != nil || r.pos < before.Tail {
		t.Fatalf("resumed append: pos %d, %v (tail before %d)", r.pos, r.err, before.Tail)
	}
	if got, err := l.Read(r.pos); err != nil || !bytes.Equal(got, p) {
		t.Fatalf("Read of the resumed append: %v", err)
	}
	select {
	case err := <-resDone:
		if err != nil {
			t.Fatalf("parked reserve: %v", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("parked reserve did not resume")
	}
	if res.Position() <= r.pos {
		t.Fatalf("reservation at %d placed before the append at %d that parked first", res.Position(), r.pos)
	}
	if err := res.Discard(guardCtx(t)); err != nil {
		t.Fatal(err)
	}
	checkStats(t, l)
}

func TestCancelledParkedAppendLeavesNoTrace(t *testing.T) {
	c := newSetChecker()
	_, _, l := smallLog(t, c)
	ps, _, err := fill(t, l, 2000, 1)
	if !errors.Is(err, pipeline.ErrNoSpace) {
		t.Fatalf("fill: %v", err)
	}
	before := l.Stats()
	ctx, cancel := context.WithCancel(context.Background())
	done := goAppend(ctx, l, idPayload(1000, 2000))
	waitParked(t, l, c, before.Parked, done)
	cancel()
	r := <-done
	if !errors.Is(r.err, pipeline.ErrNoSpace) || !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled parked append: %v, want ErrNoSpace and Canceled", r.err)
	}
	// The cancelled request must not hold up the next one once space is
	// freed, nor be written.
	c.mark(ps...)
	if err := l.Collect(guardCtx(t)); err != nil {
		t.Fatal(err)
	}
	p := idPayload(2000, 10)
	pos, err := l.Append(guardCtx(t), p)
	if err != nil {
		t.Fatal(err)
	}
	gotPs, gotBs := scanAll(t, l)
	if len(gotPs) != 1 || gotPs[0] != pos || !bytes.Equal(gotBs[0], p) {
		t.Fatalf("scan after collect: %v", gotPs)
	}
}

// TestQueuedBehindParkedGetsNoSpace: requests are placed in arrival order,
// so those queued behind a parked one wait for space as well. Each counts
// in Stats.Parked, and one whose context ends gets ErrNoSpace like the
// parked one, whether or not the allocator has seen it yet.
func TestQueuedBehindParkedGetsNoSpace(t *testing.T) {
	c := newSetChecker()
	_, _, l := smallLog(t, c)
	ps, _, err := fill(t, l, 2000, 1)
	if !errors.Is(err, pipeline.ErrNoSpace) {
		t.Fatalf("fill: %v", err)
	}
	before := l.Stats().Parked // read before the request can park
	first := goAppend(guardCtx(t), l, idPayload(1000, 2000))
	waitParked(t, l, c, before, first)
	before++
	var cancels []context.CancelFunc
	var behind []<-chan appendResult
	for i := range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		cancels = append(cancels, cancel)
		// Tiny records: they would fit, were they not behind the first.
		done := goAppend(ctx, l, idPayload(uint64(1001+i), 10))
		waitParked(t, l, c, before+uint64(i), done)
		behind = append(behind, done)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Not yet seen by the allocator, perhaps: its context ended already.
	if _, err := l.Append(ctx, idPayload(1004, 10)); !errors.Is(err, pipeline.ErrNoSpace) || !errors.Is(err, context.Canceled) {
		t.Errorf("append behind a parked one, context cancelled at once: %v, want ErrNoSpace and Canceled", err)
	}
	for i, done := range behind {
		cancels[i]()
		if r := <-done; !errors.Is(r.err, pipeline.ErrNoSpace) || !errors.Is(r.err, context.Canceled) {
			t.Errorf("append %d queued behind a parked one: %v, want ErrNoSpace and Canceled", i, r.err)
		}
	}
	// Space freed: the first one goes in, and the log is no longer full.
	c.mark(ps...)
	if err := l.Collect(guardCtx(t)); err != nil {
		t.Fatal(err)
	}
	if r := <-first; r.err != nil {
		t.Fatal(r.err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := l.Append(ctx, idPayload(1005, 10)); errors.Is(err, pipeline.ErrNoSpace) {
		t.Errorf("append with room, context cancelled at once: %v, not ErrNoSpace", err)
	}
}

func TestTooLarge(t *testing.T) {
	c := newSetChecker()
	_, _, l := smallLog(t, c)
	max := l.MaxRecord()
	if max <= 0 || int64(max) >= l.Stats().Capacity/2 {
		t.Fatalf("MaxRecord %d for capacity %d", max, l.Stats().Capacity)
	}
	if _, err := l.Append(guardCtx(t), make([]byte, max+1)); !errors.Is(err, pipeline.ErrTooLarge) {
		t.Fatalf("Append(MaxRecord+1): %v, want ErrTooLarge", err)
	}
	if _, err := l.Append(guardCtx(t), make([]byte, 10*max)); !errors.Is(err, pipeline.ErrTooLarge) {
		t.Fatalf("Append(10*MaxRecord): %v, want ErrTooLarge", err)
	}
	if _, err := l.Reserve(guardCtx(t), max+1); !errors.Is(err, pipeline.ErrTooLarge) {
		t.Fatalf("Reserve(MaxRecord+1): %v, want ErrTooLarge", err)
	}
	// The largest record fits in an emptied log wherever the tail is.
	c.setAll(true)
	for i, n := range []int{0, 1000, 7000, 20000, 100, 33000, 5} {
		if _, err := l.Append(guardCtx(t), make([]byte, n)); err != nil {
			t.Fatal(err)
		}
		if err := l.Collect(guardCtx(t)); err != nil {
			t.Fatal(err)
		}
		p := randBytes(max, uint64(i))
		pos, err := l.Append(guardCtx(t), p)
		if err != nil {
			t.Fatalf("Append(MaxRecord) with tail at %d: %v", l.Stats().Tail, err)
		}
		if got, err := l.Read(pos); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("Read of the largest record: %v", err)
		}
		if err := l.Collect(guardCtx(t)); err != nil {
			t.Fatal(err)
		}
		// So does the largest reservation.
		r, err := l.Reserve(guardCtx(t), max-512)
		if err != nil {
			t.Fatalf("Reserve(%d) with tail at %d: %v", max-512, l.Stats().Tail, err)
		}
		if err := r.Discard(guardCtx(t)); err != nil {
			t.Fatal(err)
		}
		if err := l.Collect(guardCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReserveBadSize(t *testing.T) {
	_, _, l := smallLog(t, nil)
	for _, n := range []int{0, -1, -1 << 40} {
		r, err := l.Reserve(guardCtx(t), n)
		if !errors.Is(err, pipeline.ErrBadSize) || r != nil {
			t.Fatalf("Reserve(%d): %v, %v; want ErrBadSize", n, r, err)
		}
	}
}

func TestBadConfig(t *testing.T) {
	dev := device.NewMem(256 << 10)
	for _, cfg := range []pipeline.Config{
		{Offset: -4096},
		{Offset: 100},
		{Offset: 256 << 10},
		{Size: 1000},
		{Size: -4096},
		{Size: 512 << 10},
		{Offset: 128 << 10, Size: 192 << 10},
		{JournalSize: 1000},
		{JournalSize: -4096},
		{JournalSize: 4096},
		{JournalSize: 256 << 10},
		{Size: 40 << 10}, // too small for a journal and data
	} {
		if err := pipeline.Format(dev, cfg); !errors.Is(err, pipeline.ErrBadConfig) {
			t.Errorf("Format(%+v): %v, want ErrBadConfig", cfg, err)
		}
	}
	if err := pipeline.Format(device.NewMem(4096), pipeline.Config{}); !errors.Is(err, pipeline.ErrBadConfig) {
		t.Errorf("Format on a 4 KiB device: %v, want ErrBadConfig", err)
	}
	// A region formatted at 64 KiB, 128 KiB long.
	cfg := pipeline.Config{Offset: 64 << 10, Size: 128 << 10}
	if err := pipeline.Format(dev, cfg); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []pipeline.Config{
		{Offset: 64 << 10, Size: 64 << 10},
		{Offset: -1},
		{Offset: 255 << 10},
		{Offset: 1 << 30},
		{Offset: 64 << 10, JournalSize: 64 << 10}, // it was formatted with the default
	} {
		if l, err := pipeline.Open(dev, bad); !errors.Is(err, pipeline.ErrBadConfig) {
			if l != nil {
				l.Close()
			}
			t.Errorf("Open(%+v): %v, want ErrBadConfig", bad, err)
		}
	}
	// The region's own config opens; so does leaving Size to the superblock.
	for _, good := range []pipeline.Config{cfg, {Offset: 64 << 10}} {
		l, err := pipeline.Open(dev, good)
		if err != nil {
			t.Fatalf("Open(%+v): %v", good, err)
		}
		if _, err := l.Append(guardCtx(t), []byte("x")); err != nil {
			t.Fatal(err)
		}
		l.Close()
	}
	// Bytes outside the region are never touched.
	mem := dev.Bytes()
	for i, b := range mem[:64<<10] {
		if b != 0 {
			t.Fatalf("byte %d before the region was written", i)
		}
	}
	for i, b := range mem[192<<10:] {
		if b != 0 {
			t.Fatalf("byte %d after the region was written", (192<<10)+i)
		}
	}
}

func TestOpenBadFormat(t *testing.T) {
	random := device.NewMem(256 << 10)
	random.WriteAt(randBytes(256<<10, 7), 0)
	for name, dev := range map[string]device.Device{
		"zeroed": device.NewMem(256 << 10),
		"random": random,
	} {
		l, err := pipeline.Open(dev, pipeline.Config{})
		if !errors.Is(err, pipeline.ErrBadFormat) {
			if l != nil {
				l.Close()
			}
			t.Errorf("Open on a %s device: %v, want ErrBadFormat", name, err)
		}
	}

	// Formatted elsewhere: no superblock at this offset.
	dev := device.NewMem(256 << 10)
	if err := pipeline.Format(dev, pipeline.Config{Size: 128 << 10}); err != nil {
		t.Fatal(err)
	}
	if _, err := pipeline.Open(dev, pipeline.Config{Offset: 128 << 10}); !errors.Is(err, pipeline.ErrBadFormat) {
		t.Errorf("Open at an unformatted offset: %v, want ErrBadFormat", err)
	}

	// One damaged superblock copy is survived; two are not.
	dev.WriteAt([]byte{0xff}, 40)
	l, err := pipeline.Open(dev, pipeline.Config{})
	if err != nil {
		t.Fatalf("Open with one damaged superblock copy: %v", err)
	}
	l.Close()
	dev.WriteAt([]byte{0xff}, 4096+40)
	if _, err := pipeline.Open(dev, pipeline.Config{}); !errors.Is(err, pipeline.ErrBadFormat) {
		t.Errorf("Open with both superblock copies damaged: %v, want ErrBadFormat", err)
	}
}

// TestOpenDamagedNeverPanics damages a used log in random places: Open, and
// whatever follows on a log that opens, return errors but never panic.
func TestOpenDamagedNeverPanics(t *testing.T) {
	c := newSetChecker()
	base, cfg, l := smallLog(t, c)
	var ps []pipeline.Position
	for i := range 120 {
		pos, err := l.Append(guardCtx(t), idPayload(uint64(i), 8+i*13%900))
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, pos)
		if i%40 == 39 {
			c.mark(ps[:len(ps)-10]...)
			if err := l.Collect(guardCtx(t)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	img := base.Bytes()
	rng := randBytes(1<<16, 3)
	opened := 0
	for trial := range 300 {
		b := append([]byte(nil), img...)
		// Damage one to eight random spans of 1 to 64 bytes.
		r := rng[trial*8:]
		for k := range 1 + int(r[0])%8 {
			off := (int(r[1+k%7])<<9 | int(r[(2+k)%8])<<1 | trial) % len(b)
			n := 1 + int(r[(3+k)%8])%64
			for i := off; i < off+n && i < len(b); i++ {
				b[i] ^= byte(i*131 + trial)
			}
		}
		dev := device.NewMem(int64(len(b)))
		dev.WriteAt(b, 0)
		func() {
			defer func() {
				if v := recover(); v != nil {
					t.Fatalf("trial %d panicked: %v", trial, v)
				}
			}()
			l, err := pipeline.Open(dev, cfg)
			if err != nil {
				return
			}
			defer l.Close()
			opened++
			l.Scan(func(pipeline.Position, []byte) error { return nil })
			for _, p := range ps {
				l.Read(p)
			}
			l.Append(guardCtx(t), []byte("after damage"))
			l.Collect(guardCtx(t))
		}()
	}
	if opened == 0 {
		t.Fatal("no damaged image opened: the damage never missed the metadata, the test checks nothing")
	}
}

func TestReadAnyPosition(t *testing.T) {
	// Read of a position that is not a record is ErrNotFound (or
	// ErrCollected below the head), never a panic, whatever the position.
	c := newSetChecker()
	_, _, l := smallLog(t, c)
	recs := map[pipeline.Position][]byte{}
	var ps []pipeline.Position
	for i := range 60 {
		p := idPayload(uint64(i), 8+i*37%700)
		pos, err := l.Append(guardCtx(t), p)
		if err != nil {
			t.Fatal(err)
		}
		recs[pos] = p
		ps = append(ps, pos)
	}
	c.mark(ps[:20]...)
	if err := l.Collect(guardCtx(t)); err != nil {
		t.Fatal(err)
	}
	s := l.Stats()
	for p := pipeline.Position(0); p < s.Tail+2048; p++ {
		got, err := func() (b []byte, err error) {
			defer func() {
				if v := recover(); v != nil {
					t.Fatalf("Read(%d) panicked: %v", p, v)
				}
			}()
			return l.Read(p)
		}()
		want, isRec := recs[p]
		switch {
		case p < s.Head:
			if !errors.Is(err, pipeline.ErrCollected) {
				t.Fatalf("Read(%d) below the head %d: %v, want ErrCollected", p, s.Head, err)
			}
		case isRec:
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("Read(%d): %v", p, err)
			}
		default:
			if !errors.Is(err, pipeline.ErrNotFound) {
				t.Fatalf("Read(%d), not a record: %v, want ErrNotFound", p, err)
			}
		}
	}
}

// TestDamagedPaddingDetected damages the length of a padding marker so that
// it would skip a committed record exactly: Scan must report the damage
// instead of silently skipping the record.
func TestDamagedPaddingDetected(t *testing.T) {
	dev := device.NewMem(128 << 10)
	cfg := pipeline.Config{JournalSize: 24 << 10}
	l := formatOpen(t, dev, cfg)
	ctx := guardCtx(t)
	a, err := l.Append(ctx, make([]byte, 10)) // [0, 64)
	if err != nil {
		t.Fatal(err)
	}
	r, err := l.Reserve(ctx, 1000) // padding [64, 512), record [512, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if r.Position() != 512 || a != 0 {
		t.Fatalf("positions %d, %d", a, r.Position())
	}
	dev.WriteAt(idPayload(1, 1000), r.Offset())
	if err := r.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := l.Append(ctx, []byte("after")) // at 2048
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	dataOff := int64(8192 + 24<<10 + 16384)
	if b != 2048 {
		t.Fatalf("record after the reservation at %d", b)
	}
	// Padding length 448 (0x1c0) becomes 1984 (0x7c0): it now ends at b.
	dev.WriteAt([]byte{0x07}, dataOff+64+17)
	l = mustOpen(t, dev, cfg)
	var got []pipeline.Position
	err = l.Scan(func(pos pipeline.Position, _ []byte) error { got = append(got, pos); return nil })
	if !errors.Is(err, pipeline.ErrCorrupt) {
		t.Fatalf("Scan over a damaged padding marker: %v (yielded %v), want ErrCorrupt", err, got)
	}
	if p, err := l.Read(r.Position()); err != nil || !bytes.Equal(p, idPayload(1, 1000)) {
		t.Fatalf("the record after the damaged marker: %v", err)
	}
	if _, err := l.Read(b); err != nil {
		t.Fatal(err)
	}
}

// TestCommitContextEnds: a Commit whose context ends before the record is
// durable returns the context's error, and the record still becomes durable
// once the reservations before it are done.
func TestCommitContextEnds(t *testing.T) {
	dev, _, l := smallLog(t, nil)
	r1, err := l.Reserve(guardCtx(t), 300)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := l.Reserve(guardCtx(t), 200)
	if err != nil {
		t.Fatal(err)
	}
	p1, p2 := idPayload(1, 300), idPayload(2, 200)
	dev.WriteAt(p1, r1.Offset())
	dev.WriteAt(p2, r2.Offset())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r2.Commit(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Commit waiting behind an uncommitted reservation, ctx ended: %v, want Canceled", err)
	}
	if err := r2.Commit(guardCtx(t)); !errors.Is(err, pipeline.ErrReservationDone) {
		t.Fatalf("second Commit: %v, want ErrReservationDone", err)
	}
	if _, err := l.Read(r2.Position()); !errors.Is(err, pipeline.ErrNotFound) {
		t.Fatalf("Read of a record not yet durable: %v, want ErrNotFound", err)
	}
	if err := r1.Commit(guardCtx(t)); err != nil {
		t.Fatal(err)
	}
	// r1's group includes r2: once r1 is durable, so is r2.
	for i, r := range []*pipeline.Reservation{r1, r2} {
		got, err := l.Read(r.Position())
		if err != nil || !bytes.Equal(got, [][]byte{p1, p2}[i]) {
			t.Fatalf("Read of reservation %d: %v", i+1, err)
		}
	}
	if s := checkStats(t, l); s.Durable != s.Tail {
		t.Fatalf("durable %d, tail %d", s.Durable, s.Tail)
	}
}

func TestScanStopsOnCallbackError(t *testing.T) {
	_, _, l := smallLog(t, nil)
	for i := range 10 {
		if _, err := l.Append(guardCtx(t), idPayload(uint64(i), 50)); err != nil {
			t.Fatal(err)
		}
	}
	stop := errors.New("stop")
	n := 0
	err := l.Scan(func(pipeline.Position, []byte) error {
		n++
		if n == 4 {
			return stop
		}
		return nil
	})
	if err != stop || n != 4 {
		t.Fatalf("Scan returned %v after %d calls, want the callback's error after 4", err, n)
	}
}
