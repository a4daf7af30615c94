package provision

import (
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Board is a Raspberry Pi model, as --board names it.
type Board string

// Boards.
const (
	BoardAuto Board = "auto" // whatever the image boots on
	Pi0       Board = "pi0"  // Zero, Zero W (BCM2835, ARMv6)
	Pi1       Board = "pi1"  // 1 A/B/A+/B+ (BCM2835, ARMv6)
	Pi2       Board = "pi2"  // 2 B (BCM2836, ARMv7)
	Pi3       Board = "pi3"  // 3 B/B+/A+ (BCM2837, ARMv8)
	Zero2     Board = "zero2"
	Pi4       Board = "pi4" // 4 B, 400, CM4 (BCM2711)
	Pi5       Board = "pi5" // 5, 500, CM5 (BCM2712)
)

// Boards lists every Board.
var Boards = []Board{BoardAuto, Pi0, Pi1, Pi2, Pi3, Zero2, Pi4, Pi5}

// ParseBoard checks a --board value.
func ParseBoard(s string) (Board, error) {
	b := Board(strings.ToLower(strings.TrimSpace(s)))
	if b == "" {
		return BoardAuto, nil
	}
	if !slices.Contains(Boards, b) {
		names := make([]string, len(Boards))
		for i, x := range Boards {
			names[i] = string(x)
		}
		return "", fmt.Errorf("board %q: want one of %s", s, strings.Join(names, ", "))
	}
	return b, nil
}

// Arch is a gateway build, named like make cross's dist/ files.
type Arch string

// Arches.
const (
	ARMv6 Arch = "armv6" // GOARCH=arm GOARM=6: every Pi on a 32-bit image
	ARMv7 Arch = "armv7" // GOARCH=arm GOARM=7: Pi 2 and later on a 32-bit image
	ARM64 Arch = "arm64" // GOARCH=arm64: 64-bit images
)

// GOARCH is the Go architecture of the build.
func (a Arch) GOARCH() string {
	if a == ARM64 {
		return "arm64"
	}
	return "arm"
}

// GOARM is the GOARM of the build ("" for arm64).
func (a Arch) GOARM() string {
	switch a {
	case ARMv6:
		return "6"
	case ARMv7:
		return "7"
	}
	return ""
}

// DistName is the file make cross writes for a.
func (a Arch) DistName() string { return "outpost-gateway_linux_" + string(a) }

// Image is what the boot partition tells about a Raspberry Pi OS image.
type Image struct {
	Bits     int      // 32 (armhf user space) or 64 (arm64)
	Kernels  []string // kernel*.img found
	Evidence string   // why Bits is what it is, for messages
}

var (
	kernels32 = []string{"kernel.img", "kernel7.img", "kernel7l.img"}
	kernels64 = []string{"kernel8.img", "kernel_2712.img", "kernel8_2712.img"}
)

// DetectImage recognises a Raspberry Pi OS boot partition from the names in
// its root directory and its config.txt, and tells its user space's width.
//
// Recognised: config.txt and cmdline.txt, at least one kernel*.img, and
// firmware or device trees (start*.elf, bootcode.bin or bcm27*.dtb).
// Architecture: a 32-bit (armhf) image ships the 32-bit kernels
// (kernel.img, kernel7.img, kernel7l.img) — Bookworm's also carries
// kernel8.img for Pi 4/5, still with 32-bit user space — while a 64-bit
// image ships only kernel8.img / kernel_2712.img and sets arm_64bit=1.
func DetectImage(names []string, configTxt string) (Image, error) {
	has := map[string]bool{}
	var kernels []string
	firmware := false
	for _, n := range names {
		l := strings.ToLower(n)
		has[l] = true
		if m, _ := path.Match("kernel*.img", l); m {
			kernels = append(kernels, l)
		}
		if m, _ := path.Match("start*.elf", l); m || l == "bootcode.bin" {
			firmware = true
		}
		if m, _ := path.Match("bcm27*.dtb", l); m {
			firmware = true
		}
	}
	slices.Sort(kernels)
	var missing []string
	for _, n := range []string{"config.txt", "cmdline.txt"} {
		if !has[n] {
			missing = append(missing, n)
		}
	}
	if len(kernels) == 0 {
		missing = append(missing, "kernel*.img")
	}
	if !firmware {
		missing = append(missing, "start*.elf/bootcode.bin/bcm27*.dtb")
	}
	if len(missing) > 0 {
		return Image{}, fmt.Errorf("%w: the FAT partition has no %s", ErrNotRaspberryPiOS, strings.Join(missing, ", "))
	}
	img := Image{Kernels: kernels}
	var k32, k64 []string
	for _, k := range kernels {
		if slices.Contains(kernels32, k) {
			k32 = append(k32, k)
		}
		if slices.Contains(kernels64, k) {
			k64 = append(k64, k)
		}
	}
	arm64 := configValue(configTxt, "arm_64bit") == "1"
	switch {
	case len(k32) > 0:
		img.Bits, img.Evidence = 32, "32-bit kernels "+strings.Join(k32, ", ")
	case len(k64) > 0:
		img.Bits, img.Evidence = 64, "only 64-bit kernels ("+strings.Join(k64, ", ")+")"
		if arm64 {
			img.Evidence += " and arm_64bit=1"
		}
	default:
		return Image{}, fmt.Errorf("%w: cannot tell 32- from 64-bit: unknown kernels %s", ErrNotRaspberryPiOS, strings.Join(kernels, ", "))
	}
	return img, nil
}

// configValue is the last global value of key in config.txt ("" if unset).
func configValue(text, key string) string {
	v := ""
	forEachGlobal(text, func(_ int, line string) {
		if k, val, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == key {
			v = strings.TrimSpace(val)
		}
	})
	return v
}

// ChooseArch picks the gateway build for board on img. note explains a
// choice the operator may want to change.
func ChooseArch(board Board, img Image) (a Arch, note string, err error) {
	if img.Bits == 64 {
		switch board {
		case Pi0, Pi1:
			return "", "", fmt.Errorf("a 64-bit image does not boot on a %s (ARMv6): use Raspberry Pi OS (32-bit)", boardName(board))
		case Pi2:
			return "", "", errors.New("a 64-bit image boots only on the Pi 2 v1.2: use Raspberry Pi OS (32-bit), or --board pi3 if it is a v1.2")
		}
		return ARM64, "", nil
	}
	switch board {
	case BoardAuto:
		return ARMv6, "32-bit image: the armv6 build runs on every Pi; --board pi2|pi3|zero2|pi4|pi5 installs the faster armv7 build", nil
	case Pi0, Pi1:
		return ARMv6, "", nil
	}
	return ARMv7, "", nil
}

func boardName(b Board) string {
	switch b {
	case Pi0:
		return "Pi Zero"
	case Pi1:
		return "Pi 1"
	}
	return string(b)
}

// FindBinary resolves --binary: a file is taken as it is, a directory is
// searched for make cross's file for a (dist/outpost-gateway_linux_armv6 …).
func FindBinary(fileOrDir string, a Arch) (string, error) {
	st, err := os.Stat(fileOrDir)
	if err != nil {
		return "", fmt.Errorf("gateway binary: %w (build them with make cross, or pass --binary)", err)
	}
	if !st.IsDir() {
		return fileOrDir, nil
	}
	p := filepath.Join(fileOrDir, a.DistName())
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("gateway binary: no %s in %s (build it with make cross, or pass --binary FILE)", a.DistName(), fileOrDir)
	}
	return p, nil
}

