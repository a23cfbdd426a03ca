package fuzz

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"testing"
	"time"
)

// hangTimeout is how long one fuzz input may take. Every operation of a
// history gives up after stallTimeout, so only a hang where no context
// reaches (Open, Close) runs this long.
const hangTimeout = 3 * stallTimeout

// watch runs f, and if it hangs, prints every goroutine and crashes the
// process, so that the fuzzing engine keeps the input that hung instead of
// stalling quietly.
func watch(f func() []string) []string {
	t := time.AfterFunc(hangTimeout, func() {
		buf := make([]byte, 1<<24)
		n := runtime.Stack(buf, true)
		fmt.Fprintf(os.Stderr, "fuzz input still running after %v: a hang\n%s", hangTimeout, buf[:n])
		panic("fuzz input hung")
	})
	defer t.Stop()
	return f()
}

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
		for _, v := range watch(func() []string { return CrashRecovery(data) }) {
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
		for _, v := range watch(func() []string { return JournalRecovery(data) }) {
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
		for _, v := range watch(func() []string { return OpenCorrupt(data) }) {
			t.Error(v)
		}
	})
}
