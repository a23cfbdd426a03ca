package fuzz

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/internal/layout"
	"github.com/ringlog/ringlog/pipeline"
	"github.com/ringlog/ringlog/stages"
)

// probeBase is where the ids of records the checker appends itself start.
const probeBase = 1 << 40

// scanEntry is one record Scan yielded.
type scanEntry struct{ pos, id uint64 }

// logView is what a recovered log holds.
type logView struct {
	head, durable uint64
	scan          []scanEntry
}

// sameRecords reports whether two recoveries of one crash agree: the same
// durable tail and the same records at the same positions. (The heads may
// differ by padding: a collector pass without a checker skips leading
// padding.)
func (a logView) sameRecords(b logView) bool {
	return a.durable == b.durable && slices.Equal(a.scan, b.scan)
}

func (a logView) String() string {
	s := fmt.Sprintf("head %d, durable %d, %d records", a.head, a.durable, len(a.scan))
	if len(a.scan) > 0 {
		s += fmt.Sprintf(" (first id %d at %d, last id %d at %d)", a.scan[0].id, a.scan[0].pos, a.scan[len(a.scan)-1].id, a.scan[len(a.scan)-1].pos)
	}
	return s
}

// verifier checks recovered logs against a history's model.
type verifier struct {
	h      *History
	m      *Model
	src    Source
	cfg    pipeline.Config
	geo    layout.Geometry
	probes uint64
	tally
}

func newVerifier(h *History, src Source) *verifier {
	return &verifier{h: h, src: src, cfg: h.config(nil), geo: h.geometry()}
}

// check verifies an open, idle log: every invariant that must hold after
// a recovery. extra holds records (id -> position) the checker appended
// itself.
func (v *verifier) check(l *pipeline.Log, dev device.Device, extra map[uint64]uint64) (logView, []string) {
	var probs []string
	bad := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }
	st := l.Stats()
	view := logView{head: uint64(st.Head), durable: uint64(st.Durable)}
	switch {
	case st.Head > st.Durable:
		bad("head %d is past the durable tail %d", st.Head, st.Durable)
	case st.Durable != st.Tail:
		bad("idle log has durable tail %d but tail %d", st.Durable, st.Tail)
	case int64(st.Durable-st.Head) > st.Capacity:
		bad("head %d and durable tail %d are more than the capacity %d apart", st.Head, st.Durable, st.Capacity)
	}
	m := v.m
	seen := make(map[uint64]uint64)
	var last uint64
	first := true
	err := l.Scan(func(pos pipeline.Position, p []byte) error {
		at := uint64(pos)
		id, ok := payloadID(p)
		if !ok {
			bad("Scan yielded %d bytes at position %d that no one appended", len(p), at)
			return nil
		}
		if prev, dup := seen[id]; dup {
			bad("Scan yielded record %d twice, at %d and %d", id, prev, at)
		}
		if !first && at <= last {
			bad("Scan went from position %d back to %d", last, at)
		}
		if at < view.head || at >= view.durable {
			bad("Scan yielded position %d outside [head %d, durable %d)", at, view.head, view.durable)
		}
		first, last = false, at
		seen[id] = at
		if want, ok := extra[id]; ok {
			if want != at {
				bad("checker's record %d is at %d, Append said %d", id, at, want)
			}
		} else if r := m.get(id); r == nil || !r.mayAppear() {
			state := "never drawn"
			if r != nil {
				state = r.state.String()
			}
			bad("Scan yielded record %d at %d, which was never appended (%s)", id, at, state)
		} else if r.hasPos && r.pos != at {
			bad("Scan yielded record %d at %d; it was placed at %d", id, at, r.pos)
		}
		view.scan = append(view.scan, scanEntry{at, id})
		return nil
	})
	if err != nil {
		bad("Scan: %v", err)
	}
	v.checkOrder(view.scan, bad)

	for _, r := range m.recs {
		if !r.mustSurvive() {
			continue
		}
		pos, ok := seen[r.id]
		if !ok {
			why := "missing"
			if r.hasPos && r.pos < view.head {
				why = "below the head"
			}
			bad("%s record %d (%d bytes, reserve %v) at position %d is %s: %s", r.ackWord(), r.id, r.size, r.reserve, r.pos, why, view)
			continue
		}
		v.checkRead(l, pos, r.id, r.size, bad)
	}
	for id, pos := range extra {
		if got, ok := seen[id]; !ok || got != pos {
			bad("checker's acknowledged record %d at %d is missing: %s", id, pos, view)
		}
	}
	// Below the head: ErrCollected; at the durable tail: nothing.
	checked := 0
	for _, r := range m.recs {
		if checked == 4 {
			break
		}
		if r.released && r.hasPos && r.pos < view.head {
			checked++
			if _, err := l.Read(pipeline.Position(r.pos)); !errors.Is(err, pipeline.ErrCollected) {
				bad("Read(%d) below the head %d returned %v, want ErrCollected", r.pos, view.head, err)
			}
		}
	}
	if _, err := l.Read(pipeline.Position(view.durable)); !errors.Is(err, pipeline.ErrNotFound) {
		bad("Read at the durable tail %d returned %v, want ErrNotFound", view.durable, err)
	}
	for _, p := range audit(dev, v.geo, view.head, view.durable, st.Epoch) {
		bad("%s", p)
	}
	return view, probs
}

