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
// created with -size bytes and formatted; an existing one is opened and its
// index rebuilt by scanning the log.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
// calls fn, and closes it.
func withStore(path string, size int64, fn func(*kv.Store) error) (err error) {
	_, statErr := os.Stat(path)
	fresh := errors.Is(statErr, os.ErrNotExist)
	dev, err := device.OpenFile(path, device.FileOptions{Size: size})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := dev.Close(); err == nil {
			err = cerr
		}
	}()
	if fresh {
		if err := kv.Format(dev, pipeline.Config{}); err != nil {
			os.Remove(path)
			return err
		}
	}
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
