package pipeline

import "github.com/ringlog/ringlog/stages"

// Errors returned by the log; test them with errors.Is.
var (
	// ErrNoSpace: the log stayed full until the caller's context ended. The
	// error also wraps the context's error.
	ErrNoSpace = stages.ErrNoSpace
	// ErrClosed: the log was closed before or during the call.
	ErrClosed = stages.ErrClosed
	// ErrCorrupt: a record or structure failed its checksum.
	ErrCorrupt = stages.ErrCorrupt
	// ErrCollected: the position is below the head; its record was reclaimed.
	ErrCollected = stages.ErrCollected
	// ErrTooLarge: the record can never fit in this log.
	ErrTooLarge = stages.ErrTooLarge
	// ErrBadFormat: the device region is not a ringlog of this format
	// version; the message says what is wrong.
	ErrBadFormat = stages.ErrBadFormat
	// ErrFailed: a write or sync failed; the log refuses writes until it is
	// reopened.
	ErrFailed = stages.ErrFailed
	// ErrNotFound: no durable record starts at that position.
	ErrNotFound = stages.ErrNotFound
	// ErrBadSize: Reserve of zero or negative bytes.
	ErrBadSize = stages.ErrBadSize
	// ErrBadConfig: the Config does not fit the device or disagrees with the
	// formatted region.
	ErrBadConfig = stages.ErrBadConfig
	// ErrUnreadable: Open could not read a frame it must verify, past the
	// tail last known to be synced (an I/O error, not a failed check). It
	// cannot tell whether the frame was acknowledged, so it opens nothing;
	// retrying may work if the error was transient.
	// Config.TruncateUnreadable opens the log anyway, ending it there.
	ErrUnreadable = stages.ErrUnreadable
)
