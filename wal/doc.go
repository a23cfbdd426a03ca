// Package wal is ringlog's write-ahead journal: it makes a set of writes at
// arbitrary offsets of a device atomic and durable.
//
// A Journal owns a region of a device (Format, Open). A caller starts a
// transaction with Begin, adds writes with Tx.Write, and calls Commit, which
// returns once the whole transaction is durable: after any crash and Open,
// either every write of a committed transaction is at its home offset, or
// (for a transaction whose Commit did not return nil) none or all of them
// are — never a part.
//
// Ordering: transactions take effect in the order of Begin. A transaction
// begun later is never clobbered by one begun earlier, even when its Commit
// is called first (it waits for the earlier one). Every Tx must therefore be
// committed or discarded (Tx.Discard); a Commit whose context ends before
// its transaction was written counts as a discard.
//
// Group commit: one goroutine takes every transaction that is ready in
// order, writes them as one checksummed, sequenced batch, and makes it
// durable with a single fdatasync; while that sync is in flight the next
// group gathers. Then it applies the writes to their home offsets (visible to
// readers of the device when Commit returns) and releases the waiters. Home
// writes become durable lazily: when the journal region is full, a
// checkpoint syncs the device and starts a new generation of the journal
// header, which is the only time the journal costs more syncs (two).
//
// Sync barriers: a transaction with no writes commits like any other, in
// its turn, but adds nothing to the batch; a group made only of such
// transactions writes nothing and is one fdatasync. A caller that wrote
// data elsewhere on the device learns through one that the data is durable,
// ordered after every transaction begun before it. Journal.Sync is the same
// barrier run in the caller's goroutine, for a caller whose earlier
// transactions are all acknowledged: it skips the hand-offs to the journal's
// goroutine and back, and if it fails the journal fails with it.
//
// Failure: a failed write or sync fails every waiting Commit with that
// error, and every later Commit with ErrFailed, until the journal is
// reopened. A failed fdatasync is never retried: on Linux the dirty pages it
// was flushing may already be gone.
//
// Home writes are applied with read-modify-write of whole device blocks, so
// the blocks a transaction writes must not be written outside the journal.
package wal
