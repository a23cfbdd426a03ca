package fuzz

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/cespare/xxhash/v2"
	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/internal/layout"
	"github.com/ringlog/ringlog/pipeline"
	"github.com/ringlog/ringlog/wal"
)

// corruptBase is a cleanly closed log whose history wrapped the data area,
// left padding and reservations in it, and collected: the device every
// corruption starts from.
type corruptBase struct {
	h   *History
	m   *Model
	img []byte
	geo layout.Geometry
	// live is [head, tail) of the base log.
	head, tail uint64
}

var (
	baseOnce sync.Once
	baseLog  *corruptBase
	baseErr  error
)

// corruptionBase builds (once) the log FuzzOpenCorrupt corrupts.
func corruptionBase() (*corruptBase, error) {
	baseOnce.Do(func() {
		h := &History{Params: Params{DevSize: 192 << 10, JournalSize: wal.MinSize, BlockSize: 512}, GarbagePct: 30}
		h.Budget = h.DataSize() / 3
		src := newRNG(0x5eed, 0)
		for i := range 30 {
			st := Step{Kind: StepLanes, Lanes: [][]Action{{{Kind: ActAppend, Sizes: []int{recordSize(src, h)}}, {Kind: ActAppend, Sizes: []int{between(src, minPayload, 3000)}}}}}
			if i%5 == 2 {
				st.Lanes[0] = append(st.Lanes[0], Action{Kind: ActReserve, Sizes: []int{300, 40}, Perm: []int{1, 0}, Discard: []bool{false, i%10 == 2}})
			}
			if i%7 == 6 {
				st.Lanes[0] = append(st.Lanes[0], Action{Kind: ActCollect})
			}
			h.Steps = append(h.Steps, st)
		}
		img, err := formatImage(h.Params)
		if err != nil {
			baseErr = err
			return
		}
		m := newModel(h)
		v := newVerifier(h, src)
		v.m = m
		res := runHistory(h, m, img, -1, 0, v)
		if len(m.problems) > 0 {
			baseErr = fmt.Errorf("building the base log: %s", m.problems[0])
			return
		}
		full := res.crash.ImageFor(allLanded(res.crash.Choices()))
		b := &corruptBase{h: h, m: m, img: full, geo: v.geo}
		// Learn head and tail the way Open does, from an opened copy.
		c := device.NewCrashFrom(slices.Clone(full))
		l, err := pipeline.Open(c, h.config(nil))
		if err != nil {
			baseErr = fmt.Errorf("opening the base log: %w", err)
			return
		}
		st := l.Stats()
		b.head, b.tail = uint64(st.Head), uint64(st.Tail)
		l.Close()
		baseLog = b
	})
	return baseLog, baseErr
}

func allLanded(choices []int) []int {
	out := make([]int, len(choices))
	for i := range out {
		out[i] = 1
	}
	return out
}

// structure names a part of the region a mutation hits.
type structure int

const (
	sSuper0 structure = iota // the two-copy structures come in pairs, copy 0 even
	sSuper1
	sJHeader0
	sJHeader1
	sTail0
	sTail1
	sHead0
	sHead1
	sJArea
	sDataLive // between head and the block after tail
	sDataDead // the rest of the data area
	nStructures
)

// span returns the device range of s.
func (b *corruptBase) span(s structure) (int64, int64) {
	g := b.geo
	switch s {
	case sSuper0, sSuper1:
		return int64(s) * layout.Align, layout.Align
	case sJHeader0, sJHeader1:
		return g.JournalOff + int64(s-sJHeader0)*4096, 4096
	case sJArea:
		return g.JournalOff + 2*4096, g.JournalSize - 2*4096
	case sTail0, sTail1:
		return g.TailSlot(int(s - sTail0)), layout.Align
	case sHead0, sHead1:
		return g.HeadSlot(int(s - sHead0)), layout.Align
	default:
		return g.DataOff, g.DataSize
	}
}

// live reports whether device offset off holds live data (or the block
// the tail is in).
func (b *corruptBase) live(off int64) bool {
	g := b.geo
	if off < g.DataOff || off >= g.DataOff+g.DataSize {
		return false
	}
	size := uint64(g.DataSize)
	end := layout.RoundUp(b.tail, uint64(b.h.BlockSize))
	for p := b.head / size * size; p < end; p += size {
		lo, hi := max(b.head, p), min(end, p+size)
		if lo < hi && uint64(off-g.DataOff) >= lo-p && uint64(off-g.DataOff) < hi-p {
			return true
		}
	}
	return false
}

// Mutation is one corruption of the base image.
type Mutation struct {
	Where  structure
	Off    int64 // within the structure
	Kind   uint8 // 0 flip a bit, 1 random bytes, 2 zeros, 3 mutate and reseal
	Bit    uint8
	Bytes  []byte
	Length int
}

