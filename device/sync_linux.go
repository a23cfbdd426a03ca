package device

import (
	"os"
	"syscall"
)

// fdatasync flushes data and the metadata needed to read it back, skipping
// timestamps: on an overwrite-only log that halves the cost of a flush.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}
