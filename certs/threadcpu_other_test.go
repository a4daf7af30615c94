//go:build !linux

package certs

import "time"

// threadCPU is not available here; BenchmarkHandshake then reports ns/op only.
func threadCPU() (time.Duration, bool) { return 0, false }
