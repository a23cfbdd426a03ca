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

// Runs is the channel of f, for tests to read what an allocator sent or to
// send what a collector should take.
func (f *FrameRuns) Runs() chan FrameRun { return f.c }

// Half is f's signal that its channel is half full.
func (f *FrameRuns) Half() <-chan struct{} { return f.half }

// MaxRuns is how many runs a collector keeps.
const MaxRuns = maxRuns

// TakeRuns has c take the runs sent to it.
func TakeRuns(c *Collector) { c.takeRuns() }

// RunsKept is how many runs c keeps.
func RunsKept(c *Collector) int { return len(c.runs) - c.first }
