// Package fuzz is ringlog's crash checker. It runs histories of operations
// on a device.Crash — appends of random sizes from several goroutines, some
// with a context that has already ended (racing their own placement),
// reservations committed out of order or discarded, collections with a
// garbage checker, the log filling up (appends waiting for space) and
// wrapping, reads and scans, reopens and reboots, sometimes one write or
// sync failing while the disk goes on — cuts the power after a chosen
// number of writes and syncs (inside a group commit, a journal checkpoint,
// a padding marker's write, recovery itself),
// takes the images the cut could leave (each unsynced write dropped, kept or
// torn at a 512-byte sector), opens them again and checks the guarantees of
// the README and docs/FORMAT.md:
//
//   - every acknowledged record the garbage checker never released is there,
//     byte-identical, at the position Append or Reserve gave it;
//   - Scan yields only whole, checksum-valid records, in position order, each
//     one appended (payloads carry unique ids), none twice, none discarded,
//     none whose Append returned its context's error, none dropped by an
//     earlier recovery, and a record whose call returned before
//     another's began lies below it; Read below the head says ErrCollected;
//   - head <= durable tail == tail after Open, and the frames from head to
//     durable tail, read straight from the device, tile the data area with
//     valid checksums and older epochs, padding markers included;
//   - the log takes an Append after recovery; recovering again (after Close
//     and another crash image) gives the same log, and so does recovering
//     from a power cut inside recovery;
//   - nothing outside the log's region changes; a log whose disk failed a
//     write or sync refuses writes until reopened, without hanging, and
//     loses nothing it acknowledged; while the history runs, Read and Scan
//     return only what was appended, and nothing hangs.
//
// The journal (package wal) has a checker of its own: after any crash its
// home region is the effect of a prefix, in Begin order, of the transactions
// that holds every acknowledged one.
//
// Explore runs a seeded exploration (histories, cut points and crash images
// come from the seed; only goroutine interleavings do not), which
// fuzz/cmd/crashtest drives; the native fuzz targets decode histories and
// crash choices from their input instead, and FuzzOpenCorrupt feeds Open
// corrupted logs. testhooks plants known bugs to show that the checks bite
// (planted_test.go).
package fuzz
