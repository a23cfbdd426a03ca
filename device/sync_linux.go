package device

import (
	"errors"
	"os"
	"syscall"
)

// fdatasync flushes data and the metadata needed to read it back, skipping
// timestamps: on an overwrite-only log that halves the cost of a flush. It
// holds the descriptor through the call, so a Close racing it cannot let
// the number name another file by the time the flush runs.
func fdatasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return syncError(f, err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			if serr = syscall.Fdatasync(int(fd)); serr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return syncError(f, err)
	}
	if serr != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: serr}
	}
	return nil
}

func syncError(f *os.File, err error) error {
	if errors.Is(err, os.ErrClosed) {
		return ErrClosed
	}
	return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
}