// decodeMutations draws corruptions from s.
func decodeMutations(s Source, b *corruptBase) []Mutation {
	var ms []Mutation
	for range between(s, 1, 6) {
		mu := Mutation{Where: structure(s.Intn(int(nStructures) - 1)), Kind: uint8(s.Intn(4))}
		if mu.Where == sDataLive && chance(s, 1, 2) {
			mu.Where = sDataDead
		}
		_, n := b.span(mu.Where)
		if mu.Where <= sHead1 {
			n = min(n, 96) // the encoded structure, not its block's zero tail
		}
		mu.Off = int64(s.Intn(int(n)))
		if mu.Where == sDataLive || mu.Where == sDataDead {
			// Aim at headers (multiples of 32) half the time.
			if chance(s, 1, 2) {
				mu.Off = mu.Off &^ 31
				mu.Off += int64(s.Intn(32))
			}
		}
		mu.Bit = uint8(s.Intn(8))
		mu.Length = between(s, 1, 16)
		mu.Bytes = make([]byte, mu.Length)
		for i := range mu.Bytes {
			mu.Bytes[i] = byte(s.Intn(256))
		}
		ms = append(ms, mu)
	}
	return ms
}

// apply corrupts img and reports whether every mutation was harmless by
// design: at most one copy of each two-copy structure touched (and not
// resealed), the data area touched only outside the live log, the journal
// area untouched.
func (b *corruptBase) apply(img []byte, ms []Mutation) (benign bool) {
	touched := map[structure]structure{} // first copy of each pair touched
	benign = true
	for _, mu := range ms {
		start, n := b.span(mu.Where)
		off := start + min(mu.Off, n-1)
		switch mu.Where {
		case sDataLive, sDataDead:
			if mu.Where == sDataDead {
				// Move the offset out of the live log, if there is room.
				for tries := int64(0); tries < n && b.live(off); tries += 32 {
					off = start + (off-start+32)%n
				}
			}
			if b.live(off) || b.live(min(off+int64(mu.Length), start+n)-1) || mu.Kind == 3 {
				benign = false
			}
		case sJArea:
			benign = false
		default:
			pair := mu.Where &^ 1 // sSuper0, sJHeader0, sTail0, sHead0 are even
			if first, ok := touched[pair]; (ok && first != mu.Where) || mu.Kind == 3 {
				benign = false
			} else if !ok {
				touched[pair] = mu.Where
			}
		}
		end := min(off+int64(mu.Length), start+n)
		switch mu.Kind {
		case 0:
			img[off] ^= 1 << mu.Bit
		case 1:
			copy(img[off:end], mu.Bytes)
		case 2, 3:
			if mu.Kind == 2 {
				clear(img[off:end])
			} else {
				copy(img[off:end], mu.Bytes)
			}
			if mu.Kind == 3 {
				reseal(img, mu.Where, start)
			}
		}
	}
	return benign
}

// reseal recomputes the checksum of the structure at start, so that a
// mutated copy is valid but wrong: a foreign or buggy writer's.
func reseal(img []byte, s structure, start int64) {
	le := binary.LittleEndian
	b := img[start:]
	switch s {
	case sSuper0, sSuper1:
		le.PutUint64(b[88:], xxhash.Sum64(b[:88]))
	case sJHeader0, sJHeader1:
		le.PutUint64(b[40:], xxhash.Sum64(b[:40]))
	case sTail0, sTail1, sHead0, sHead1:
		le.PutUint64(b[40:], xxhash.Sum64(b[:40]))
	}
}

