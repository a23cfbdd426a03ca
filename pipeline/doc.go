// Package pipeline is ringlog's public API: a crash-safe circular log on a
// device.Device.
//
//	dev, _ := device.OpenFile("/var/lib/app/log", device.FileOptions{Size: 1 << 30})
//	_ = pipeline.Format(dev, pipeline.Config{})
//	log, _ := pipeline.Open(dev, pipeline.Config{Checker: myChecker})
//	pos, err := log.Append(ctx, []byte("hello")) // durable when err == nil
//
// Append returns once the record is durable; many concurrent Appends share
// one fdatasync (group commit). Records are read back verified (Read, Scan).
// Space is reclaimed at the head when the Config's GarbageChecker says the
// oldest records are garbage; the log wraps around at the end of its region.
//
// Guarantees, after any crash followed by Open: every Append or
// Reservation.Commit that returned nil is readable and byte-identical until
// the collector has been told it is garbage; Scan yields only whole,
// checksum-valid records in position order; Read below the head returns
// ErrCollected. After a failed write or sync the log refuses writes
// (ErrFailed) until it is reopened: a failed fsync is never retried.
//
// Assumptions about the device, as docs/FORMAT.md details: a sector write
// may tear (each 512-byte sector of an interrupted write holds its old or
// its new bytes), a write never damages bytes outside its range, fdatasync
// is honest, and after a failed fdatasync the unsynced data may be gone.
package pipeline