func (r *rec) ackWord() string {
	if r.state == stAcked {
		return "acknowledged"
	}
	return "recovered"
}

// checkRead reads pos and compares it with record id.
func (v *verifier) checkRead(l *pipeline.Log, pos, id uint64, size int, bad func(string, ...any)) {
	got, err := l.Read(pipeline.Position(pos))
	if err != nil {
		bad("Read(%d) of record %d: %v", pos, id, err)
		return
	}
	if gid, ok := payloadID(got); !ok || gid != id || len(got) != size {
		bad("Read(%d) returned %d bytes that are not record %d (%d bytes)", pos, len(got), id, size)
	}
}

// checkOrder verifies that positions respect real time: a record whose
// operation returned before another's started lies below it.
func (v *verifier) checkOrder(scan []scanEntry, bad func(string, ...any)) {
	minRet, minAt := uint64(math.MaxUint64), -1
	for i := len(scan) - 1; i >= 0; i-- {
		r := v.m.get(scan[i].id)
		if r == nil {
			continue
		}
		if r.call > 0 && minRet < r.call {
			o := scan[minAt]
			bad("record %d at %d was placed below record %d at %d, though the call for %d returned before the call for %d began", o.id, o.pos, r.id, scan[i].pos, o.id, r.id)
		}
		if r.ret > 0 && r.ret < minRet {
			minRet, minAt = r.ret, i
		}
	}
}

// audit walks the frames from head to durable straight from the device,
// without the library's reader: each must decode, carry its position and an
// older epoch, stay inside its lap and the durable tail, and pass its
// checksum — padding markers included.
func audit(dev device.Device, geo layout.Geometry, head, durable uint64, epoch uint32) []string {
	var probs []string
	hb := make([]byte, layout.HeaderLen)
	var body []byte
	size := uint64(geo.DataSize)
	for pos := head; pos < durable; {
		phys := geo.Phys(pos)
		if _, err := dev.ReadAt(hb, phys); err != nil {
			return append(probs, fmt.Sprintf("audit: read at %d: %v", phys, err))
		}
		h, ok := layout.DecodeHeader(hb)
		switch {
		case !ok:
			return append(probs, fmt.Sprintf("audit: no frame header at position %d (head %d, durable %d)", pos, head, durable))
		case h.Pos != pos:
			return append(probs, fmt.Sprintf("audit: frame at position %d says %d", pos, h.Pos))
		case pos%size+h.Stride() > size || pos+h.Stride() > durable:
			return append(probs, fmt.Sprintf("audit: frame at %d of %d bytes crosses the lap's end or the durable tail %d", pos, h.Stride(), durable))
		case h.Epoch >= epoch:
			probs = append(probs, fmt.Sprintf("audit: frame at %d has epoch %d, not older than the log's %d", pos, h.Epoch, epoch))
		}
		var payload []byte
		if h.Kind == layout.KindRecord {
			if cap(body) < int(h.Length) {
				body = make([]byte, h.Length)
			}
			payload = body[:h.Length]
			if _, err := dev.ReadAt(payload, phys+int64(h.DataOff)); err != nil {
				return append(probs, fmt.Sprintf("audit: read at %d: %v", phys, err))
			}
		}
		if layout.Checksum(hb, payload) != h.Sum {
			what := "record"
			if h.Kind == layout.KindPadding {
				what = "padding marker"
			}
			return append(probs, fmt.Sprintf("audit: %s at %d (%d bytes) fails its checksum", what, pos, h.Stride()))
		}
		pos += h.Stride()
	}
	return probs
}

// room reports whether an Append of n bytes fits without waiting for the
// collector, by the allocator's own rule.
func room(st pipeline.Stats, bs int, n int) bool {
	size := uint64(st.Capacity)
	stride := stages.Stride(stages.KindAppend, n, uint64(bs))
	pos := uint64(st.Tail)
	if pos%size+stride > size {
		pos += size - pos%size
	}
	return layout.RoundUp(pos+stride, uint64(bs))-uint64(st.Head) <= size
}

