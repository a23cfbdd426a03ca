// Package stages holds the four actors of a ringlog pipeline: Allocator,
// Writer, Committer and Collector. Each runs as one goroutine (Run) and
// talks to the others only through typed channels; the only values they
// publish outside the channels are atomics for observers (Published).
//
//	Append/Reserve ─▶ Allocator ─Item─▶ Writer ─Completion─▶ Committer ─▶ caller
//	                     ▲                                        │ wal tx {tail}, one sync per group
//	                     └──── freed head ◀── Collector ◀── durable tail
//
// Package pipeline wires them together; each stage can also be driven on
// its own by feeding its channels, which is how the tests here use them.
package stages
