package manifest

import (
	"errors"
	"runtime"
	"strings"
	"testing"
)

func TestTargetMatches(t *testing.T) {
	pi4 := Target{OS: "linux", Arch: "arm", Variant: "armv7", Board: "Raspberry Pi 4 Model B Rev 1.4"}
	zero := Target{OS: "linux", Arch: "arm", Variant: "armv6", Board: "Raspberry Pi Zero W Rev 1.1"}
	pi4_64 := Target{OS: "linux", Arch: "arm64", Board: "Raspberry Pi 4 Model B Rev 1.4"}
	for _, tc := range []struct {
		name     string
		artifact Target
		host     Target
		ok       bool
	}{
		{"same os/arch, no variant", Target{OS: "linux", Arch: "arm"}, pi4, true},
		{"exact variant", Target{OS: "linux", Arch: "arm", Variant: "armv7"}, pi4, true},
		{"armv6 code on armv7 host", Target{OS: "linux", Arch: "arm", Variant: "armv6"}, pi4, true},
		{"armv7 code on armv6 host", Target{OS: "linux", Arch: "arm", Variant: "armv7"}, zero, false},
		{"armv6 on armv6", Target{OS: "linux", Arch: "arm", Variant: "armv6"}, zero, true},
		{"host of unknown arm level", Target{OS: "linux", Arch: "arm", Variant: "armv5"}, Target{OS: "linux", Arch: "arm"}, false},
		{"arm on arm64", Target{OS: "linux", Arch: "arm"}, pi4_64, false},
		{"arm64 on arm", Target{OS: "linux", Arch: "arm64"}, pi4, false},
		{"other os", Target{OS: "freebsd", Arch: "arm64"}, pi4_64, false},
		{"board prefix", Target{OS: "linux", Arch: "arm64", Board: "Raspberry Pi 4"}, pi4_64, true},
		{"board exact", Target{OS: "linux", Arch: "arm64", Board: pi4_64.Board}, pi4_64, true},
		{"board prefix needs a word boundary", Target{OS: "linux", Arch: "arm64", Board: "Raspberry Pi 4"},
			Target{OS: "linux", Arch: "arm64", Board: "Raspberry Pi 400 Rev 1.0"}, false},
		{"other board", Target{OS: "linux", Arch: "arm", Board: "Raspberry Pi 4"}, zero, false},
		{"board required, host unknown", Target{OS: "linux", Arch: "arm64", Board: "Raspberry Pi 4"}, Target{OS: "linux", Arch: "arm64"}, false},
		{"amd64 level exact", Target{OS: "linux", Arch: "amd64", Variant: "v3"}, Target{OS: "linux", Arch: "amd64", Variant: "v3"}, true},
		{"amd64 level differs", Target{OS: "linux", Arch: "amd64", Variant: "v3"}, Target{OS: "linux", Arch: "amd64", Variant: "v1"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := TargetMatches(tc.artifact, tc.host); got != tc.ok {
				t.Errorf("TargetMatches(%s, %s) = %v, want %v", tc.artifact, tc.host, got, tc.ok)
			}
			err := CheckTarget(tc.artifact, tc.host)
			if !tc.ok && (!errors.Is(err, ErrTargetMismatch) || !strings.Contains(err.Error(), tc.artifact.String())) {
				t.Errorf("CheckTarget error %v does not wrap ErrTargetMismatch and name the target", err)
			}
		})
	}
}

func TestTargetValidate(t *testing.T) {
	for _, tc := range []struct {
		t   Target
		bad string
	}{
		{Target{OS: "linux", Arch: "arm", Variant: "armv6", Board: "Raspberry Pi Zero W"}, ""},
		{Target{OS: "linux", Arch: "amd64", Variant: "v3"}, ""},
		{Target{OS: "linux", Arch: "arm64", Variant: "v8.2"}, ""},
		{Target{Arch: "arm"}, "target.os"},
		{Target{OS: "linux"}, "target.arch"},
		{Target{OS: "Linux", Arch: "arm"}, "target.os"},
		{Target{OS: "linux", Arch: "arm 64"}, "target.arch"},
		{Target{OS: "linux", Arch: "arm", Variant: "armv8"}, "target.variant"},
		{Target{OS: "linux", Arch: "arm", Variant: "7"}, "target.variant"},
		{Target{OS: "linux", Arch: "amd64", Variant: "V3"}, "target.variant"},
		{Target{OS: "linux", Arch: "arm", Board: " Pi"}, "target.board"},
		{Target{OS: "linux", Arch: "arm", Board: "Pi\x00"}, "target.board"},
		{Target{OS: "linux", Arch: "arm", Board: strings.Repeat("x", MaxBoardLen+1)}, "target.board"},
		{Target{OS: "linux", Arch: "arm", Board: "Pi\xff"}, "target.board"},
	} {
		err := tc.t.Validate()
		if tc.bad == "" {
			if err != nil {
				t.Errorf("%+v: %v", tc.t, err)
			}
			continue
		}
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.bad) {
			t.Errorf("%+v: err = %v, want ErrMalformed about %s", tc.t, err, tc.bad)
		}
	}
}

func TestHostTarget(t *testing.T) {
	h := HostTarget(" Raspberry Pi 4 Model B Rev 1.4\x00")
	if h.OS != runtime.GOOS || h.Arch != runtime.GOARCH || h.Board != "Raspberry Pi 4 Model B Rev 1.4" {
		t.Errorf("HostTarget = %+v", h)
	}
	if runtime.GOARCH == "arm" && h.Variant == "" {
		t.Error("no GOARM variant on arm")
	}
	if !TargetMatches(Target{OS: runtime.GOOS, Arch: runtime.GOARCH}, h) {
		t.Errorf("host %s does not match its own os/arch", h)
	}
}
