package rules

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func problems(t *testing.T, yml string) []string {
	t.Helper()
	_, err := ParseConfig([]byte(yml))
	if err == nil {
		return nil
	}
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("ParseConfig: %v is not a *ConfigError", err)
	}
	if !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("errors.Is(%v, ErrInvalidConfig) = false", err)
	}
	var out []string
	for _, p := range ce.Problems {
		out = append(out, p.String())
	}
	return out
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		yml  string
		want []string
	}{
		{
			name: "valid",
			yml:  `{rules: [{name: low, sensors: t, raise: "< 10"}]}`,
		},
		{
			name: "empty document",
			yml:  ``,
		},
		{
			name: "top level",
			yml:  `{lateness: -1s, max_sensors: -3, rules: []}`,
			want: []string{
				"lateness: must be between 0 and 24h0m0s",
				"max_sensors: must be between 0 (default 1024) and 1048576",
			},
		},
		{
			name: "every problem of a rule, with its path",
			yml: `
rules:
  - name: ok
    sensors: t
    raise: "< 1"
  - name: "bad name"
    sensors: ["", "temp-[", "` + strings.Repeat("x", 65) + `"]
    window: {type: tumbling, size: 0s, step: 5s, count: 3}
    raise: "about 10"
    clear: "> nope"
    for: -1s
    lateness: 25h
    severity: "very bad"
    message: "${sensor} is ${temperature}"
    clear_message: "${value"
`,
			want: []string{
				`rules[1].name: "bad name" may contain only letters, digits, '.', '_' and '-'`,
				"rules[1].sensors[0]: is empty",
				`rules[1].sensors[1]: "temp-[" is not a valid glob: syntax error in pattern`,
				"rules[1].sensors[2]: is 65 bytes, at most 64",
				"rules[1].window.size: must be > 0 and at most 168h0m0s",
				"rules[1].window.count: is only for count windows",
				"rules[1].window.step: is only for hopping windows",
				"rules[1].aggregate: is required with a window (avg, min, max, last, count or stddev)",
				`rules[1].raise: "about 10" must be an operator (<, <=, >, >=) and a number, e.g. "< 10"`,
				`rules[1].clear: "nope" is not a finite number`,
				"rules[1].for: must be between 0 and 720h0m0s",
				"rules[1].lateness: must be between 0 and 24h0m0s",
				`rules[1].severity: "very bad" must be at most 64 letters, digits, '.', '_' or '-'`,
				`rules[1].message: unknown placeholder "${temperature}" (want one of ${rule} ${sensor} ${severity} ${state} ${value} ${window})`,
				`rules[1].clear_message: unterminated placeholder "${value"`,
			},
		},
		{
			name: "names: required and unique",
			yml:  `{rules: [{sensors: t, raise: "< 1"}, {name: a, sensors: t, raise: "< 1"}, {name: a, sensors: t, raise: "< 1"}]}`,
			want: []string{
				"rules[0].name: is required",
				`rules[2].name: "a" is already the name of rules[1]`,
			},
		},
		{
			name: "sensors and raise required",
			yml:  `{rules: [{name: a}]}`,
			want: []string{
				`rules[0].sensors: is required: a sensor name, a glob such as "temp-*", or a list of them`,
				`rules[0].raise: is required, e.g. "< 10" or "> 5.5"`,
			},
		},
		{
			name: "clear overlapping raise",
			yml: `{rules: [
				{name: a, sensors: t, raise: "< 10", clear: "< 12"},
				{name: b, sensors: t, raise: "< 10", clear: "> 9.5"},
				{name: c, sensors: t, raise: "<= 10", clear: ">= 10"},
				{name: d, sensors: t, raise: "< 10", clear: ">= 10"},
				{name: e, sensors: t, raise: "> 5.5", clear: "<= 5.5"},
				{name: f, sensors: t, raise: "> NaN"},
				{name: g, sensors: t, raise: "> 1", clear: "< Inf"}]}`,
			want: []string{
				`rules[0].clear: "< 12" overlaps raise "< 10": a value could both raise and clear the alert; leave a gap for hysteresis`,
				`rules[1].clear: "> 9.5" overlaps raise "< 10": a value could both raise and clear the alert; leave a gap for hysteresis`,
				`rules[2].clear: ">= 10" overlaps raise "<= 10": a value could both raise and clear the alert; leave a gap for hysteresis`,
				`rules[5].raise: "NaN" is not a finite number`,
				`rules[6].clear: "Inf" is not a finite number`,
			},
		},
		{
			name: "windows",
			yml: `{rules: [
				{name: a, sensors: t, window: {type: sliding, size: 1m}, aggregate: avg, raise: "< 1"},
				{name: b, sensors: t, window: {type: hopping, size: 1m, step: 7s}, aggregate: avg, raise: "< 1"},
				{name: c, sensors: t, window: {type: hopping, size: 2h, step: 1s}, aggregate: avg, raise: "< 1"},
				{name: d, sensors: t, window: {type: hopping, size: 1m}, aggregate: avg, raise: "< 1"},
				{name: e, sensors: t, window: {type: count, count: 0, size: 1m}, aggregate: avg, raise: "< 1"},
				{name: f, sensors: t, window: {size: 1m}, aggregate: avg, raise: "< 1"},
				{name: g, sensors: t, window: {type: count, count: 5}, aggregate: median, raise: "< 1"},
				{name: h, sensors: t, aggregate: avg, raise: "< 1"},
				{name: i, sensors: t, window: {type: count, count: 5}, min_samples: 6, aggregate: avg, raise: "< 1"},
				{name: j, sensors: t, min_samples: 2, raise: "< 1"},
				{name: k, sensors: t, window: {type: count, count: 20000}, aggregate: avg, raise: "< 1"}]}`,
			want: []string{
				`rules[0].window.type: "sliding" unknown (want none, tumbling, hopping or count)`,
				"rules[1].window.step: 7s does not divide window.size 1m0s",
				"rules[2].window.step: window.size / window.step is 7200, at most 1024",
				"rules[3].window.step: must be > 0",
				"rules[4].window.count: must be > 0 and at most 10000",
				"rules[4].window.size: is not used by count windows (use window.count)",
				"rules[5].window.type: is required when window.size, window.step or window.count is set",
				"rules[5].aggregate: \"avg\" needs a window",
				`rules[6].aggregate: "median" unknown (want avg, min, max, last, count or stddev)`,
				`rules[7].aggregate: "avg" needs a window`,
				"rules[8].min_samples: 6 is more than window.count 5",
				"rules[9].min_samples: needs a window",
				"rules[10].window.count: must be > 0 and at most 10000",
			},
		},
		{
			name: "rate and zscore",
			yml: `{rules: [
				{name: a, sensors: t, kind: rate, window: {type: count, count: 3}, aggregate: avg, raise: "> 5"},
				{name: b, sensors: t, kind: rate, rate: {per: minute, direction: sideways}, raise: "> 5"},
				{name: c, sensors: t, rate: {per: second}, raise: "> 5"},
				{name: d, sensors: t, kind: zscore, raise: "> 3"},
				{name: e, sensors: t, kind: zscore, window: {type: count, count: 1}, aggregate: avg, min_samples: 1, raise: "> 3"},
				{name: f, sensors: t, min_stddev: 0.1, raise: "> 3"},
				{name: g, sensors: t, kind: zscore, window: {type: count, count: 10}, min_stddev: -1, raise: "> 3"},
				{name: h, sensors: t, kind: anomaly, raise: "> 3"}]}`,
			want: []string{
				"rules[0].window: is not used by rate rules (they judge consecutive readings)",
				"rules[0].aggregate: is not used by rate rules",
				`rules[1].rate.per: "minute" unknown (want reading or second)`,
				`rules[1].rate.direction: "sideways" unknown (want any, up or down)`,
				"rules[2].rate: is only for rate rules (kind: rate)",
				"rules[3].window.type: must be count for zscore rules (the trailing window of readings)",
				"rules[4].aggregate: is not used by zscore rules",
				"rules[4].min_samples: must be at least 2 for zscore rules",
				"rules[4].window.count: must be at least 2 for zscore rules",
				"rules[5].min_stddev: is only for zscore rules",
				"rules[6].min_stddev: must be a finite number ≥ 0",
				`rules[7].kind: "anomaly" unknown (want threshold, rate or zscore)`,
			},
		},
		{
			name: "labels",
			yml:  `{rules: [{name: a, sensors: t, raise: "> 1", labels: {"": x, "bad key": y, ok: "` + strings.Repeat("v", 1025) + `"}}]}`,
			want: []string{
				`rules[0].labels: key "" must be 1 to 64 letters, digits, '.', '_' or '-'`,
				`rules[0].labels: key "bad key" must be 1 to 64 letters, digits, '.', '_' or '-'`,
				"rules[0].labels.ok: is 1025 bytes, at most 1024",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := problems(t, tc.yml)
			checkStrings(t, "problems", got, tc.want)
		})
	}
}

