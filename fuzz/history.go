package fuzz

import (
	"fmt"
	"strings"

	"github.com/ringlog/ringlog/internal/layout"
	"github.com/ringlog/ringlog/stages"
	"github.com/ringlog/ringlog/wal"
)

// Params is the machine a pipeline history runs on.
type Params struct {
	DevSize     int64 // bytes of the crash device
	Pad         int64 // the log's region leaves Pad bytes free at either end
	JournalSize int64
	BlockSize   int  // the block size the device reports: 512 or 4096
	PosChecker  bool // the garbage checker decides by position alone
	// SyncsInFlight is the log's Config.SyncsInFlight: with more than one,
	// group commits overlap and crashes land between them.
	SyncsInFlight int
}

// DataSize is the bytes of the data area these parameters give.
func (p Params) DataSize() int64 {
	return p.geometry().DataSize
}

// geometry is where Format puts the log's parts.
func (p Params) geometry() layout.Geometry {
	return layout.NewGeometry(p.Pad, p.DevSize-2*p.Pad, p.JournalSize)
}

// ActionKind says what a lane does.
type ActionKind uint8

// Actions of a lane.
const (
	ActAppend  ActionKind = iota // Append one record of Sizes[0] bytes
	ActReserve                   // Reserve len(Sizes) records, write them, commit in Perm order from as many goroutines
	ActCollect                   // run a collector pass
	ActRead                      // Read an acknowledged record (the Pick-th, modulo)
	ActScan                      // Scan the log while the other lanes go on
	ActGate                      // hold the collector back until the log is full (or the other lanes are done), then Collect
)

// Action is one thing a lane does.
type Action struct {
	Kind ActionKind
	// Cancel, for an Append, ends its context: before the call if 1, else
	// from another goroutine after Cancel-1 yields, racing the request's
	// placement (and, on a full log, its wait for space).
	Cancel  int
	Sizes   []int
	Perm    []int  // Reserve: the order the commits are started in
	Discard []bool // Reserve: discard instead of committing
	Pick    int    // Read: which acknowledged record
}

// StepKind says what a step of a history does.
type StepKind uint8

// Steps of a history.
const (
	StepLanes  StepKind = iota // run the lanes concurrently, wait for all
	StepReopen                 // Close and Open again (no crash)
	StepReboot                 // crash now (an image chosen by Seed), boot from it, Open
)

// Step is one step of a history.
type Step struct {
	Kind  StepKind
	Lanes [][]Action
	Seed  uint64 // Reboot: picks the image
}

// History is a sequence of operations on a fresh log.
type History struct {
	Params
	Steps []Step
	// GarbagePct is the chance that the garbage checker calls a record
	// garbage as soon as it sees it; besides, every record older than the
	// newest Budget bytes is garbage, so the log never fills with live data.
	GarbagePct int
	Budget     int64
	Pressure   bool // Budget and steps large enough to fill the log
	Huge       bool // the largest appends are half the data area
}

// recordStride is the most bytes a record of n payload bytes takes.
func (p Params) recordStride(reserve bool, n int) int64 {
	if reserve {
		// With the padding that may align it.
		return int64(stages.Stride(stages.KindReserve, n, uint64(p.BlockSize))) + int64(p.BlockSize)
	}
	return int64(stages.Stride(stages.KindAppend, n, uint64(p.BlockSize)))
}

// Limits bound what GenHistory makes.
type Limits struct {
	MaxSteps   int
	MaxLanes   int
	MaxActions int // per lane and step
	// Huge lets one history in six without pressure make its larger
	// appends half the data area (History.Huge). Fuzz inputs do without:
	// the draw would take a byte from every stored input's power cut.
	Huge bool
}

// DefaultLimits are the exploration's: histories that wrap the log a few
// times and checkpoint the journal, yet run in milliseconds.
var DefaultLimits = Limits{MaxSteps: 22, MaxLanes: 4, MaxActions: 3, Huge: true}

