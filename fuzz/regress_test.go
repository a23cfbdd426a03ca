package fuzz

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"github.com/ringlog/ringlog/internal/layout"
	"github.com/ringlog/ringlog/pipeline"
	"testing"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/wal"
)

// TestRegressJournalSequenceAfterLostCheckpointHeader is the first bug the
// checker found (seed corpus: FuzzCrashRecovery/regress-wal-stale-batch-
// replayed). A crash in a checkpoint can keep the new generation's first
// batch, at the area's start, and lose the header that announces it. Replay
// then stops at once (the batch's sequence is not the old header's), which
// is right: the checkpoint had synced every home write. But recovery used
// to start the new generation at the old header's sequence, so its second
// batch was followed by a stale batch of the old generation carrying exactly
// the next sequence; the next recovery replayed the old generation's
// batches over newer, acknowledged writes.
func TestRegressJournalSequenceAfterLostCheckpointHeader(t *testing.T) {
	const home = wal.MinSize
	ctx := context.Background()
	stamp := func(i uint64) []byte { return binary.LittleEndian.AppendUint64(nil, i) }
	dev := device.NewCrash(64 << 10)
	if err := wal.Format(dev, 0, wal.MinSize); err != nil {
		t.Fatal(err)
	}
	j, err := wal.Open(dev, 0, wal.MinSize, wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	commit := func(j *wal.Journal, i uint64) error {
		tx := j.Begin()
		tx.Write(home, stamp(i))
		return j.Commit(ctx, tx)
	}
	// Fill the area with one-sector batches; the next commit checkpoints.
	for i := uint64(1); i <= (wal.MinSize-2*4096)/device.SectorSize; i++ {
		if err := commit(j, i); err != nil {
			t.Fatal(err)
		}
	}
	if n := j.Stats().Checkpoints; n != 1 {
		t.Fatalf("%d checkpoints (Open's included) before the area was full", n)
	}
	// The checkpoint: sync, header write, header sync, batch write, sync.
	// The header is synced before the batch is written now, so a crash can
	// no longer keep the batch and lose the header; earlier versions could,
	// and recovery must still cope with logs they left. So the state is
	// made by hand: the checkpoint completes, then the header slot it wrote
	// gets its old bytes back.
	before := dev.ImageFor(allLanded(dev.Choices()))
	if err := commit(j, 1000); err != nil {
		t.Fatal(err)
	}
	j.Close()
	img := dev.ImageFor(allLanded(dev.Choices()))
	wiped := 0
	for _, s := range []int{0, 4096} {
		if !bytes.Equal(img[s:s+4096], before[s:s+4096]) {
			copy(img[s:s+4096], before[s:s+4096])
			wiped++
		}
	}
	if wiped != 1 {
		t.Fatalf("the checkpoint changed %d header slots, want 1", wiped)
	}
	dev2 := device.NewCrashFrom(img)
	j2, err := wal.Open(dev2, 0, wal.MinSize, wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(2000); i < 2003; i++ {
		if err := commit(j2, i); err != nil {
			t.Fatal(err)
		}
	}
	j2.Close()
	dev3 := device.NewCrashFrom(dev2.ImageFor(allLanded(dev2.Choices())))
	j3, err := wal.Open(dev3, 0, wal.MinSize, wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j3.Close()
	got := make([]byte, 8)
	if _, err := dev3.ReadAt(got, home); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, stamp(2002)) {
		t.Fatalf("after recovery the home block holds %d; the last acknowledged commit wrote 2002", binary.LittleEndian.Uint64(got))
	}
}

// TestRegressStateOffFrameBoundary is the second (seed corpus:
// FuzzOpenCorrupt/regress-state-synced-off-frame-boundary): a tail record
// with a valid checksum whose synced position is not on a frame boundary
// (a foreign or buggy writer's) was accepted; recovery could verify
// nothing from there, so the tail became that position, the next Append
// was written where no reader would look for a frame, and its record was
// lost once acknowledged. Open now says ErrCorrupt.
func TestRegressStateOffFrameBoundary(t *testing.T) {
	p := Params{DevSize: 192 << 10, JournalSize: wal.MinSize, BlockSize: 512}
	img, err := formatImage(p)
	if err != nil {
		t.Fatal(err)
	}
	dev := device.NewCrashFrom(img)
	l, err := pipeline.Open(dev, p.config(nil))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := l.Append(context.Background(), makePayload(uint64(i+1), 100)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	b := dev.ImageFor(allLanded(dev.Choices()))
	g := layout.NewGeometry(0, p.DevSize, p.JournalSize)
	clear(b[g.JournalOff+2*4096 : g.StateOff]) // no batch to replay
	for i := range 2 {
		slot := b[g.TailSlot(i):]
		tail, ok := layout.DecodeTail(slot)
		if !ok || tail.Tail < layout.HeaderLen {
			t.Fatalf("tail copy %d: %+v, %v", i, tail, ok)
		}
		tail.Synced = tail.Tail - 8
		tail.Encode(slot)
	}
	if l, err := pipeline.Open(device.NewCrashFrom(b), p.config(nil)); !errors.Is(err, pipeline.ErrCorrupt) {
		if err == nil {
			l.Close()
		}
		t.Fatalf("Open of a state whose synced position is off a frame boundary: %v, want ErrCorrupt", err)
	}
}

// TestRegressJournalReplayOfUnsyncedBatch is the third: a journal whose
// batch sync failed is reopened without a crash. Replay reads the batch
// back (the device still shows it), and used to apply its home writes right
// away; a power cut during that apply could then keep some of the home
// writes and lose the batch, which was never durable: part of a
// transaction, with nothing left to finish it. Replay now syncs before its
// first home write.
func TestRegressJournalReplayOfUnsyncedBatch(t *testing.T) {
	const home = wal.MinSize
	offs := []int64{home, home + 1024, home + 2048} // three separate home blocks
	data := bytes.Repeat([]byte{0xab}, 100)
	crash := device.NewCrash(64 << 10)
	if err := wal.Format(crash, 0, wal.MinSize); err != nil {
		t.Fatal(err)
	}
	// Open syncs, writes a header and syncs; the commit writes its batch,
	// and its sync, the fifth op, fails.
	dev := &recDev{Device: crash, journal: wal.MinSize, failAt: 5}
	j, err := wal.Open(dev, 0, wal.MinSize, wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tx := j.Begin()
	for _, off := range offs {
		tx.Write(off, data)
	}
	if err := j.Commit(context.Background(), tx); !errors.Is(err, errInjected) {
		t.Fatalf("Commit: %v, want the injected error", err)
	}
	j.Close()
	if n := crash.Pending(); n != 1 {
		t.Fatalf("%d unsynced writes, want the batch alone", n)
	}
	// Reopen the same device (a copy of it, the batch still unsynced), the
	// power failing after cut ops of recovery, and recover every image.
	batch := make([]byte, 512)
	if _, err := crash.ReadAt(batch, 2*4096); err != nil {
		t.Fatal(err)
	}
	for cut := int64(0); cut < 8; cut++ {
		c := device.NewCrashFrom(crash.DurableImage())
		if _, err := c.WriteAt(batch, 2*4096); err != nil {
			t.Fatal(err)
		}
		c.CutAfter(cut)
		if j, err := wal.Open(c, 0, wal.MinSize, wal.Options{}); err == nil {
			j.Close()
		}
		c.Enumerate(func(choice []int, img []byte) bool {
			c2 := device.NewCrashFrom(img)
			j, err := wal.Open(c2, 0, wal.MinSize, wal.Options{})
			if err != nil {
				t.Fatalf("cut %d, image %v: Open: %v", cut, choice, err)
			}
			defer j.Close()
			landed := 0
			for _, off := range offs {
				got := make([]byte, len(data))
				c2.ReadAt(got, off)
				if bytes.Equal(got, data) {
					landed++
				}
			}
			if landed != 0 && landed != len(offs) {
				t.Fatalf("power cut after %d ops of the reopen, image %v: %d of the transaction's %d writes are home", cut, choice, landed, len(offs))
			}
			return true
		})
	}
}
