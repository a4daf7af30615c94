package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-iot/outpost/internal/provision"
)

// TestArmBuildsRunUnderQEMU builds the gateway the way make cross does
// (CGO off, -trimpath, version stamped) for the Pi Zero/1 (armv6) and for
// 64-bit images (arm64), checks that flash prepare would accept each for
// its image, and runs `outpost-gateway version` under qemu user-mode
// emulation (Debian's qemu-user-static; scripts/deps.sh installs it).
func TestArmBuildsRunUnderQEMU(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-builds the gateway: not in -short")
	}
	const version = "9.8.7-qemu"
	for _, tc := range []struct {
		arch provision.Arch
		qemu []string
		want string
	}{
		{provision.ARMv6, []string{"qemu-arm-static", "qemu-arm"}, "linux/arm)"},
		{provision.ARM64, []string{"qemu-aarch64-static", "qemu-aarch64"}, "linux/arm64)"},
	} {
		t.Run(string(tc.arch), func(t *testing.T) {
			var qemu string
			for _, q := range tc.qemu {
				if p, err := exec.LookPath(q); err == nil {
					qemu = p
					break
				}
			}
			if qemu == "" {
				t.Skipf("%s not installed (Debian: qemu-user-static; scripts/deps.sh installs it)", tc.qemu[0])
			}
			bin := filepath.Join(t.TempDir(), tc.arch.DistName())
			build := exec.Command("go", "build", "-trimpath", "-ldflags",
				"-s -w -buildid= -X github.com/outpost-iot/outpost/internal/buildinfo.Version="+version, "-o", bin, ".")
			build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+tc.arch.GOARCH(), "GOARM="+tc.arch.GOARM())
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("go build: %v\n%s", err, out)
			}
			if err := provision.CheckBinary(bin, tc.arch); err != nil {
				t.Errorf("flash prepare would refuse make cross's build: %v", err)
			}
			out, err := exec.Command(qemu, bin, "version").CombinedOutput()
			if err != nil {
				t.Fatalf("%s %s version: %v\n%s", filepath.Base(qemu), filepath.Base(bin), err, out)
			}
			got := strings.TrimSpace(string(out))
			if !strings.HasPrefix(got, "outpost-gateway "+version+" (go") || !strings.HasSuffix(got, tc.want) {
				t.Errorf("version under qemu: %q", got)
			}
		})
	}
}
