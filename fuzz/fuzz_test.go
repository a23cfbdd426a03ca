package fuzz

import (
	"math/rand/v2"
	"testing"
)

// seedInputs are a few inputs of each length, so that a plain go test runs
// histories of every size; the corpus under testdata/fuzz adds more,
// including the regressions.
func seedInputs(stream uint64) [][]byte {
	r := rand.New(rand.NewPCG(42, stream))
	var out [][]byte
	for _, n := range []int{0, 16, 96, 400, 1500} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		out = append(out, b)
	}
	return out
}

// FuzzCrashRecovery: a pipeline history (appends from several goroutines,
// reservations committed out of order, collections, reopens, reboots), a
// power cut and a crash image, all decoded from the input; the recovered
// log must pass every check.
func FuzzCrashRecovery(f *testing.F) {
	for _, b := range seedInputs(1) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, v := range CrashRecovery(data) {
			t.Error(v)
		}
	})
}

// FuzzJournalRecovery: the same for a bare journal, whose home region must
// be the effect of a prefix of the transactions holding every acknowledged
// one.
func FuzzJournalRecovery(f *testing.F) {
	for _, b := range seedInputs(2) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, v := range JournalRecovery(data) {
			t.Error(v)
		}
	})
}

// FuzzOpenCorrupt: random bytes, zeros, bit flips and resealed checksums in
// the superblock, the journal, the state and the data area of a log that
// wrapped. Open returns a typed error or a log that passes the checks —
// never a panic, never a hang.
func FuzzOpenCorrupt(f *testing.F) {
	for _, b := range seedInputs(3) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, v := range OpenCorrupt(data) {
			t.Error(v)
		}
	})
}
