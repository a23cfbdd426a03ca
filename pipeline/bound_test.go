package pipeline_test

import (
	"bytes"
	"testing"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/pipeline"
)

// TestTailBoundAcrossCrashAndClose appends until the journal's tail bound
// has been moved several times, cuts the power, and reopens: every
// acknowledged record is there and nothing else, though the bound ran
// ahead of the data. A clean Close then leaves the bound at the tail: the
// next Open has nothing to walk.
func TestTailBoundAcrossCrashAndClose(t *testing.T) {
	dev := device.NewCrash(1 << 20)
	cfg := pipeline.Config{}
	l := formatOpen(t, dev, cfg)
	var want [][]byte
	for i := range 200 {
		p := idPayload(uint64(i), 300+i*7%900)
		if _, err := l.Append(guardCtx(t), p); err != nil {
			t.Fatal(err)
		}
		want = append(want, p)
	}
	crashed := device.NewCrashFrom(dev.DurableImage())
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l = mustOpen(t, crashed, cfg)
	got := checkRecords(t, l, want)
	if s := l.Stats(); s.TruncatedBytes == 0 || uint64(s.Tail) != got {
		t.Fatalf("after the crash: tail %d, %d bytes past it to the bound; want tail %d and a bound ahead", s.Tail, s.TruncatedBytes, got)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, crashed, cfg)
	checkRecords(t, l, want)
	if s := l.Stats(); s.TruncatedBytes != 0 {
		t.Fatalf("after a clean Close the bound is %d bytes past the tail, want 0", s.TruncatedBytes)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// checkRecords fails the test unless l holds exactly want, in order, and
// returns the position after the last.
func checkRecords(t *testing.T, l *pipeline.Log, want [][]byte) uint64 {
	t.Helper()
	pos, got := scanAll(t, l)
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("record %d at %d differs", i, pos[i])
		}
	}
	return uint64(l.Stats().Durable)
}
