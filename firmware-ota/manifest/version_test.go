package manifest

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // "" = must fail; else the error substring below must be empty
		bad  string // error substring when want == ""
	}{
		{in: "0.0.0", want: "0.0.0"},
		{in: "1.2.3", want: "1.2.3"},
		{in: "10.20.30", want: "10.20.30"},
		{in: "1.0.0-alpha", want: "1.0.0-alpha"},
		{in: "1.0.0-alpha.1", want: "1.0.0-alpha.1"},
		{in: "1.0.0-0.3.7", want: "1.0.0-0.3.7"},
		{in: "1.0.0-x.7.z.92", want: "1.0.0-x.7.z.92"},
		{in: "1.0.0-x-y-z.--", want: "1.0.0-x-y-z.--"},
		{in: "1.0.0+20130313144700", want: "1.0.0+20130313144700"},
		{in: "1.0.0-beta+exp.sha.5114f85", want: "1.0.0-beta+exp.sha.5114f85"},
		{in: "1.0.0+001", want: "1.0.0+001"}, // leading zeros allowed in build metadata
		{in: "1.0.0-rc.1+build.1-2", want: "1.0.0-rc.1+build.1-2"},
		{in: "18446744073709551615.0.0", want: "18446744073709551615.0.0"},
		{in: "", bad: "empty"},
		{in: "v1.2.3", bad: `leading "v"`},
		{in: "1.2", bad: "MAJOR.MINOR.PATCH"},
		{in: "1.2.3.4", bad: "MAJOR.MINOR.PATCH"},
		{in: "01.2.3", bad: "leading zero"},
		{in: "1.02.3", bad: "leading zero"},
		{in: "1.2.03", bad: "leading zero"},
		{in: "1..3", bad: "minor is empty"},
		{in: "1.2.x", bad: "not a number"},
		{in: "1.2.-3", bad: "patch is empty"},
		{in: " 1.2.3", bad: "not a number"},
		{in: "1.2.3 ", bad: "not a number"},
		{in: "+1.2.3", bad: "MAJOR.MINOR.PATCH"},
		{in: "1.2.3-", bad: "empty identifier"},
		{in: "1.2.3-a..b", bad: "empty identifier"},
		{in: "1.2.3-01", bad: "leading zero"},
		{in: "1.2.3-a_b", bad: "not one of"},
		{in: "1.2.3+", bad: "empty identifier"},
		{in: "1.2.3+a+b", bad: "not one of"},
		{in: "1.2.3-é", bad: "not one of"},
		{in: "18446744073709551616.0.0", bad: "out of range"},
		{in: "1.0.0-" + strings.Repeat("a", MaxVersionLen), bad: "longer than"},
	} {
		v, err := ParseVersion(tc.in)
		if tc.want == "" {
			if !errors.Is(err, ErrInvalidVersion) || !strings.Contains(err.Error(), tc.bad) || !strings.HasPrefix(err.Error(), "manifest: ") {
				t.Errorf("ParseVersion(%q) = %v, %v; want ErrInvalidVersion containing %q", tc.in, v, err, tc.bad)
			}
			continue
		}
		if err != nil || v.String() != tc.want {
			t.Errorf("ParseVersion(%q) = %q, %v; want %q", tc.in, v, err, tc.want)
		}
	}
}

func TestCompareOrdering(t *testing.T) {
	// Strictly increasing precedence; the first run is semver.org §11's.
	ordered := []string{
		"0.0.0",
		"0.0.1",
		"0.1.0",
		"0.9.9",
		"1.0.0-0",
		"1.0.0-2",
		"1.0.0-10",
		"1.0.0-99999999999999999999999", // beyond 64 bits, still numeric
		"1.0.0-A",                       // alphanumeric > numeric; ASCII: upper case first
		"1.0.0-alpha",
		"1.0.0-alpha.1",
		"1.0.0-alpha.beta",
		"1.0.0-beta",
		"1.0.0-beta.2",
		"1.0.0-beta.11",
		"1.0.0-rc.1",
		"1.0.0",
		"1.0.1-rc.1",
		"1.0.1",
		"1.9.0",
		"1.10.0",
		"1.11.0",
		"2.0.0-alpha",
		"2.0.0",
		"10.0.0",
		"18446744073709551615.0.0",
	}
	vs := make([]Version, len(ordered))
	for i, s := range ordered {
		v, err := ParseVersion(s)
		if err != nil {
			t.Fatal(err)
		}
		vs[i] = v
	}
	for i := range vs {
		for j := range vs {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = +1
			}
			if got := Compare(vs[i], vs[j]); got != want {
				t.Errorf("Compare(%s, %s) = %d, want %d", vs[i], vs[j], got, want)
			}
		}
	}
	shuffled := slices.Clone(vs)
	slices.Reverse(shuffled)
	slices.SortFunc(shuffled, Compare)
	for i := range vs {
		if shuffled[i].String() != vs[i].String() {
			t.Fatalf("sorted[%d] = %s, want %s", i, shuffled[i], vs[i])
		}
	}

	// Build metadata does not affect precedence.
	for _, pair := range [][2]string{
		{"1.0.0+a", "1.0.0+b"},
		{"1.0.0", "1.0.0+20260301"},
		{"1.0.0-rc.1+x", "1.0.0-rc.1"},
	} {
		a, _ := ParseVersion(pair[0])
		b, _ := ParseVersion(pair[1])
		if c := Compare(a, b); c != 0 {
			t.Errorf("Compare(%s, %s) = %d, want 0", a, b, c)
		}
	}
}

func TestVersionJSON(t *testing.T) {
	var got struct{ V Version }
	if err := json.Unmarshal([]byte(`{"V":"1.2.3-rc.1+b7"}`), &got); err != nil {
		t.Fatal(err)
	}
	if got.V.Major != 1 || got.V.Minor != 2 || got.V.Patch != 3 || !slices.Equal(got.V.Pre, []string{"rc", "1"}) || !slices.Equal(got.V.Build, []string{"b7"}) {
		t.Errorf("decoded %+v", got.V)
	}
	b, err := json.Marshal(got)
	if err != nil || string(b) != `{"V":"1.2.3-rc.1+b7"}` {
		t.Errorf("Marshal = %s, %v", b, err)
	}
	for _, bad := range []string{`{"V":"v1.2.3"}`, `{"V":1}`, `{"V":""}`} {
		if err := json.Unmarshal([]byte(bad), &got); err == nil {
			t.Errorf("Unmarshal(%s) accepted", bad)
		}
	}
}
