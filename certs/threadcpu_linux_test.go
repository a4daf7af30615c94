package certs

import (
	"syscall"
	"time"
)

// rusageThread is RUSAGE_THREAD (Linux ≥ 2.6.26), absent from package syscall.
const rusageThread = 1

// threadCPU returns the user+system CPU time of the calling OS thread; the
// caller must be locked to its thread.
func threadCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
