package stages

// CommitterState is what a committer holds when it is about to wait.
type CommitterState struct {
	Pending int  // completions not yet submitted
	Flights int  // groups submitted and not yet released
	Marking bool // waiting for a mark
	Groups  uint64
}

// OnCommitterIdle has c report its state, before Run starts, each time it
// is about to wait: a test then knows the committer has handled everything
// sent so far and chose to wait, not merely that it has not acted yet.
func OnCommitterIdle(c *Committer, report func(CommitterState)) {
	c.onIdle = func() {
		report(CommitterState{Pending: len(c.pending), Flights: len(c.flights), Marking: c.marking, Groups: c.Pub.Groups.Load()})
	}
}

// Batches is the channel of f, for tests to read what an allocator sent or
// to send what a collector should take.
func (f *FrameRuns) Batches() chan *FrameBatch { return f.c }

// Half is f's signal that its channel is half full.
func (f *FrameRuns) Half() <-chan struct{} { return f.half }

// Runs decodes b.
func (b *FrameBatch) Runs() []FrameRun {
	var rs []FrameRun
	pos := b.Start
	for off := 0; off < len(b.codes); {
		var r FrameRun
		r.Stride, r.Pad, r.Count, off = b.run(off)
		r.Start = pos
		pos = r.End()
		rs = append(rs, r)
	}
	if pos != b.End {
		panic("frame batch runs end before End")
	}
	return rs
}

// BatchOf encodes runs, each of which starts where the one before ends.
func BatchOf(runs ...FrameRun) *FrameBatch {
	b := &FrameBatch{Start: runs[0].Start, End: runs[0].Start}
	for _, r := range runs {
		if r.Start != b.End {
			panic("BatchOf: runs with a gap")
		}
		b.appendRun(r.Stride, r.Pad, r.Count)
		b.End = r.End()
	}
	return b
}

// Frame-batch limits, for tests.
const (
	BatchesCap = batchesCap
	MaxKept    = maxKept
	BatchCost  = batchCost
)

// TakeRuns has c take the batches sent to it.
func TakeRuns(c *Collector) { c.takeRuns() }

// Kept is what c's batches cost (MaxKept).
func Kept(c *Collector) int { return c.frames.kept }

// WithRoom gives b's codes room for n bytes, as a batch the allocator grew.
func WithRoom(b *FrameBatch, n int) *FrameBatch {
	b.codes = append(make([]byte, 0, n), b.codes...)
	return b
}

// Known is c.known.
func Known(c *Collector, pos uint64) (stride uint64, pad, ok bool) { return c.known(pos) }

// KeptBatches is how many batches c keeps.
func KeptBatches(c *Collector) int { return len(c.frames.batches) - c.frames.first }
