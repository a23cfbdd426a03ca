package device_test

import (
	"fmt"
	"math/rand/v2"

	"github.com/ringlog/ringlog/device"
)

// Crash shows what a power cut could leave: synced data always, each
// unsynced write whole, not at all, or torn at a sector boundary.
func ExampleCrash() {
	dev := device.NewCrash(4096)
	dev.WriteAt([]byte("synced"), 0)
	dev.Sync()
	dev.WriteAt(make([]byte, 1024), 1024) // two sectors, not synced

	fmt.Println("outcomes per unsynced write:", dev.Choices())
	n := 0
	dev.Enumerate(func(choice []int, img []byte) bool {
		n++
		return true
	})
	img := dev.Image(rand.New(rand.NewPCG(1, 2)))
	fmt.Printf("%d images, each starting with %q\n", n, img[:6])
	// Output:
	// outcomes per unsynced write: [3]
	// 3 images, each starting with "synced"
}

// Faulty fails chosen operations; a failed sync drops unsynced writes, as
// Linux does.
func ExampleFaulty() {
	mem := device.NewMem(4096)
	dev := device.NewFaulty(mem, device.Fault{Op: device.OpSync, N: 1, Err: device.EIO})
	dev.WriteAt([]byte("lost"), 0)
	err := dev.Sync()
	buf := make([]byte, 4)
	mem.ReadAt(buf, 0)
	fmt.Println(err, buf)
	// Output: device: injected sync failure: input/output error [0 0 0 0]
}
