package stages

import "errors"

// The typed errors of a log; package pipeline re-exports them.
var (
	ErrNoSpace    = errors.New("ringlog: no space in the log")
	ErrClosed     = errors.New("ringlog: log closed")
	ErrCorrupt    = errors.New("ringlog: corrupt data")
	ErrCollected  = errors.New("ringlog: position already collected")
	ErrTooLarge   = errors.New("ringlog: record too large for the log")
	ErrBadFormat  = errors.New("ringlog: not a ringlog region of this version")
	ErrFailed     = errors.New("ringlog: log failed after an I/O error; reopen it")
	ErrNotFound   = errors.New("ringlog: no durable record at that position")
	ErrBadSize    = errors.New("ringlog: size must be positive")
	ErrBadConfig  = errors.New("ringlog: configuration does not fit the device")
	ErrUnreadable = errors.New("ringlog: part of the log cannot be read")
)
