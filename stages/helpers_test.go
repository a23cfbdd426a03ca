package stages_test

import (
	"bytes"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/internal/layout"
	"github.com/ringlog/ringlog/stages"
	"github.com/ringlog/ringlog/wal"
)

// guard bounds every wait of these tests: it is how long a stage may take to
// answer before the test calls it hung. No test sleeps to synchronise.
const guard = 10 * time.Second

// testGeo lays out a region whose data area has dataSize bytes, with the
// smallest journal.
func testGeo(dataSize int64) layout.Geometry {
	return layout.NewGeometry(0, 2*layout.Align+wal.MinSize+layout.StateSize+dataSize, wal.MinSize)
}

// recv returns the next value of ch, failing the test if none comes.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(guard):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// waitDone waits for w to be finished.
func waitDone(t *testing.T, w *stages.Waiter, what string) {
	t.Helper()
	select {
	case <-w.Done:
		w.PassOn()
	case <-time.After(guard):
		t.Fatalf("timed out waiting for %s to finish", what)
	}
}

// isDone reports whether w was finished.
func isDone(w *stages.Waiter) bool {
	select {
	case <-w.Done:
		w.PassOn()
		return true
	default:
		return false
	}
}

// runStage starts run in a goroutine and returns a function that stops it
// and waits for it to return.
func runStage(t *testing.T, run func(<-chan struct{})) (stop func()) {
	t.Helper()
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(quit)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			close(quit)
			select {
			case <-done:
			case <-time.After(guard):
				t.Errorf("stage did not return after quit")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// payload returns n pseudo-random bytes determined by seed.
func payload(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return p
}

// appendStride is the stride of an appended record of n bytes.
func appendStride(n int) uint64 { return layout.RoundUp(layout.HeaderLen+uint64(n), layout.HeaderLen) }

// putRecord writes an inline record frame for payload at pos directly on
// dev, as the writer would.
func putRecord(t *testing.T, dev device.Device, geo layout.Geometry, pos uint64, epoch uint32, p []byte) uint64 {
	t.Helper()
	stride := appendStride(len(p))
	b := make([]byte, stride)
	layout.PutHeader(b, layout.Header{Pos: pos, Length: uint32(len(p)), Epoch: epoch, DataOff: layout.HeaderLen, Kind: layout.KindRecord})
	copy(b[layout.HeaderLen:], p)
	layout.SealInline(b, len(p))
	if _, err := dev.WriteAt(b, geo.Phys(pos)); err != nil {
		t.Fatal(err)
	}
	return stride
}

// putPad writes a padding marker covering [pos, pos+span) on dev.
func putPad(t *testing.T, dev device.Device, geo layout.Geometry, pos, span uint64, epoch uint32) {
	t.Helper()
	b := make([]byte, layout.HeaderLen)
	layout.PutHeader(b, layout.Header{Pos: pos, Length: uint32(span), Epoch: epoch, Kind: layout.KindPadding})
	layout.SealInline(b, 0)
	if _, err := dev.WriteAt(b, geo.Phys(pos)); err != nil {
		t.Fatal(err)
	}
}

// expectRecord reads the frame at pos and checks that it is the record p.
func expectRecord(t *testing.T, r *stages.FrameReader, pos uint64, epoch uint32, p []byte) {
	t.Helper()
	h, got, err := r.Read(pos)
	if err != nil {
		t.Fatalf("read record at %d: %v", pos, err)
	}
	if h.Kind != layout.KindRecord || h.Pos != pos || h.Epoch != epoch || !bytes.Equal(got, p) {
		t.Fatalf("record at %d: header %+v, payload %d bytes (want %d bytes, epoch %d, equal %v)",
			pos, h, len(got), len(p), epoch, bytes.Equal(got, p))
	}
}

// expectPad reads the frame at pos and checks that it is padding of span.
func expectPad(t *testing.T, r *stages.FrameReader, pos, span uint64) {
	t.Helper()
	h, _, err := r.Read(pos)
	if err != nil {
		t.Fatalf("read padding at %d: %v", pos, err)
	}
	if h.Kind != layout.KindPadding || h.Pos != pos || h.Stride() != span {
		t.Fatalf("padding at %d: header %+v, want stride %d", pos, h, span)
	}
}

// recDev records the writes made to a device.
type recDev struct {
	device.Device
	mu     sync.Mutex
	writes [][2]int64 // offset, length
}

func (d *recDev) WriteAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	d.writes = append(d.writes, [2]int64{off, int64(len(p))})
	d.mu.Unlock()
	return d.Device.WriteAt(p, off)
}

func (d *recDev) take() [][2]int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.writes
	d.writes = nil
	return w
}

// newJournal formats and opens a journal for geo on dev.
func newJournal(t *testing.T, dev device.Device, geo layout.Geometry) *wal.Journal {
	t.Helper()
	if err := wal.Format(dev, geo.JournalOff, geo.JournalSize); err != nil {
		t.Fatal(err)
	}
	j, err := wal.Open(dev, geo.JournalOff, geo.JournalSize, wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}
