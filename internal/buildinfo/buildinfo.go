// Package buildinfo carries what is stamped in at link time
// (-ldflags "-X github.com/outpost-iot/outpost/internal/buildinfo.Version=1.2.3").
package buildinfo

import (
	"fmt"
	"runtime"
)

// Version is set by the linker; "dev" for plain go builds.
var Version = "dev"

// ReleasePubKey optionally compiles release public keys into the gateway:
// trusted for OTA updates in addition to the configured release_pubkey.
// It holds one or more keys separated by commas, each the standard base64
// of either the raw 32-byte Ed25519 key or its PKIX DER form (the base64
// line between the PEM markers of release.pub), e.g.
//
//	-X github.com/outpost-iot/outpost/internal/buildinfo.ReleasePubKey=MCowBQYDK2VwAyEA...
var ReleasePubKey = ""

// TestFault makes a build misbehave on purpose, for end-to-end tests of
// the OTA rollback only; never set it for a release. outpost-gateway
// honours "crash-at-start" (the worker exits with status 2 before doing
// anything) and "unhealthy" (the worker runs but never reports an update
// healthy, so the health timeout rolls it back).
var TestFault = ""

// String is the line each binary's version subcommand prints.
func String(binary string) string {
	s := fmt.Sprintf("%s %s (%s, %s/%s)", binary, Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if TestFault != "" {
		s += " [test fault: " + TestFault + "]"
	}
	return s
}
