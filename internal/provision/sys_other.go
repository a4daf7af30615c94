//go:build !linux

package provision

import "os"

func devNumber(string) string { return "" }

// Exclusive is O_EXCL for block devices on Linux; nothing elsewhere.
const Exclusive = 0

// dropCache syncs f; on macOS the raw device (/dev/rdiskN) is not cached.
func dropCache(f *os.File) error { return f.Sync() }