// FuzzLimits are smaller, for one history per fuzz input.
var FuzzLimits = Limits{MaxSteps: 12, MaxLanes: 3, MaxActions: 3}

// GenHistory draws a pipeline history from s.
func GenHistory(s Source, lim Limits) *History {
	h := &History{Params: Params{DevSize: 192 << 10, JournalSize: wal.MinSize, BlockSize: 512}}
	switch s.Intn(8) {
	case 6:
		h.BlockSize = 4096 // O_DIRECT-like: whole 4 KiB blocks, 512-byte sectors still tear
	case 7:
		h.DevSize = 256 << 10
		h.JournalSize = 32 << 10
	}
	h.PosChecker = chance(s, 1, 3)
	h.GarbagePct = []int{0, 30, 60, 90}[s.Intn(4)]
	if chance(s, 1, 8) {
		// The region does not start or end with the device: nothing
		// outside it may change.
		h.Pad = 8 << 10
		h.DevSize += 2 * h.Pad
	}
	pressure := chance(s, 1, 4)
	if pressure {
		h.DevSize, h.JournalSize = 112<<10+2*h.Pad, wal.MinSize // a 64 KiB data area
	}
	data := h.DataSize()
	h.Budget = data / 4
	stepBytes := data / 4
	if pressure {
		// Run the log nearly full, wrapping often, the collector working
		// all the time, appends sometimes waiting for it. Live data (the
		// newest Budget bytes, in flight included) plus one record per
		// lane out of order, one lap's end padding and a block of slack
		// stays below the area, so the collector can always make room.
		h.Budget, stepBytes = data*4/5, data/4
		h.Pressure = true
		h.BlockSize = 512
		if chance(s, 1, 2) {
			// O_DIRECT-sized blocks near a full log: the slack the
			// writer's rewritten tail block needs is a whole 4 KiB.
			h.BlockSize = 4096
		}
	}
	n := between(s, 1, lim.MaxSteps)
	for range n {
		switch k := s.Intn(20); {
		case k == 18:
			h.Steps = append(h.Steps, Step{Kind: StepReopen})
			continue
		case k == 19:
			h.Steps = append(h.Steps, Step{Kind: StepReboot, Seed: uint64(s.Intn(1 << 30))})
			continue
		}
		lanes, acts, most := between(s, 1, lim.MaxLanes), lim.MaxActions, stepBytes
		// Under pressure, some steps hold the collector back while their
		// lanes append half the area: the log fills up, appends wait for
		// space.
		gate := h.Pressure && chance(s, 1, 3)
		if gate {
			lanes, acts, most = between(s, 2, 4), 3*lim.MaxActions, data/2
		}
		st := Step{Kind: StepLanes}
		var bytes int64
		for range lanes {
			var lane []Action
			for range between(s, 1, acts) {
				a := genAction(s, h)
				for _, n := range a.Sizes {
					bytes += h.recordStride(a.Kind == ActReserve, n)
				}
				if bytes > most {
					break
				}
				lane = append(lane, a)
			}
			if len(lane) > 0 {
				st.Lanes = append(st.Lanes, lane)
			}
		}
		if gate {
			st.Lanes = append(st.Lanes, []Action{{Kind: ActGate}})
		}
		if len(st.Lanes) > 0 {
			h.Steps = append(h.Steps, st)
		}
	}
	// Drawn last so that every earlier draw, and so every stored seed's
	// history, stays what it was.
	h.SyncsInFlight = 1 + s.Intn(3)
	// An input that has run out reads zeros: those must not make it huge.
	if lim.Huge && !h.Pressure && s.Intn(6) == 5 {
		h.hugeRecords()
	}
	return h
}

