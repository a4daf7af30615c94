// Package buildinfo carries the version stamped in at link time
// (-ldflags "-X github.com/outpost-iot/outpost/internal/buildinfo.Version=1.2.3").
package buildinfo

import (
	"fmt"
	"runtime"
)

// Version is set by the linker; "dev" for plain go builds.
var Version = "dev"

// String is the line each binary's version subcommand prints.
func String(binary string) string {
	return fmt.Sprintf("%s %s (%s, %s/%s)", binary, Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
