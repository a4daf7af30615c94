package manifest

import (
	"cmp"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxVersionLen bounds the length of a version string.
const MaxVersionLen = 128

// ErrInvalidVersion is wrapped by every ParseVersion error.
var ErrInvalidVersion = errors.New("invalid semantic version")

// Version is a Semantic Versioning 2.0.0 version (https://semver.org):
// MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], without a leading "v". It encodes
// to JSON as its string form. The zero Version is 0.0.0.
type Version struct {
	Major, Minor, Patch uint64
	Pre                 []string // pre-release identifiers, e.g. ["rc", "1"]
	Build               []string // build metadata identifiers; ignored by Compare
}

// ParseVersion parses a semantic version strictly: no leading "v", no
// leading zeros in numeric parts, no empty identifiers, only [0-9A-Za-z-]
// in identifiers, at most MaxVersionLen bytes, numbers below 2^64.
func ParseVersion(s string) (Version, error) {
	var v Version
	bad := func(why string) (Version, error) {
		return Version{}, fmt.Errorf("manifest: %w %q: %s", ErrInvalidVersion, s, why)
	}
	switch {
	case s == "":
		return bad("empty")
	case len(s) > MaxVersionLen:
		return bad(fmt.Sprintf("longer than %d bytes", MaxVersionLen))
	case s[0] == 'v' || s[0] == 'V':
		return bad(`remove the leading "v"`)
	}
	rest := s
	if i := strings.IndexByte(rest, '+'); i >= 0 {
		ids, why := identifiers(rest[i+1:], false)
		if why != "" {
			return bad("build metadata: " + why)
		}
		v.Build, rest = ids, rest[:i]
	}
	if i := strings.IndexByte(rest, '-'); i >= 0 {
		ids, why := identifiers(rest[i+1:], true)
		if why != "" {
			return bad("pre-release: " + why)
		}
		v.Pre, rest = ids, rest[:i]
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return bad("want MAJOR.MINOR.PATCH")
	}
	for i, dst := range []*uint64{&v.Major, &v.Minor, &v.Patch} {
		p := parts[i]
		if why := numeric(p); why != "" {
			return bad([]string{"major", "minor", "patch"}[i] + " " + why)
		}
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return bad([]string{"major", "minor", "patch"}[i] + " out of range")
		}
		*dst = n
	}
	return v, nil
}

// numeric returns why p is not a numeric identifier without leading zeros.
func numeric(p string) string {
	switch {
	case p == "":
		return "is empty"
	case !allDigits(p):
		return fmt.Sprintf("%q is not a number", p)
	case len(p) > 1 && p[0] == '0':
		return fmt.Sprintf("%q has a leading zero", p)
	}
	return ""
}

// identifiers splits a dot-separated pre-release or build list and returns
// why it is invalid, if it is.
func identifiers(s string, pre bool) ([]string, string) {
	ids := strings.Split(s, ".")
	for _, id := range ids {
		if id == "" {
			return nil, "empty identifier"
		}
		for i := 0; i < len(id); i++ {
			c := id[i]
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-') {
				return nil, fmt.Sprintf("character %q in %q is not one of [0-9A-Za-z-]", c, id)
			}
		}
		if pre && allDigits(id) && len(id) > 1 && id[0] == '0' {
			return nil, fmt.Sprintf("numeric identifier %q has a leading zero", id)
		}
	}
	return ids, ""
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// String returns the canonical form, which ParseVersion accepts.
func (v Version) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d.%d.%d", v.Major, v.Minor, v.Patch)
	if len(v.Pre) > 0 {
		b.WriteByte('-')
		b.WriteString(strings.Join(v.Pre, "."))
	}
	if len(v.Build) > 0 {
		b.WriteByte('+')
		b.WriteString(strings.Join(v.Build, "."))
	}
	return b.String()
}

// MarshalText implements encoding.TextMarshaler.
func (v Version) MarshalText() ([]byte, error) {
	return []byte(v.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseVersion.
func (v *Version) UnmarshalText(b []byte) error {
	p, err := ParseVersion(string(b))
	if err != nil {
		return err
	}
	*v = p
	return nil
}

// Compare returns -1, 0 or +1 as a has lower, equal or higher precedence
// than b under Semantic Versioning 2.0.0 section 11: major, minor and patch
// compare numerically; a pre-release version has lower precedence than the
// release; pre-release identifiers compare left to right, numeric ones
// numerically and below alphanumeric ones, alphanumeric ones in ASCII
// order, and a longer list wins when all shared identifiers are equal.
// Build metadata is ignored, so 1.0.0+a and 1.0.0+b compare equal.
func Compare(a, b Version) int {
	if c := cmp.Compare(a.Major, b.Major); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Minor, b.Minor); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Patch, b.Patch); c != 0 {
		return c
	}
	switch {
	case len(a.Pre) == 0 && len(b.Pre) == 0:
		return 0
	case len(a.Pre) == 0:
		return +1
	case len(b.Pre) == 0:
		return -1
	}
	for i := 0; i < len(a.Pre) && i < len(b.Pre); i++ {
		if c := compareIdent(a.Pre[i], b.Pre[i]); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a.Pre), len(b.Pre))
}

func compareIdent(x, y string) int {
	xn, yn := allDigits(x), allDigits(y)
	switch {
	case xn && yn:
		// No leading zeros, so a longer number is a larger one; this also
		// handles identifiers beyond 64 bits.
		if c := cmp.Compare(len(x), len(y)); c != 0 {
			return c
		}
		return strings.Compare(x, y)
	case xn:
		return -1
	case yn:
		return +1
	}
	return strings.Compare(x, y)
}
