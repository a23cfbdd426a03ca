package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
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

// kvstore runs one invocation and returns its exit status and output.
func kvstore(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestCLIConcurrent runs kvstores at once on one new file, as two shells
// would: they create the store once between them, take turns with it, and
// every put that exited 0 is there afterwards.
func TestCLIConcurrent(t *testing.T) {
	db := filepath.Join(t.TempDir(), "kv.db")
	const runners, puts = 4, 10
	var wg sync.WaitGroup
	for r := range runners {
		wg.Go(func() {
			for i := range puts {
				key := fmt.Sprintf("r%d-%d", r, i)
				if code, _, stderr := kvstore("-db", db, "-size", "1048576", "put", key, "v"); code != 0 {
					t.Errorf("put %s: exit %d: %s", key, code, stderr)
				}
			}
		})
	}
	wg.Wait()
	code, out, stderr := kvstore("-db", db, "keys")
	if code != 0 {
		t.Fatalf("keys: exit %d: %s", code, stderr)
	}
	if n := len(strings.Fields(out)); n != runners*puts {
		t.Fatalf("%d keys after %d puts that exited 0:\n%s", n, runners*puts, out)
	}
	left, _ := filepath.Glob(db + ".new-*")
	if len(left) > 0 {
		t.Fatalf("temporary files left behind: %v", left)
	}
}

// TestCLIExistingSize: -size applies to a new store only; an existing one
// opens with its own size, whatever -size says.
func TestCLIExistingSize(t *testing.T) {
	db := filepath.Join(t.TempDir(), "kv.db")
	if code, _, stderr := kvstore("-db", db, "-size", "1048576", "put", "k", "v"); code != 0 {
		t.Fatalf("put: exit %d: %s", code, stderr)
	}
	for _, size := range []string{"65536", "134217728"} {
		if code, out, stderr := kvstore("-db", db, "-size", size, "get", "k"); code != 0 || out != "v\n" {
			t.Fatalf("get with -size %s: exit %d, %q: %s", size, code, out, stderr)
		}
	}
	if fi, err := os.Stat(db); err != nil || fi.Size() != 1<<20 {
		t.Fatalf("store file: %v, %v; want 1 MiB", fi, err)
	}
}