// hugeRecords makes the history's larger appends as large as a record can
// be, half the data area: one group then spans most of a lap, and the next
// lap reaches the frames just behind the head while the tail bound the
// journal holds is still an old one. A record that large fits only once
// nearly everything else is collected, so every record is garbage at once
// and each step's lanes run one after another, in one lane: nothing else
// holds space while it waits.
func (h *History) hugeRecords() {
	h.Huge = true
	h.GarbagePct = 100
	huge := int(h.geometry().MaxStride()) - layout.HeaderLen
	for i := range h.Steps {
		st := &h.Steps[i]
		if st.Kind != StepLanes {
			continue
		}
		var lane []Action
		for _, l := range st.Lanes {
			lane = append(lane, l...)
		}
		for j := range lane {
			if a := &lane[j]; a.Kind == ActAppend && a.Sizes[0] >= 2500 {
				a.Sizes[0] = huge
			}
		}
		st.Lanes = [][]Action{lane}
	}
}

func genAction(s Source, h *History) Action {
	switch k := s.Intn(20); {
	case k == 16 || k == 17:
		return Action{Kind: ActRead, Pick: s.Intn(1 << 16)}
	case k == 18:
		return Action{Kind: ActScan}
	case k == 19:
		// Its request races the caller's cancellation: placed and then
		// waited for, or taken back before it has a position.
		return Action{Kind: ActAppend, Cancel: 1 + s.Intn(5), Sizes: []int{recordSize(s, h)}}
	case k < 12:
		return Action{Kind: ActAppend, Sizes: []int{recordSize(s, h)}}
	case k < 15:
		n := between(s, 1, 3)
		a := Action{Kind: ActReserve, Sizes: make([]int, n), Perm: make([]int, n), Discard: make([]bool, n)}
		for i := range n {
			a.Sizes[i] = between(s, minPayload, 1500)
			a.Perm[i] = i
			a.Discard[i] = chance(s, 1, 6)
		}
		for i := n - 1; i > 0; i-- {
			j := s.Intn(i + 1)
			a.Perm[i], a.Perm[j] = a.Perm[j], a.Perm[i]
		}
		return a
	default:
		return Action{Kind: ActCollect}
	}
}

// recordSize draws a payload size: mostly small, some of a few KiB, a few
// large enough to force padding at the end of a lap.
func recordSize(s Source, h *History) int {
	if h.Pressure {
		return between(s, minPayload, 1500)
	}
	switch k := s.Intn(10); {
	case k < 6:
		return between(s, minPayload, 200)
	case k < 9:
		return between(s, 200, 2500)
	default:
		return between(s, 2500, 9000)
	}
}

// String describes the history compactly, for violation reports.
func (h *History) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dev=%d pad=%d journal=%d bs=%d posChecker=%v garbage=%d%% budget=%d pressure=%v huge=%v inflight=%d;", h.DevSize, h.Pad, h.JournalSize, h.BlockSize, h.PosChecker, h.GarbagePct, h.Budget, h.Pressure, h.Huge, h.SyncsInFlight)
	for i, st := range h.Steps {
		switch st.Kind {
		case StepReopen:
			fmt.Fprintf(&b, " %d:reopen", i)
		case StepReboot:
			fmt.Fprintf(&b, " %d:reboot(%d)", i, st.Seed)
		default:
			fmt.Fprintf(&b, " %d:[", i)
			for li, lane := range st.Lanes {
				if li > 0 {
					b.WriteString(" |")
				}
				for _, a := range lane {
					switch a.Kind {
					case ActAppend:
						if a.Cancel > 0 {
							fmt.Fprintf(&b, " x%d", a.Cancel)
						}
						fmt.Fprintf(&b, " a%d", a.Sizes[0])
					case ActReserve:
						fmt.Fprintf(&b, " r%v%v%v", a.Sizes, a.Perm, a.Discard)
					case ActCollect:
						b.WriteString(" c")
					case ActRead:
						fmt.Fprintf(&b, " read%d", a.Pick)
					case ActScan:
						b.WriteString(" scan")
					case ActGate:
						b.WriteString(" gate")
					}
				}
			}
			b.WriteString(" ]")
		}
	}
	return b.String()
}
