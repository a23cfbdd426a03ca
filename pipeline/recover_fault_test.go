package pipeline_test

import (
	"bytes"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/pipeline"
)

// crashedImage returns the bytes of a device whose log acknowledged the
// returned records and then lost power: the tail bound is ahead of them, so
// Open has frames to verify.
func crashedImage(t *testing.T) ([]byte, pipeline.Config, map[pipeline.Position][]byte) {
	t.Helper()
	mem := device.NewMem(1 << 20)
	cfg := pipeline.Config{CollectInterval: time.Hour}
	l := formatOpen(t, mem, cfg)
	acked := map[pipeline.Position][]byte{}
	for i := range 20 {
		p := idPayload(uint64(i), 3000)
		pos, err := l.Append(guardCtx(t), p)
		if err != nil {
			t.Fatal(err)
		}
		acked[pos] = p
	}
	img := bytes.Clone(mem.Bytes()) // the power cut: every append above was synced
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return img, cfg, acked
}

func memOf(img []byte) *device.Mem {
	m := device.NewMem(int64(len(img)))
	m.WriteAt(img, 0)
	return m
}

// holdsAll checks that l has every acknowledged record.
func holdsAll(t *testing.T, l *pipeline.Log, acked map[pipeline.Position][]byte, what string) {
	t.Helper()
	for pos, p := range acked {
		if got, err := l.Read(pos); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("%s: acknowledged record at %d: %v", what, pos, err)
		}
	}
}

// TestOpenReadFailureAfterCrash fails each read of Open once, in turn, on a
// log that crashed with frames past its synced tail. A read that fails
// while Open verifies them says nothing about the frames: Open must fail,
// or get the bytes another way, and never end the log early, which would
// drop acknowledged records for good.
func TestOpenReadFailureAfterCrash(t *testing.T) {
	failReadsInTurn(t, 1)
}

// TestOpenTwoReadFailuresAfterCrash fails two reads of Open in a row, in
// turn: a failed read-ahead is retried for the frame alone, and when that
// fails as well Open must fail with ErrUnreadable, not end the log there.
func TestOpenTwoReadFailuresAfterCrash(t *testing.T) {
	if failReadsInTurn(t, 2) == 0 {
		t.Fatal("no pair of failed reads met the walk: the test shows nothing")
	}
}

// failReadsInTurn opens a crashed log with k consecutive reads failing,
// starting at each read of Open in turn. Each Open fails with the injected
// error or keeps every acknowledged record, and the healthy device has them
// all afterwards. It returns how many Opens failed with ErrUnreadable.
func failReadsInTurn(t *testing.T, k int64) (unreadable int) {
	img, cfg, acked := crashedImage(t)
	var end pipeline.Position
	for pos, p := range acked {
		end = max(end, pos+pipeline.Position(len(p)))
	}
	for n := int64(1); ; n++ {
		m := memOf(img)
		f := device.NewFaulty(m)
		for i := range k {
			f.Inject(device.Fault{Op: device.OpRead, N: n + i})
		}
		l, err := pipeline.Open(f, cfg)
		switch {
		case err == nil:
			// (Reads through f could meet a fault after Open.)
			if d := l.Stats().Durable; d < end {
				t.Fatalf("Open with %d reads failing from read %d ended the log at %d, before acknowledged records up to %d", k, n, d, end)
			}
			l.Close()
		case !device.IsInjected(err):
			t.Fatalf("Open with %d reads failing from read %d: %v, want the injected error", k, n, err)
		case errors.Is(err, pipeline.ErrUnreadable):
			unreadable++
		}
		// Whatever Open did, the healthy device still has every record.
		l = mustOpen(t, m, cfg)
		holdsAll(t, l, acked, "reopened after failed reads")
		l.Close()
		if f.Count(device.OpRead) < n {
			return unreadable // Open does fewer than n reads
		}
		if n > 1000 {
			t.Fatal("Open never finished")
		}
	}
}

// lastRecordAt returns where the last record's payload (crashedImage's
// twentieth) lies in img.
func lastRecordAt(t *testing.T, img []byte) int {
	t.Helper()
	i := bytes.Index(img, idPayload(19, 3000))
	if i < 0 {
		t.Fatal("last record not found in the image")
	}
	return i
}

// badSector fails every read that covers its offset, as a device does with
// a sector it cannot read.
type badSector struct {
	device.Device
	off int64
}

func (d badSector) ReadAt(p []byte, off int64) (int, error) {
	if off <= d.off && d.off < off+int64(len(p)) {
		return 0, syscall.EIO
	}
	return d.Device.ReadAt(p, off)
}

// TestOpenUnreadableSectorAhead puts an unreadable sector in space the log
// has not written yet, past the acknowledged frames but below the tail
// bound: Open's read-ahead covers it, but no frame lies there, so Open
// succeeds with every record.
func TestOpenUnreadableSectorAhead(t *testing.T) {
	img, cfg, acked := crashedImage(t)
	bad := (int64(lastRecordAt(t, img)+3000) + 8<<10) &^ (device.SectorSize - 1)
	l, err := pipeline.Open(badSector{memOf(img), bad}, cfg)
	if err != nil {
		t.Fatalf("Open with an unreadable sector where nothing was written: %v", err)
	}
	defer l.Close()
	holdsAll(t, l, acked, "Open past an unreadable sector")
}

// countFailed counts a device's reads that fail.
type countFailed struct {
	device.Device
	n int
}

func (d *countFailed) ReadAt(p []byte, off int64) (int, error) {
	n, err := d.Device.ReadAt(p, off)
	if err != nil {
		d.n++
	}
	return n, err
}

// TestOpenUnreadableFrame puts an unreadable sector in the last
// acknowledged frame, past the synced tail: Open cannot tell it from a frame
// never acknowledged, so it fails with ErrUnreadable every time and commits
// nothing; Config.TruncateUnreadable opens the log, ending it at that frame.
// Once a read ahead has failed, Open reads ahead no more: one failed read
// per frame would be seconds of a disk's retries each.
func TestOpenUnreadableFrame(t *testing.T) {
	img, cfg, acked := crashedImage(t)
	m := memOf(img)
	bad := badSector{m, int64(lastRecordAt(t, img)+1000) &^ (device.SectorSize - 1)}
	for range 2 {
		dev := &countFailed{Device: bad}
		l, err := pipeline.Open(dev, cfg)
		if !errors.Is(err, pipeline.ErrUnreadable) || !errors.Is(err, syscall.EIO) {
			if err == nil {
				l.Close()
			}
			t.Fatalf("Open with an unreadable acknowledged frame: %v, want ErrUnreadable wrapping EIO", err)
		}
		// The first read ahead, and the frame's own read.
		if dev.n > 2 {
			t.Errorf("%d reads of Open failed: it went on reading ahead into the bad sector", dev.n)
		}
	}
	lossy := cfg
	lossy.TruncateUnreadable = true
	l, err := pipeline.Open(bad, lossy)
	if err != nil {
		t.Fatalf("Open with TruncateUnreadable: %v", err)
	}
	s := l.Stats()
	l.Close()
	var lastPos pipeline.Position
	for pos := range acked {
		lastPos = max(lastPos, pos)
	}
	if s.Durable != lastPos || s.TruncatedBytes == 0 {
		t.Fatalf("TruncateUnreadable ended the log at %d (truncated %d bytes), want it at the unreadable frame %d", s.Durable, s.TruncatedBytes, lastPos)
	}
	l = mustOpen(t, m, cfg)
	defer l.Close()
	delete(acked, lastPos)
	holdsAll(t, l, acked, "after TruncateUnreadable")
}
