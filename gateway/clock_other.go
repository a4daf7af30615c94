//go:build !linux

package gateway

func kernelSynced() bool { return true }
