package fuzz

import (
	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/internal/layout"
)

// machine is what the log's and the journal's runners share: the crash
// device a history runs on, its power-cut and fault schedule, and reboots
// from crash images in the middle of a history.
type machine struct {
	cut     int64 // the power fails after cut writes and syncs in all (never if negative)
	used    int64 // ops spent on devices before the current one
	fault   int64 // the op of the first device to fail, if positive
	opened  int64 // the device's ops when the system was last opened
	stopped bool  // the power is cut or the history cannot go on
	crash   *device.Crash
	dev     *recDev

	blockSize int             // the block size the device reports
	geo       layout.Geometry // the log's layout (zero for a bare journal)
	journal   int64           // a bare journal's size
}

// runResult is the device a run leaves behind and what was learnt.
type runResult struct {
	crash  *device.Crash
	ops    int64   // writes and syncs the run performed (all devices)
	writes []wkind // the unsynced writes of crash, as Choices lists them
}

// boot starts a device from img with the rest of the op budget.
func (m *machine) boot(img []byte) {
	m.crash = device.NewCrashFrom(img)
	m.dev = &recDev{Device: wrapDev(m.crash, m.blockSize), geo: m.geo, journal: m.journal, failAt: m.fault}
	m.fault = 0 // the first device only
	if m.cut >= 0 {
		m.crash.CutAfter(max(m.cut-m.used, 0))
	}
}

func (m *machine) powerCut() bool { return m.crash.PowerCut() }

// faulted reports whether an injected error hit the system now open (or
// being opened).
func (m *machine) faulted() bool { return m.dev.firedAt.Load() > m.opened }

// open calls open, once more if an injected error (which fires once) failed
// it, and notes when the system was opened.
func (m *machine) open(open func() error) error {
	err := open()
	if err != nil && m.faulted() && !m.powerCut() {
		err = open()
	}
	if err == nil {
		m.opened = m.dev.ops.Load()
	}
	return err
}

// reboot crashes the machine now: close (whose ops die with the old
// device) runs, and a new device boots from an image of this one that
// seed picks.
func (m *machine) reboot(seed uint64, close func()) {
	src := newRNG(seed, uint64(m.cut)+1)
	img := m.crash.ImageFor(device.RandomOutcomes(m.crash.Choices(), src.Intn))
	used := m.used + m.crash.Ops()
	close()
	m.used = used
	m.boot(img)
}

// result is what the run leaves behind; cov counts a fault that fired.
func (m *machine) result(cov *Coverage) runResult {
	if m.dev.firedAt.Load() > 0 {
		cov.Faults++
	}
	return runResult{crash: m.crash, ops: m.used + m.crash.Ops(), writes: m.dev.writes()}
}