func TestConfigErrorMessage(t *testing.T) {
	_, err := ParseConfig([]byte(`{rules: [{name: a, sensors: t, raise: "< 1", window: {type: tumbling, size: -1s}, aggregate: avg}]}`))
	want := "invalid alert rules:\n\trules[0].window.size: must be > 0 and at most 168h0m0s"
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
}

func TestParseConfigDecodeErrors(t *testing.T) {
	tests := []struct{ yml, want string }{
		{`{rules: [{name: a, sensor: t, raise: "< 1"}]}`, "field sensor not found"},
		{`{rules: [{name: a, sensors: {x: 1}, raise: "< 1"}]}`, "sensors must be a string or a list of strings"},
		{`{lateness: 60, rules: []}`, "cannot unmarshal"},
		{"rules: []\n---\nrules: []\n", "more than one YAML document"},
		{`[1, 2]`, "cannot unmarshal"},
	}
	for _, tc := range tests {
		_, err := ParseConfig([]byte(tc.yml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseConfig(%s) = %v, want an error containing %q", tc.yml, err, tc.want)
		}
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(&Config{Rules: []RuleSpec{{Name: "a"}}}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New(invalid) = %v", err)
	}
	// The engine keeps no reference to the config.
	d := 5 * time.Second
	cfg := &Config{Rules: []RuleSpec{{Name: "a", Sensors: Selector{"t"}, Raise: "< 1", Lateness: &d, Labels: map[string]string{"k": "v"}}}}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Rules[0].Labels["k"] = "changed"
	cfg.Rules[0].Sensors[0] = "u"
	evs := e.Observe(nil, Reading{Sensor: "t", Value: 0, Time: t0})
	e.Advance(nil, at(10*time.Second))
	evs = e.Active(evs[:0])
	if len(evs) != 1 || evs[0].Labels["k"] != "v" {
		t.Errorf("active = %+v", evs)
	}
}

func TestOverlap(t *testing.T) {
	c := func(s string) cond {
		x, err := parseCond(s)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	tests := []struct {
		a, b string
		want bool
	}{
		{"< 10", "> 10.5", false}, {"< 10", "> 10", false}, {"< 10", ">= 10", false},
		{"<= 10", "> 10", false}, {"<= 10", ">= 10", true}, {"< 10", "> 9", true},
		{"> 5", "< 5", false}, {"> 5", "<= 5", false}, {">= 5", "<= 5", true},
		{"< 1", "< 2", true}, {"> 1", ">= 7", true},
	}
	for _, tc := range tests {
		if got := overlap(c(tc.a), c(tc.b)); got != tc.want {
			t.Errorf("overlap(%s, %s) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		// The complement never overlaps and covers everything else.
		if overlap(c(tc.a), c(tc.a).not()) {
			t.Errorf("overlap(%s, not) = true", tc.a)
		}
	}
	if got := c(" >=  -2.5e1 ").String(); got != ">= -25" {
		t.Errorf("String = %q", got)
	}
}

func TestFormatting(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want string
	}{{9.87654, "9.877"}, {10, "10"}, {-0.0001, "0"}, {-2.5, "-2.5"}, {1234.5, "1234.5"}, {3e20, "3e+20"}} {
		if got := formatValue(tc.v); got != tc.want {
			t.Errorf("formatValue(%v) = %q, want %q", tc.v, got, tc.want)
		}
	}
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{time.Minute, "1m"}, {90 * time.Second, "1m30s"}, {26 * time.Hour, "1d2h"}, {500 * time.Millisecond, "500ms"}} {
		if got := formatDuration(tc.d); got != tc.want {
			t.Errorf("formatDuration(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
	for _, tc := range []struct{ yml, want string }{
		{`{rules: [{name: a, sensors: t, raise: "< 1"}]}`, "reading"},
		{`{rules: [{name: a, sensors: t, window: {type: tumbling, size: 1m}, aggregate: avg, raise: "< 1"}]}`, "avg 1m tumbling"},
		{`{rules: [{name: a, sensors: t, window: {type: hopping, size: 5m, step: 1m}, aggregate: max, raise: "< 1"}]}`, "max 5m hopping 1m"},
		{`{rules: [{name: a, sensors: t, window: {type: count, count: 10}, aggregate: stddev, raise: "< 1"}]}`, "stddev last 10"},
		{`{rules: [{name: a, sensors: t, kind: rate, raise: "> 5"}]}`, "change per reading"},
		{`{rules: [{name: a, sensors: t, kind: rate, rate: {per: second, direction: down}, raise: "> 5"}]}`, "fall per second"},
		{`{rules: [{name: a, sensors: t, kind: zscore, window: {type: count, count: 100}, raise: "> 3"}]}`, "zscore last 100"},
	} {
		if got := mustEngine(t, tc.yml).rules[0].window; got != tc.want {
			t.Errorf("window of %s = %q, want %q", tc.yml, got, tc.want)
		}
	}
	long := strings.Repeat("é", 600) // 1200 bytes
	if got := truncate(long, 1023); len(got) != 1022 || !strings.HasPrefix(long, got) {
		t.Errorf("truncate split a rune: %d bytes", len(got))
	}
}

// TestExamples keeps every YAML file in testdata valid.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := ParseConfig(b)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if _, err := New(cfg); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
