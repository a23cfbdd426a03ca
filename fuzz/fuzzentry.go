package fuzz

import (
	"bytes"
	"fmt"
)

// CrashRecovery decodes a pipeline history and its crash choices from data,
// runs the history once without a power cut (to learn its length) and once
// cut where data says, recovers the image data picks, and checks it (see
// verifier.image). It returns the violations. FuzzCrashRecovery calls it.
func CrashRecovery(data []byte) []string {
	src := &byteSource{b: data}
	h := GenHistory(src, FuzzLimits)
	base, err := formatImage(h.Params)
	if err != nil {
		return []string{fmt.Sprintf("Format: %v", err)}
	}
	v := newVerifier(h, src)
	v.m = newModel(h)
	full := runHistory(h, v.m, bytes.Clone(base), -1, 0, v)
	for _, p := range v.m.problems {
		v.violation("no power cut", "%s", p)
	}
	cut := int64(src.Intn(1<<16)) * (full.ops + 1) >> 16
	var fault int64
	if chance(src, 1, 4) {
		fault = 1 + int64(src.Intn(1<<16))*(full.ops+1)>>16
	}
	v.m = newModel(h)
	res := runHistory(h, v.m, base, cut, fault, v)
	label := fmt.Sprintf("power cut after %d of %d ops, write or sync %d failed", cut, full.ops, fault)
	for _, p := range v.m.problems {
		v.violation(label, "%s", p)
	}
	ch := chosen(src, res.crash.Choices())
	v.image(res.crash.ImageFor(ch), fmt.Sprintf("%s, image %v", label, ch), nil, 0)
	return withHistory(v.violations, h.String())
}

// JournalRecovery is CrashRecovery for a journal history.
func JournalRecovery(data []byte) []string {
	src := &byteSource{b: data}
	h := GenJournalHistory(src, FuzzJournalLimits)
	base, err := formatJournal(h)
	if err != nil {
		return []string{fmt.Sprintf("Format: %v", err)}
	}
	v := &journalVerifier{h: h, src: src}
	newModel := func() *journalModel { return &journalModel{base: make([]byte, h.DevSize-h.JournalSize)} }
	v.m = newModel()
	full := runJournal(h, v.m, bytes.Clone(base), -1, 0, v)
	for _, p := range v.m.problems {
		v.violation("no power cut", "%s", p)
	}
	cut := int64(src.Intn(1<<16)) * (full.ops + 1) >> 16
	var fault int64
	if chance(src, 1, 4) {
		fault = 1 + int64(src.Intn(1<<16))*(full.ops+1)>>16
	}
	v.m = newModel()
	res := runJournal(h, v.m, base, cut, fault, v)
	label := fmt.Sprintf("power cut after %d of %d ops, write or sync %d failed", cut, full.ops, fault)
	for _, p := range v.m.problems {
		v.violation(label, "%s", p)
	}
	ch := chosen(src, res.crash.Choices())
	v.image(res.crash.ImageFor(ch), fmt.Sprintf("%s, image %v", label, ch), nil, 0)
	return withHistory(v.violations, h.String())
}

// chosen decodes one outcome per unsynced write.
func chosen(s Source, choices []int) []int {
	pick := make([]int, len(choices))
	for i, n := range choices {
		pick[i] = s.Intn(n)
	}
	return pick
}

func withHistory(vs []string, h string) []string {
	for i := range vs {
		vs[i] += "\n  history: " + h
	}
	return vs
}
