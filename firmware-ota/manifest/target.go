package manifest

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxBoardLen bounds Target.Board.
const MaxBoardLen = 128

// ErrTargetMismatch is wrapped by CheckTarget errors.
var ErrTargetMismatch = errors.New("target mismatch")

// Target says where an artifact runs.
type Target struct {
	OS   string `json:"os"`   // GOOS, e.g. "linux"
	Arch string `json:"arch"` // GOARCH, e.g. "arm", "arm64"
	// Variant is optional. For Arch "arm" it is "armv5", "armv6" or "armv7"
	// (the GOARM the artifact was built with) and an artifact runs on a
	// host of that level or above: armv6 code runs on an armv7 host. For
	// any other Arch it is compared exactly (e.g. GOAMD64 "v3").
	Variant string `json:"variant,omitempty"`
	// Board is optional: a board model as in /proc/device-tree/model, such
	// as "Raspberry Pi 4". It matches a host model that is equal to it or
	// starts with it followed by a space ("Raspberry Pi 4 Model B Rev 1.4"
	// but not "Raspberry Pi 400 Rev 1.0").
	Board string `json:"board,omitempty"`
}

// String returns os/arch[/variant][ (board)].
func (t Target) String() string {
	s := t.OS + "/" + t.Arch
	if t.Variant != "" {
		s += "/" + t.Variant
	}
	if t.Board != "" {
		s += " (" + t.Board + ")"
	}
	return s
}

// Validate reports the first problem with t.
func (t Target) Validate() error {
	if err := goName("target.os", t.OS); err != nil {
		return err
	}
	if err := goName("target.arch", t.Arch); err != nil {
		return err
	}
	if t.Variant != "" {
		if t.Arch == "arm" {
			if _, ok := armLevel(t.Variant); !ok {
				return fmt.Errorf("manifest: %w: target.variant %q: for arch arm want armv5, armv6 or armv7", ErrMalformed, t.Variant)
			}
		} else if len(t.Variant) > 16 || !isLowerAlnum(t.Variant, ".") {
			return fmt.Errorf("manifest: %w: target.variant %q: want up to 16 characters [a-z0-9.]", ErrMalformed, t.Variant)
		}
	}
	if t.Board != "" {
		if len(t.Board) > MaxBoardLen || !utf8.ValidString(t.Board) || strings.TrimSpace(t.Board) != t.Board {
			return fmt.Errorf("manifest: %w: target.board %q: want at most %d bytes of UTF-8 without surrounding space", ErrMalformed, t.Board, MaxBoardLen)
		}
		for _, r := range t.Board {
			if !unicode.IsPrint(r) {
				return fmt.Errorf("manifest: %w: target.board %q: unprintable character %U", ErrMalformed, t.Board, r)
			}
		}
	}
	return nil
}

func goName(field, s string) error {
	if s == "" || len(s) > 16 || !isLowerAlnum(s, "") {
		return fmt.Errorf("manifest: %w: %s %q: want 1 to 16 characters [a-z0-9]", ErrMalformed, field, s)
	}
	return nil
}

func isLowerAlnum(s, extra string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte(extra, c) >= 0) {
			return false
		}
	}
	return true
}

// armLevel parses "armv5", "armv6", "armv7".
func armLevel(v string) (int, bool) {
	switch v {
	case "armv5":
		return 5, true
	case "armv6":
		return 6, true
	case "armv7":
		return 7, true
	}
	return 0, false
}

// TargetMatches reports whether an artifact built for t runs on host, as
// described by HostTarget. See CheckTarget.
func TargetMatches(t, host Target) bool {
	return CheckTarget(t, host) == nil
}

// CheckTarget returns nil if an artifact built for t runs on host, and
// otherwise an error wrapping ErrTargetMismatch that says why. OS and Arch
// must be equal; an empty Variant or Board in t matches any host; for arm,
// an armvN artifact runs on a host of level N or above, and a host of
// unknown level runs only artifacts without a variant.
func CheckTarget(t, host Target) error {
	mismatch := func(what string) error {
		return fmt.Errorf("manifest: %w: artifact is for %s, host is %s: %s", ErrTargetMismatch, t, host, what)
	}
	if t.OS != host.OS || t.Arch != host.Arch {
		return mismatch("different OS or architecture")
	}
	if t.Variant != "" {
		if t.Arch == "arm" {
			need, _ := armLevel(t.Variant)
			have, ok := armLevel(host.Variant)
			if !ok || have < need {
				return mismatch("needs " + t.Variant)
			}
		} else if t.Variant != host.Variant {
			return mismatch("different variant")
		}
	}
	if t.Board != "" && host.Board != t.Board && !strings.HasPrefix(host.Board, t.Board+" ") {
		return mismatch("different board")
	}
	return nil
}

// HostTarget describes the running program: runtime.GOOS and
// runtime.GOARCH, the GOARM it was built with as Variant "armvN" (arm
// only), and board (trimmed of spaces and NULs, as read from
// /proc/device-tree/model). The running gateway's own GOARM stands in for
// the CPU's level: an armv6 build may be running on an armv7 CPU, so a
// device may be offered less than it could run, never more.
func HostTarget(board string) Target {
	t := Target{
		OS:    runtime.GOOS,
		Arch:  runtime.GOARCH,
		Board: strings.Trim(board, " \t\r\n\x00"),
	}
	if t.Arch == "arm" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "GOARM" && s.Value != "" && s.Value[0] >= '5' && s.Value[0] <= '7' {
					t.Variant = "armv" + s.Value[:1] // "7" or "7,softfloat"
				}
			}
		}
	}
	return t
}