// image recovers a crash image (taken over) and checks it: the invariants,
// then, every other time, an Append, a Close and another crash and recovery
// that must give the same log; and sometimes a power cut inside the
// recovery itself, whose image is checked the same way. expect is the log
// an earlier recovery of the same crash gave, if any.
func (v *verifier) image(img []byte, label string, expect *logView, depth int) {
	v.states++
	var spare []byte
	if depth == 0 && chance(v.src, 1, 4) {
		spare = bytes.Clone(img)
	}
	// A log written through the page cache (512-byte blocks) is now and
	// then recovered as if opened with O_DIRECT (4096): the same log must
	// open either way, and the second recovery below goes back to 512.
	bs := v.h.BlockSize
	if bs == 512 && chance(v.src, 1, 4) {
		bs = 4096
		label += " (recovered with 4096-byte blocks)"
		v.cov.LargerBlocks++
	}
	crash := device.NewCrashFrom(img)
	dev := wrapDev(crash, bs)
	l, err := pipeline.Open(dev, v.cfg)
	if err != nil {
		v.violation(label, "Open after the crash: %v", err)
		return
	}
	recOps := crash.Ops()
	view, probs := v.check(l, dev, nil)
	for _, p := range probs {
		v.violation(label, "%s", p)
	}
	if expect != nil && !view.sameRecords(*expect) {
		v.violation(label, "recovering the same crash again gave %s; the first recovery gave %s", view, *expect)
	}
	again := chance(v.src, 1, 2)
	after := view
	extra := map[uint64]uint64{}
	if n := between(v.src, minPayload, 600); again && chance(v.src, 2, 3) && room(l.Stats(), bs, n) {
		v.probes++
		id := probeBase + v.probes
		pos, err := l.Append(context.Background(), makePayload(id, n)) // room: it cannot park
		if err != nil {
			v.violation(label, "Append after recovery: %v", err)
		} else {
			extra[id] = uint64(pos)
			v.checkRead(l, uint64(pos), id, n, func(f string, a ...any) { v.violation(label, "after recovery: "+f, a...) })
			after.scan = append(slices.Clone(after.scan), scanEntry{uint64(pos), id})
			after.durable = uint64(l.Stats().Durable)
		}
	}
	if err := l.Close(); err != nil {
		v.violation(label, "Close after recovery: %v", err)
	}
	if v.h.Pad > 0 && !outsideIntact(crash, v.h.Params) {
		v.violation(label, "bytes outside the log's region changed")
	}
	if again {
		v.again(crash, label, after, extra)
	}
	if spare != nil {
		v.cov.InRecovery++
		k := v.src.Intn(int(recOps) + 1)
		c3 := device.NewCrashFrom(spare)
		c3.CutAfter(int64(k))
		if l3, err := pipeline.Open(wrapDev(c3, bs), v.cfg); err == nil {
			l3.Close()
		} else if !c3.PowerCut() {
			v.violation(label, "Open with a power cut after %d ops: %v (and the power was not cut)", k, err)
		}
		img3 := c3.ImageFor(device.RandomOutcomes(c3.Choices(), v.src.Intn))
		v.image(img3, fmt.Sprintf("%s, then a power cut %d ops into recovery", label, k), &view, depth+1)
	}
}

// again crashes the device that a recovery (and maybe an Append and a
// Close) left behind, recovers it and checks that it holds the log want,
// extra (the records the checker appended) included.
func (v *verifier) again(crash *device.Crash, label string, want logView, extra map[uint64]uint64) {
	ch := device.RandomOutcomes(crash.Choices(), v.src.Intn)
	crash2 := device.NewCrashFrom(crash.ImageFor(ch))
	dev2 := wrapDev(crash2, v.h.BlockSize)
	l2, err := pipeline.Open(dev2, v.cfg)
	if err != nil {
		v.violation(label, "second recovery (image %v): Open: %v", ch, err)
		return
	}
	got, probs := v.check(l2, dev2, extra)
	for _, p := range probs {
		v.violation(label, "second recovery (image %v): %s", ch, p)
	}
	if !got.sameRecords(want) {
		v.violation(label, "second recovery (image %v) gave %s; the first gave %s", ch, got, want)
	}
	if err := l2.Close(); err != nil {
		v.violation(label, "second recovery: Close: %v", err)
	}
}

// padByte fills the device outside the log's region.
const padByte = 0xa5

// outsideIntact reports whether the bytes outside the region still hold
// padByte.
func outsideIntact(dev device.Device, p Params) bool {
	b := make([]byte, p.Pad)
	for _, off := range []int64{0, p.DevSize - p.Pad} {
		if _, err := dev.ReadAt(b, off); err != nil {
			return false
		}
		for _, c := range b {
			if c != padByte {
				return false
			}
		}
	}
	return true
}
