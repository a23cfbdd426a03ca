package stages_test

import (
	"errors"
	"testing"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/internal/layout"
	"github.com/ringlog/ringlog/stages"
)

func TestFrameReaderVerifies(t *testing.T) {
	geo := testGeo(16 << 10)
	mem := device.NewMem(geo.Size)
	lap := uint64(16 << 10)
	p0 := payload(100, 1)
	putRecord(t, mem, geo, 5*lap, 3, p0) // [0, 160)
	putPad(t, mem, geo, 5*lap+160, 352, 3)
	// A zero-copy record: header block, payload one block later.
	block := device.AlignedBuffer(512)
	rp := payload(700, 2)
	layout.PutHeader(block, layout.Header{Pos: 5*lap + 512, Length: 700, Epoch: 3, DataOff: 512, Kind: layout.KindRecord})
	layout.Seal(block, rp)
	mem.WriteAt(block, geo.Phys(5*lap+512))
	mem.WriteAt(rp, geo.Phys(5*lap+1024))

	for _, ahead := range []int{0, 64 << 10} {
		r := &stages.FrameReader{Dev: mem, Geo: geo, Ahead: ahead, Limit: 5*lap + 2048}
		expectRecord(t, r, 5*lap, 3, p0)
		expectPad(t, r, 5*lap+160, 352)
		expectRecord(t, r, 5*lap+512, 3, rp)
		if h, err := r.Header(5*lap + 512); err != nil || h.Length != 700 || h.DataOff != 512 {
			t.Fatalf("Header: %+v, %v", h, err)
		}

		// The same physical place seen from another lap: stale bytes.
		for _, pos := range []uint64{4 * lap, 6 * lap, 6*lap + 160} {
			if _, _, err := r.Read(pos); !errors.Is(err, stages.ErrNotFound) {
				t.Fatalf("read of lap-shifted position %d: %v, want ErrNotFound", pos, err)
			}
		}
		// Zeroed space.
		if _, _, err := r.Read(5*lap + 4096); !errors.Is(err, stages.ErrNotFound) {
			t.Fatalf("read of zeroed space: %v, want ErrNotFound", err)
		}
	}

	// Damage: a flipped payload byte, a flipped padding byte.
	mem.WriteAt([]byte{^p0[50]}, geo.Phys(5*lap)+layout.HeaderLen+50)
	b := make([]byte, 1)
	mem.ReadAt(b, geo.Phys(5*lap+160)+16)
	mem.WriteAt([]byte{b[0] ^ 0x40}, geo.Phys(5*lap+160)+16)
	r := &stages.FrameReader{Dev: mem, Geo: geo}
	if _, _, err := r.Read(5 * lap); !errors.Is(err, stages.ErrCorrupt) {
		t.Fatalf("damaged record: %v, want ErrCorrupt", err)
	}
	if _, _, err := r.Read(5*lap + 160); !errors.Is(err, stages.ErrCorrupt) && !errors.Is(err, stages.ErrNotFound) {
		t.Fatalf("damaged padding: %v, want an error", err)
	}
}

func TestFrameReaderRejectsFramesPastTheLap(t *testing.T) {
	geo := testGeo(16 << 10)
	mem := device.NewMem(geo.Size)
	// A header near the end of the lap that claims more bytes than are
	// left: it must not be read past the area.
	pos := uint64(16<<10 - 64)
	b := make([]byte, layout.HeaderLen)
	layout.PutHeader(b, layout.Header{Pos: pos, Length: 1000, Epoch: 1, DataOff: layout.HeaderLen, Kind: layout.KindRecord})
	layout.SealInline(b, 0)
	mem.WriteAt(b, geo.Phys(pos))
	r := &stages.FrameReader{Dev: mem, Geo: geo}
	if _, _, err := r.Read(pos); !errors.Is(err, stages.ErrCorrupt) {
		t.Fatalf("frame past the end of the lap: %v, want ErrCorrupt", err)
	}
}

func TestFrameReaderAnyPositionNoPanic(t *testing.T) {
	// Positions come from callers (Log.Read); one that is not the start of
	// a frame, wherever it falls in a block, is ErrNotFound, never a panic.
	geo := testGeo(16 << 10)
	mem := device.NewMem(geo.Size)
	pos := uint64(0)
	for i := 0; pos < 4096; i++ {
		pos += putRecord(t, mem, geo, pos, 1, payload(i*37%300, uint64(i)))
	}
	for _, ahead := range []int{0, 64 << 10} {
		r := &stages.FrameReader{Dev: mem, Geo: geo, Ahead: ahead, Limit: pos}
		for p := uint64(1); p < 1100; p++ {
			if p%layout.HeaderLen == 0 {
				continue
			}
			func() {
				defer func() {
					if v := recover(); v != nil {
						t.Fatalf("Read(%d) panicked: %v", p, v)
					}
				}()
				if _, _, err := r.Read(p); !errors.Is(err, stages.ErrNotFound) {
					t.Fatalf("Read(%d): %v, want ErrNotFound", p, err)
				}
				if _, err := r.Header(p); !errors.Is(err, stages.ErrNotFound) {
					t.Fatalf("Header(%d): %v, want ErrNotFound", p, err)
				}
			}()
		}
	}
}

func TestFrameReaderReadAheadStopsAtLimit(t *testing.T) {
	// Bytes at and past Limit may still change (the tail block is being
	// rewritten): a read after they changed must see the new bytes.
	geo := testGeo(16 << 10)
	mem := device.NewMem(geo.Size)
	p0 := payload(40, 1)
	putRecord(t, mem, geo, 0, 1, p0) // [0, 96)
	r := &stages.FrameReader{Dev: mem, Geo: geo, Ahead: 64 << 10, Limit: 96}
	expectRecord(t, r, 0, 1, p0)
	p1 := payload(300, 2)
	putRecord(t, mem, geo, 96, 1, p1)
	r.Limit = 96 + appendStride(300)
	expectRecord(t, r, 96, 1, p1)
	expectRecord(t, r, 0, 1, p0)
}
