package pipeline_test

import (
	"errors"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/pipeline"
)

// TestBufferedThenDirect writes a log through the page cache, where the
// journal's batches are padded to 512-byte blocks, and opens it again with
// O_DIRECT, which reads in 4096-byte blocks, then buffered once more: the
// same log opens either way, with every record (FORMAT.md). The journal
// still holds batches after Close, so Open replays them each time.
func TestBufferedThenDirect(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dev")
	cfg := pipeline.Config{CollectInterval: time.Hour}
	open := func(direct bool) (*device.File, error) {
		return device.OpenFile(path, device.FileOptions{Size: 1 << 20, Direct: direct})
	}
	f, err := open(false)
	if err != nil {
		t.Fatal(err)
	}
	l := formatOpen(t, f, cfg)
	acked := map[pipeline.Position][]byte{}
	for i := range 40 {
		p := idPayload(uint64(i), 700)
		pos, err := l.Append(guardCtx(t), p)
		if err != nil {
			t.Fatal(err)
		}
		acked[pos] = p
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for _, direct := range []bool{true, false} {
		f, err := open(direct)
		if direct && errors.Is(err, syscall.EINVAL) {
			t.Log("O_DIRECT is not supported on the temp filesystem (EINVAL): the direct reopen is not exercised")
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		l := mustOpen(t, f, cfg)
		holdsAll(t, l, acked, map[bool]string{true: "reopened with O_DIRECT", false: "reopened buffered"}[direct])
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
