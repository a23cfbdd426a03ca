package pipeline

// Stats is a snapshot of a log's positions and counters.
type Stats struct {
	Head     Position // oldest byte still in the log
	Tail     Position // next position the allocator hands out
	Durable  Position // everything below is durable
	Capacity int64    // bytes of the data area
	Used     int64    // Tail - Head, padding included
	Free     int64    // Capacity - Used

	Appends       uint64 // records made durable since Open (appends and reservations)
	Groups        uint64 // group commits, one fdatasync each
	Bytes         uint64 // bytes of the data area made durable since Open
	Parked        uint64 // requests that had to wait for space
	Padding       uint64 // bytes of padding written
	Writes        uint64 // data writes issued
	CollectPasses uint64
	Collected     uint64 // records reclaimed
	JournalSyncs  uint64 // fdatasyncs by the journal (all of the log's)
	Epoch         uint32 // incremented by every Open
	// TruncatedBytes is how far the journal's tail bound ran past the last
	// valid frame Open found: bytes never acknowledged, or never written,
	// since the bound runs ahead of the data (0 after a clean Close).
	TruncatedBytes uint64
}

// Stats returns a snapshot of the log's state. Fields are read one by one, so
// a snapshot taken under load is approximate.
func (l *Log) Stats() Stats {
	head, tail, durable := l.pub.Head.Load(), l.pub.Tail.Load(), l.pub.Durable.Load()
	used := int64(tail - head)
	return Stats{
		Head: Position(head), Tail: Position(tail), Durable: Position(durable),
		Capacity: l.geo.DataSize, Used: used, Free: l.geo.DataSize - used,
		Appends: l.pub.Appends.Load(), Groups: l.pub.Groups.Load(), Bytes: l.pub.Bytes.Load(),
		Parked: l.pub.Parked.Load(), Padding: l.pub.Padding.Load(), Writes: l.pub.Writes.Load(),
		CollectPasses: l.pub.Passes.Load(), Collected: l.pub.Collected.Load(),
		JournalSyncs: l.j.Stats().Syncs, Epoch: l.epoch, TruncatedBytes: l.truncated,
	}
}
