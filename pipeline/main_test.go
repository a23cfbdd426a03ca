package pipeline_test

import (
	"flag"
	"testing"

	"go.uber.org/goleak"

	"github.com/ringlog/ringlog/internal/testhooks"
)

// TestMain checks every frame run the collector is told against the device
// (testhooks.CheckRuns), except in benchmarks, and that no test leaves a
// goroutine behind.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		testhooks.CheckRuns.Store(true)
	}
	goleak.VerifyTestMain(m)
}
