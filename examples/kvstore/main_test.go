package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestCLI runs the commands the package comment documents, each as its own
// invocation on one file, as a user would.
func TestCLI(t *testing.T) {
	db := filepath.Join(t.TempDir(), "kv.db")
	steps := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"get", "greeting"}, 1, ""},
		{[]string{"put", "greeting", "hello"}, 0, ""},
		{[]string{"get", "greeting"}, 0, "hello\n"},
		{[]string{"put", "other", "x y z"}, 0, ""},
		{[]string{"put", "greeting", "hello again"}, 0, ""},
		{[]string{"get", "greeting"}, 0, "hello again\n"},
		{[]string{"keys"}, 0, "greeting\nother\n"},
		{[]string{"del", "greeting"}, 0, ""},
		{[]string{"get", "greeting"}, 1, ""},
		{[]string{"keys"}, 0, "other\n"},
		{[]string{"stats"}, 0, "keys 1\ntombstones 1\n"},
		{[]string{"put", "greeting"}, 2, ""},
		{[]string{"frobnicate"}, 2, ""},
	}
	for _, st := range steps {
		var stdout, stderr bytes.Buffer
		args := append([]string{"-db", db, "-size", "1048576"}, st.args...)
		code := run(args, &stdout, &stderr)
		if code != st.code || !strings.HasPrefix(stdout.String(), st.out) {
			t.Fatalf("kvstore %s: exit %d, stdout %q, stderr %q; want exit %d, stdout starting %q",
				strings.Join(st.args, " "), code, stdout.String(), stderr.String(), st.code, st.out)
		}
	}
}