// CheckBinary makes sure the file at p is an outpost-gateway built for a:
// a Linux ELF for the right machine, and a Go build whose GOARCH and GOARM
// match (an armv7 build would crash with SIGILL on a Pi Zero).
func CheckBinary(p string, a Arch) error {
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("gateway binary %s: not a Linux executable: %w", p, err)
	}
	machine := f.Machine
	f.Close()
	want := elf.EM_ARM
	if a == ARM64 {
		want = elf.EM_AARCH64
	}
	if machine != want {
		return fmt.Errorf("gateway binary %s is for %s, the image needs %s (%s)", p, machine, want, a.DistName())
	}
	bi, err := buildinfo.ReadFile(p)
	if err != nil {
		return fmt.Errorf("gateway binary %s: not a Go build: %w", p, err)
	}
	if path.Base(bi.Path) != "outpost-gateway" {
		return fmt.Errorf("gateway binary %s is %s, not outpost-gateway", p, bi.Path)
	}
	set := map[string]string{}
	for _, s := range bi.Settings {
		set[s.Key] = s.Value
	}
	if set["GOOS"] != "linux" || set["GOARCH"] != a.GOARCH() {
		return fmt.Errorf("gateway binary %s is built for %s/%s, the image needs linux/%s", p, set["GOOS"], set["GOARCH"], a.GOARCH())
	}
	if a.GOARCH() == "arm" {
		goarm := strings.SplitN(set["GOARM"], ",", 2)[0]
		if goarm == "" {
			goarm = "7" // the toolchain's default
		}
		if goarm > a.GOARM() {
			return fmt.Errorf("gateway binary %s is built with GOARM=%s: it would not run on an ARMv%s board (%s)", p, goarm, a.GOARM(), a.DistName())
		}
	}
	return nil
}