// typedErr reports whether err is one of the log's typed errors.
func typedErr(err error) bool {
	for _, t := range []error{pipeline.ErrBadFormat, pipeline.ErrCorrupt, pipeline.ErrBadConfig, pipeline.ErrNotFound,
		pipeline.ErrCollected, pipeline.ErrFailed, pipeline.ErrTooLarge, pipeline.ErrNoSpace, pipeline.ErrClosed} {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// OpenCorrupt corrupts the base log as data says and checks what Open
// makes of it: a typed error, or a log whose Scan and Read return only
// records that were appended (or typed errors), that takes an Append, and
// that opens again the same. When the corruption is harmless by design
// (one copy of a two-copy structure, dead bytes of the data area), the log
// must also hold every acknowledged record. It returns the violations.
func OpenCorrupt(data []byte) []string {
	b, err := corruptionBase()
	if err != nil {
		return []string{err.Error()}
	}
	src := &byteSource{b: data}
	ms := decodeMutations(src, b)
	img := slices.Clone(b.img)
	benign := b.apply(img, ms)
	var probs []string
	bad := func(format string, args ...any) {
		probs = append(probs, fmt.Sprintf("mutations %+v (benign %v): %s", ms, benign, fmt.Sprintf(format, args...)))
	}
	crash := device.NewCrashFrom(img)
	cfg := b.h.config(nil)
	l, err := pipeline.Open(crash, cfg)
	if err != nil {
		if benign || !typedErr(err) {
			bad("Open: %v", err)
		}
		return probs
	}
	v := newVerifier(b.h, src)
	v.m = b.m
	if benign {
		_, ps := v.check(l, crash, nil)
		for _, p := range ps {
			bad("%s", p)
		}
	}
	first := corruptView(l, b.m, nil, bad)
	probe := map[uint64]uint64{}
	if n := between(src, minPayload, 300); room(l.Stats(), b.h.BlockSize, n) {
		pos, err := l.Append(context.Background(), makePayload(probeBase+1, n))
		switch {
		case err == nil:
			probe[probeBase+1] = uint64(pos)
			got, err := l.Read(pos)
			if id, ok := payloadID(got); err != nil || !ok || id != probeBase+1 {
				bad("Read(%d) of the record just appended: %v", pos, err)
			}
		case !typedErr(err):
			bad("Append: untyped error %v", err)
		}
	}
	if err := l.Close(); err != nil && !typedErr(err) {
		bad("Close: %v", err)
	}
	// What Open made of the corruption stands: opening again agrees.
	crash2 := device.NewCrashFrom(crash.ImageFor(allLanded(crash.Choices())))
	l2, err := pipeline.Open(crash2, cfg)
	if err != nil {
		bad("second Open: %v", err)
		return probs
	}
	second := corruptView(l2, b.m, probe, bad)
	for id, pos := range probe {
		got, err := l2.Read(pipeline.Position(pos))
		if gid, ok := payloadID(got); err != nil || !ok || gid != id {
			bad("second Open: the record appended after the first (%d at %d) is gone: %v", id, pos, err)
		}
	}
	if n := min(len(first.scan), len(second.scan)); !slices.Equal(first.scan[:n], second.scan[:n]) || (first.err == nil && second.err == nil && len(second.scan) < len(first.scan)) {
		bad("second Open scans %v, the first scanned %v", second, first)
	}
	l2.Close()
	return probs
}

type corruptScan struct {
	scan []scanEntry
	err  error
}

func (c corruptScan) String() string { return fmt.Sprintf("%d records (err %v)", len(c.scan), c.err) }

// corruptView scans and reads a log opened from a corrupt image: every
// record it shows must be one that was appended, at its position, and
// every failure a typed error.
func corruptView(l *pipeline.Log, m *Model, probe map[uint64]uint64, bad func(string, ...any)) corruptScan {
	probeAt := map[uint64]bool{}
	for _, pos := range probe {
		probeAt[pos] = true
	}
	st := l.Stats()
	if st.Head > st.Durable || st.Durable != st.Tail || int64(st.Durable-st.Head) > st.Capacity {
		bad("impossible positions: head %d, durable %d, tail %d, capacity %d", st.Head, st.Durable, st.Tail, st.Capacity)
	}
	var out corruptScan
	var last uint64
	out.err = l.Scan(func(pos pipeline.Position, p []byte) error {
		id, ok := payloadID(p)
		if !ok {
			bad("Scan yielded %d bytes at %d that no one appended", len(p), pos)
		} else if want, ok := probe[id]; ok {
			if want != uint64(pos) {
				bad("Scan yielded the checker's record %d at %d, appended at %d", id, pos, want)
			}
		} else if r := m.get(id); r == nil || !r.mayAppear() || (r.hasPos && r.pos != uint64(pos)) {
			bad("Scan yielded record %d at %d, which was not appended there", id, pos)
		}
		if len(out.scan) > 0 && uint64(pos) <= last {
			bad("Scan went from %d back to %d", last, pos)
		}
		last = uint64(pos)
		out.scan = append(out.scan, scanEntry{uint64(pos), id})
		return nil
	})
	if out.err != nil && !typedErr(out.err) {
		bad("Scan: untyped error %v", out.err)
	}
	for _, r := range m.recs {
		if !r.hasPos || r.state != stAcked || probeAt[r.pos] {
			continue // a corruption that rewound the tail lets the position be reused
		}
		got, err := l.Read(pipeline.Position(r.pos))
		if err != nil {
			if !typedErr(err) {
				bad("Read(%d): untyped error %v", r.pos, err)
			}
			continue
		}
		if id, ok := payloadID(got); !ok || id != r.id {
			bad("Read(%d) returned bytes that are not record %d", r.pos, r.id)
		}
	}
	return out
}
