// Command kvstore is a small persistent key-value store on a ringlog (see
// package kv): every put and del is durable when the command returns, and
// the log reclaims overwritten and deleted values by itself.
//
//	go run ./examples/kvstore put greeting hello
//	go run ./examples/kvstore get greeting      # prints hello
//	go run ./examples/kvstore del greeting
//	go run ./examples/kvstore keys
//	go run ./examples/kvstore stats
//
// The store lives in the file named by -db; without -db it is
// ringlog-kvstore.db in os.TempDir() (usually /tmp). A missing file is
// created with -size bytes and formatted; an existing one keeps its size,
// and is opened and its index rebuilt by scanning the log. One kvstore at a
// time uses a store: others wait for its lock on the file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/examples/kvstore/kv"
	"github.com/ringlog/ringlog/pipeline"
)

const usage = `usage: kvstore [-db FILE] [-size BYTES] COMMAND

commands:
  put KEY VALUE   set KEY to VALUE (durable when the command returns)
  get KEY         print KEY's value; exit status 1 if it has none
  del KEY         delete KEY
  keys            list the keys that have a value
  stats           show the store's and the log's counters

flags:
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kvstore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := fs.String("db", filepath.Join(os.TempDir(), "ringlog-kvstore.db"), "the store's file")
	size := fs.Int64("size", 64<<20, "size in bytes of a new store's file")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cmd := fs.Args()
	want := map[string]int{"put": 3, "get": 2, "del": 2, "keys": 1, "stats": 1}
	if len(cmd) == 0 || want[cmd[0]] != len(cmd) {
		fs.Usage()
		return 2
	}
	err := withStore(*db, *size, func(s *kv.Store) error { return do(s, cmd, stdout) })
	switch {
	case errors.Is(err, kv.ErrNotFound):
		fmt.Fprintf(stderr, "kvstore: %s: not found\n", cmd[1])
		return 1
	case err != nil:
		fmt.Fprintln(stderr, "kvstore:", err)
		return 1
	}
	return 0
}

// withStore opens (creating and formatting if needed) the store in path,
// calls fn, and closes it. Only one process may use a store at a time (two
// logs on one file would overwrite each other's records), so it holds an
// exclusive lock on the file throughout; a second kvstore waits for it.
func withStore(path string, size int64, fn func(*kv.Store) error) (err error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if err := create(path, size); err != nil {
			return err
		}
	}
	lock, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer lock.Close() // and with it the lock
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", path, err)
	}
	dev, err := device.OpenFile(path, device.FileOptions{}) // its own size
	if err != nil {
		return err
	}
	defer func() {
		if cerr := dev.Close(); err == nil {
			err = cerr
		}
	}()
	s, err := kv.Open(dev, pipeline.Config{})
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer func() {
		if cerr := s.Close(); err == nil {
			err = cerr
		}
	}()
	return fn(s)
}

// create makes a store of size bytes in path: formatted in a file of its
// own, then linked to path, so that path never names a store half
// formatted (a kvstore killed while formatting leaves only the temporary
// file), and, when two kvstores create it at once, one store wins and the
// other kvstore uses it.
func create(path string, size int64) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".new-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	tmp.Close()
	defer os.Remove(name)
	dev, err := device.OpenFile(name, device.FileOptions{Size: size})
	if err != nil {
		return err
	}
	err = kv.Format(dev, pipeline.Config{}) // syncs
	if cerr := dev.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Link(name, path); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	// The new name must survive a power cut as well as the bytes.
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}

func do(s *kv.Store, cmd []string, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch cmd[0] {
	case "put":
		return s.Put(ctx, cmd[1], []byte(cmd[2]))
	case "get":
		v, err := s.Get(cmd[1])
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", v)
		return err
	case "del":
		return s.Delete(ctx, cmd[1])
	case "keys":
		for _, k := range s.Keys() {
			if _, err := fmt.Fprintln(stdout, k); err != nil {
				return err
			}
		}
		return nil
	case "stats":
		st := s.Stats()
		l := st.Log
		_, err := fmt.Fprintf(stdout, "keys %d\ntombstones %d\nlog capacity %d bytes, used %d, free %d\nlog head %d, tail %d, durable %d\nepoch %d\n",
			st.Keys, st.Tombstones, l.Capacity, l.Used, l.Free, l.Head, l.Tail, l.Durable, l.Epoch)
		return err
	}
	return fmt.Errorf("unknown command %q", cmd[0])
}
