package fuzz

import (
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/internal/layout"
)

// wkind classifies a device write, so that an exploration can say what the
// crash images it checked were made of.
type wkind uint8

const (
	wSuper wkind = 1 << iota
	wJournalHeader
	wJournalBatch
	wState
	wData
	wPadding // a data write holding a padding marker
	wHome    // a journal test's home region
)

// errInjected is the I/O error a recDev injects.
var errInjected = errors.New("fuzz: injected I/O error")

// recDev forwards to a device and remembers the kinds of the writes since
// the last sync that succeeded. It can also fail one write or sync (the
// failAt-th, counting from 1) with errInjected, as a disk that reports an
// I/O error and goes on working. A failed sync does nothing; a failed write
// lands some of its sectors first (none, some or all, chosen by failAt and
// the offset), as a disk may before it gives up: the log must not trust
// anything of a write that failed.
type recDev struct {
	device.Device
	geo     layout.Geometry // zero for a bare journal
	journal int64           // bare journal: its size
	failAt  int64
	ops     atomic.Int64
	firedAt atomic.Int64 // ops when the error was injected; 0: not yet
	mu      sync.Mutex
	pending []wkind
}

// inject counts an op and reports whether it is the one to fail.
func (d *recDev) inject() bool {
	n := d.ops.Add(1)
	if n == d.failAt {
		d.firedAt.Store(n)
		return true
	}
	return false
}

func (d *recDev) WriteAt(p []byte, off int64) (int, error) {
	if d.inject() {
		d.landSome(p, off)
		return 0, errInjected
	}
	n, err := d.Device.WriteAt(p, off)
	if err == nil {
		k := d.classify(p, off)
		d.mu.Lock()
		d.pending = append(d.pending, k)
		d.mu.Unlock()
	}
	return n, err
}

// landSome writes some sectors of a failed write, each as a write of its
// own, so that a crash image may keep or drop each.
func (d *recDev) landSome(p []byte, off int64) {
	const sector = device.SectorSize
	if len(p)%sector != 0 || off%sector != 0 {
		return
	}
	r := rand.New(rand.NewPCG(uint64(d.failAt), uint64(off)))
	mode := r.IntN(4) // 0: none, 1: all, 2 and 3: a pattern
	for i := 0; i < len(p)/sector; i++ {
		if mode == 0 || mode >= 2 && r.IntN(2) == 0 {
			continue
		}
		q, at := p[i*sector:(i+1)*sector], off+int64(i*sector)
		if _, err := d.Device.WriteAt(q, at); err == nil {
			k := d.classify(q, at)
			d.mu.Lock()
			d.pending = append(d.pending, k)
			d.mu.Unlock()
		}
	}
}

func (d *recDev) Sync() error {
	if d.inject() {
		return errInjected
	}
	err := d.Device.Sync()
	if err == nil {
		d.mu.Lock()
		d.pending = d.pending[:0]
		d.mu.Unlock()
	}
	return err
}

// writes returns the kinds of the unsynced writes, in issue order.
func (d *recDev) writes() []wkind {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]wkind(nil), d.pending...)
}

func (d *recDev) classify(p []byte, off int64) wkind {
	if d.journal > 0 {
		switch {
		case off < 2*4096:
			return wJournalHeader
		case off < d.journal:
			return wJournalBatch
		}
		return wHome
	}
	g := d.geo
	switch {
	case off < g.JournalOff:
		return wSuper
	case off < g.JournalOff+2*4096:
		return wJournalHeader
	case off < g.StateOff:
		return wJournalBatch
	case off < g.DataOff:
		return wState
	}
	k := wData
	start := (off - g.DataOff + layout.HeaderLen - 1) / layout.HeaderLen * layout.HeaderLen
	for i := start + g.DataOff - off; i+layout.HeaderLen <= int64(len(p)); i += layout.HeaderLen {
		if h, ok := layout.DecodeHeader(p[i:]); ok && h.Kind == layout.KindPadding &&
			int64(h.Pos%uint64(g.DataSize)) == off+i-g.DataOff {
			k |= wPadding
			break
		}
	}
	return k
}

// Coverage counts crash states by what the power cut interrupted.
type Coverage struct {
	GroupCommit   int64 // data and the journal batch with its tail both unsynced
	JournalOnly   int64 // the batch kept, the data it covers dropped or torn
	Checkpoint    int64 // a new journal header generation unsynced
	HomeWrites    int64 // journal home writes (state blocks) unsynced
	Padding       int64 // a write holding a padding marker unsynced
	PaddingLost   int64 // ... and dropped or torn in the image
	Torn          int64 // some write torn in the image
	InRecovery    int64 // the power cut inside a recovery
	LargerBlocks  int64 // recovered with 4096-byte blocks what was written with 512
	Reboots       int64 // crashes in the middle of a history, recovered and continued
	NothingUnsync int64 // nothing was in flight
	Parked        int64 // requests that waited for the collector to free space (all runs)
	Faults        int64 // runs in which a write or sync failed (and the disk went on)
	Cancelled     int64 // appends whose context ended before they were placed
	CancelParked  int64 // ... of them, while waiting for space (ErrNoSpace)
	CancelLost    int64 // appends whose context ended after they were placed: acknowledged
}

// count classifies one image: the unsynced writes and their outcomes.
func (c *Coverage) count(ws []wkind, choice []int) {
	if len(ws) != len(choice) {
		return // the recorder and the device disagree (a race at a sync): skip
	}
	var all wkind
	var data, batch, pad, padLost, torn bool
	keptBatch, lostData := false, false
	for i, k := range ws {
		all |= k
		switch {
		case k&wData != 0:
			data = true
			lostData = lostData || choice[i] != 1
			if k&wPadding != 0 {
				pad = true
				padLost = padLost || choice[i] != 1
			}
		case k == wJournalBatch:
			batch = true
			keptBatch = keptBatch || choice[i] == 1
		}
		torn = torn || choice[i] >= 2
	}
	if len(ws) == 0 {
		c.NothingUnsync++
	}
	if data && batch {
		c.GroupCommit++
		if keptBatch && lostData {
			c.JournalOnly++
		}
	}
	if all&wJournalHeader != 0 {
		c.Checkpoint++
	}
	if all&(wState|wHome) != 0 {
		c.HomeWrites++
	}
	if pad {
		c.Padding++
	}
	if padLost {
		c.PaddingLost++
	}
	if torn {
		c.Torn++
	}
}

func (c *Coverage) add(o Coverage) {
	c.GroupCommit += o.GroupCommit
	c.JournalOnly += o.JournalOnly
	c.Checkpoint += o.Checkpoint
	c.HomeWrites += o.HomeWrites
	c.Padding += o.Padding
	c.PaddingLost += o.PaddingLost
	c.Torn += o.Torn
	c.InRecovery += o.InRecovery
	c.LargerBlocks += o.LargerBlocks
	c.Reboots += o.Reboots
	c.NothingUnsync += o.NothingUnsync
	c.Parked += o.Parked
	c.Faults += o.Faults
	c.Cancelled += o.Cancelled
	c.CancelLost += o.CancelLost
	c.CancelParked += o.CancelParked
}
