package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/outpost-iot/outpost/internal/protocol"
)

// Config is the alert-rule section of the gateway configuration.
type Config struct {
	// Lateness is the default allowed lateness of a reading in event time
	// (see the package documentation). Zero: readings must arrive in order.
	Lateness time.Duration `yaml:"lateness,omitempty"`
	// MaxSensors bounds how many distinct sensor names the engine keeps
	// state for; readings of further sensors are counted in
	// Stats.Overflow and otherwise ignored. Zero means DefaultMaxSensors.
	MaxSensors int        `yaml:"max_sensors,omitempty"`
	Rules      []RuleSpec `yaml:"rules"`
}

// RuleSpec is one alert rule as written in YAML.
type RuleSpec struct {
	// Name identifies the rule in alerts and snapshots; unique, made of
	// letters, digits, '.', '_' and '-'.
	Name string `yaml:"name"`
	// Sensors selects the sensors the rule applies to: exact names or
	// path.Match globs ("temp-*"). Each selected sensor has its own state.
	Sensors Selector `yaml:"sensors"`
	// Kind is threshold (the default), rate or zscore.
	Kind string `yaml:"kind,omitempty"`
	// Window is what a threshold rule aggregates over, and the trailing
	// window of a zscore rule (which must be a count window).
	Window WindowSpec `yaml:"window,omitempty"`
	// Aggregate is avg, min, max, last, count or stddev; required with a
	// window, and must be empty (or last) without one.
	Aggregate string `yaml:"aggregate,omitempty"`
	// Rate configures a rate rule.
	Rate RateSpec `yaml:"rate,omitempty"`
	// Raise is the condition that raises the alert: an operator (<, <=,
	// >, >=) and a number, such as "< 10".
	Raise string `yaml:"raise"`
	// Clear is the condition that clears an active alert. It must not
	// overlap Raise; leave a gap between them for hysteresis. Empty: the
	// alert clears as soon as Raise no longer holds.
	Clear string `yaml:"clear,omitempty"`
	// For is how long Raise must hold continuously in event time before the
	// alert is raised.
	For time.Duration `yaml:"for,omitempty"`
	// Lateness overrides Config.Lateness for this rule.
	Lateness *time.Duration `yaml:"lateness,omitempty"`
	// MinSamples is the number of readings needed before a window is
	// judged. Defaults: the window count for count windows and zscore, 1
	// for time windows. Not used by the count aggregate.
	MinSamples int `yaml:"min_samples,omitempty"`
	// MinStddev is the floor for the standard deviation of a zscore rule;
	// set it to about the sensor's resolution. With 0, a reading is not
	// judged while the trailing window has no spread at all.
	MinStddev float64 `yaml:"min_stddev,omitempty"`
	// Severity is carried on every alert; default "warning".
	Severity string            `yaml:"severity,omitempty"`
	Labels   map[string]string `yaml:"labels,omitempty"`
	// Message and ClearMessage are templates for the raised and cleared
	// alert text. Placeholders: ${rule} ${sensor} ${value} ${window}
	// ${severity} ${state}.
	Message      string `yaml:"message,omitempty"`
	ClearMessage string `yaml:"clear_message,omitempty"`
}

// WindowSpec describes a window.
type WindowSpec struct {
	// Type is none (the default: each reading is judged), tumbling,
	// hopping or count.
	Type string `yaml:"type,omitempty"`
	// Size is the length of a tumbling or hopping window.
	Size time.Duration `yaml:"size,omitempty"`
	// Step is how far a hopping window moves; Size must be a multiple of it.
	Step time.Duration `yaml:"step,omitempty"`
	// Count is the number of most recent readings in a count window.
	Count int `yaml:"count,omitempty"`
}

// RateSpec configures a rate rule, which judges the change between two
// consecutive readings of a sensor (in event-time order).
type RateSpec struct {
	// Per is reading (the default: the plain difference) or second (the
	// difference divided by the seconds between the readings).
	Per string `yaml:"per,omitempty"`
	// Direction is any (the default: the absolute change), up (the signed
	// change) or down (the signed change negated, so a fall is positive).
	Direction string `yaml:"direction,omitempty"`
}

// Selector is a list of sensor names or globs. In YAML it is a single string
// or a sequence of strings.
type Selector []string

// UnmarshalYAML accepts a scalar or a sequence of scalars.
func (s *Selector) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			*s = nil
			return nil
		}
		*s = Selector{n.Value}
		return nil
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		*s = l
		return nil
	}
	return fmt.Errorf("line %d: sensors must be a string or a list of strings", n.Line)
}

// Matches reports whether sensor is selected.
func (s Selector) Matches(sensor string) bool {
	for _, p := range s {
		if ok, err := path.Match(p, sensor); ok && err == nil {
			return true
		}
	}
	return false
}

// Defaults and limits.
const (
	DefaultMaxSensors = 1024
	DefaultSeverity   = "warning"

	maxSensorsLimit = 1 << 20
	maxLateness     = 24 * time.Hour
	maxFor          = 30 * 24 * time.Hour
	maxWindowSize   = 7 * 24 * time.Hour
	maxPanes        = 1024  // window.size / window.step of a hopping window
	maxCount        = 10000 // readings in a count window: 240 KB of state per sensor
	maxNameLen      = 128
	maxSeverityLen  = 64
	maxLabels       = 32 // protocol.Record.Validate allows at most 32 labels
	maxLabelKeyLen  = 64
)

// ErrInvalidConfig is wrapped by every *ConfigError.
var ErrInvalidConfig = errors.New("invalid alert rules")

// Problem is one thing wrong with a Config, at a key path such as
// "rules[3].window.size".
type Problem struct {
	Path string
	Msg  string
}

func (p Problem) String() string { return p.Path + ": " + p.Msg }

// ConfigError lists every problem Validate found.
type ConfigError struct {
	Problems []Problem
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(ErrInvalidConfig.Error())
	b.WriteString(":")
	for _, p := range e.Problems {
		b.WriteString("\n\t")
		b.WriteString(p.String())
	}
	return b.String()
}

// Unwrap lets errors.Is(err, ErrInvalidConfig) hold.
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

// ParseConfig decodes YAML strictly (unknown keys are errors) and validates
// the result. An empty document is an empty Config.
func ParseConfig(data []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("rules: decode: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("rules: decode: more than one YAML document")
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate checks c and returns a *ConfigError listing every problem, or nil.
func (c *Config) Validate() error {
	var v validator
	if c.Lateness < 0 || c.Lateness > maxLateness {
		v.add("lateness", "must be between 0 and %v", maxLateness)
	}
	if c.MaxSensors < 0 || c.MaxSensors > maxSensorsLimit {
		v.add("max_sensors", "must be between 0 (default %d) and %d", DefaultMaxSensors, maxSensorsLimit)
	}
	seen := make(map[string]int, len(c.Rules))
	for i := range c.Rules {
		r := &c.Rules[i]
		p := fmt.Sprintf("rules[%d]", i)
		if j, dup := seen[r.Name]; dup && r.Name != "" {
			v.add(p+".name", "%q is already the name of rules[%d]", r.Name, j)
		} else {
			seen[r.Name] = i
		}
		_, _ = compileRule(r, c.Lateness, p, &v)
	}
	return v.err()
}

type validator struct {
	problems []Problem
}

func (v *validator) add(path, format string, args ...any) {
	v.problems = append(v.problems, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) err() error {
	if len(v.problems) == 0 {
		return nil
	}
	return &ConfigError{Problems: v.problems}
}

func validName(s string) bool {
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// compileRule validates spec, reporting problems to v under prefix p, and
// returns the compiled rule when there were none.
func compileRule(spec *RuleSpec, defLateness time.Duration, p string, v *validator) (*rule, bool) {
	before := len(v.problems)
	r := &rule{name: spec.Name}

	switch {
	case spec.Name == "":
		v.add(p+".name", "is required")
	case len(spec.Name) > maxNameLen:
		v.add(p+".name", "is %d bytes, at most %d", len(spec.Name), maxNameLen)
	case !validName(spec.Name):
		v.add(p+".name", "%q may contain only letters, digits, '.', '_' and '-'", spec.Name)
	}

	if len(spec.Sensors) == 0 {
		v.add(p+".sensors", "is required: a sensor name, a glob such as \"temp-*\", or a list of them")
	}
	for i, s := range spec.Sensors {
		sp := fmt.Sprintf("%s.sensors[%d]", p, i)
		switch {
		case s == "":
			v.add(sp, "is empty")
		case len(s) > protocol.MaxSensorNameLen:
			v.add(sp, "is %d bytes, at most %d", len(s), protocol.MaxSensorNameLen)
		default:
			if _, err := path.Match(s, ""); err != nil {
				v.add(sp, "%q is not a valid glob: %v", s, err)
			}
		}
	}
	r.sensors = append(Selector(nil), spec.Sensors...)

	// What is judged.
	w := spec.Window
	wp := p + ".window"
	switch w.Type {
	case "", "none":
		r.win = winNone
	case "tumbling":
		r.win = winTumbling
	case "hopping":
		r.win = winHopping
	case "count":
		r.win = winCount
	default:
		v.add(wp+".type", "%q unknown (want none, tumbling, hopping or count)", w.Type)
		r.win = winInvalid
	}
	switch r.win {
	case winTumbling, winHopping:
		if w.Size <= 0 || w.Size > maxWindowSize {
			v.add(wp+".size", "must be > 0 and at most %v", maxWindowSize)
		}
		if w.Count != 0 {
			v.add(wp+".count", "is only for count windows")
		}
		r.size = int64(w.Size)
		r.step = r.size
		if r.win == winHopping {
			switch {
			case w.Step <= 0:
				v.add(wp+".step", "must be > 0")
			case w.Size > 0 && w.Size%w.Step != 0:
				v.add(wp+".step", "%v does not divide window.size %v", w.Step, w.Size)
			case w.Size > 0 && w.Size/w.Step > maxPanes:
				v.add(wp+".step", "window.size / window.step is %d, at most %d", w.Size/w.Step, maxPanes)
			default:
				r.step = int64(w.Step)
			}
		} else if w.Step != 0 {
			v.add(wp+".step", "is only for hopping windows")
		}
	case winCount:
		if w.Count <= 0 || w.Count > maxCount {
			v.add(wp+".count", "must be > 0 and at most %d", maxCount)
		}
		if w.Size != 0 {
			v.add(wp+".size", "is not used by count windows (use window.count)")
		}
		if w.Step != 0 {
			v.add(wp+".step", "is only for hopping windows")
		}
		r.count = w.Count
	case winNone:
		if w.Size != 0 || w.Step != 0 || w.Count != 0 {
			v.add(wp+".type", "is required when window.size, window.step or window.count is set")
		}
	}

	switch spec.Kind {
	case "", "threshold":
		r.kind = kindThreshold
		switch spec.Aggregate {
		case "":
			r.agg = aggLast
			if r.win != winNone && r.win != winInvalid {
				v.add(p+".aggregate", "is required with a window (avg, min, max, last, count or stddev)")
			}
		case "avg":
			r.agg = aggAvg
		case "min":
			r.agg = aggMin
		case "max":
			r.agg = aggMax
		case "last":
			r.agg = aggLast
		case "count":
			r.agg = aggCount
		case "stddev":
			r.agg = aggStddev
		default:
			v.add(p+".aggregate", "%q unknown (want avg, min, max, last, count or stddev)", spec.Aggregate)
		}
		if r.win == winNone && r.agg != aggLast {
			v.add(p+".aggregate", "%q needs a window", spec.Aggregate)
		}
	case "rate":
		r.kind = kindRate
		if r.win != winNone && r.win != winInvalid {
			v.add(wp, "is not used by rate rules (they judge consecutive readings)")
		}
		if spec.Aggregate != "" {
			v.add(p+".aggregate", "is not used by rate rules")
		}
	case "zscore":
		r.kind = kindZScore
		if r.win != winCount && r.win != winInvalid {
			v.add(wp+".type", "must be count for zscore rules (the trailing window of readings)")
		}
		if spec.Aggregate != "" {
			v.add(p+".aggregate", "is not used by zscore rules")
		}
	default:
		v.add(p+".kind", "%q unknown (want threshold, rate or zscore)", spec.Kind)
		r.kind = kindInvalid
	}

	if spec.Rate != (RateSpec{}) && r.kind != kindRate && r.kind != kindInvalid {
		v.add(p+".rate", "is only for rate rules (kind: rate)")
	}
	switch spec.Rate.Per {
	case "", "reading":
	case "second":
		r.perSecond = true
	default:
		v.add(p+".rate.per", "%q unknown (want reading or second)", spec.Rate.Per)
	}
	switch spec.Rate.Direction {
	case "", "any":
		r.direction = dirAny
	case "up":
		r.direction = dirUp
	case "down":
		r.direction = dirDown
	default:
		v.add(p+".rate.direction", "%q unknown (want any, up or down)", spec.Rate.Direction)
	}

	// Sample counts.
	switch {
	case spec.MinSamples < 0:
		v.add(p+".min_samples", "must be ≥ 0")
	case r.win == winCount && spec.MinSamples > w.Count && w.Count > 0:
		v.add(p+".min_samples", "%d is more than window.count %d", spec.MinSamples, w.Count)
	case spec.MinSamples > 0 && (r.kind == kindRate || (r.kind == kindThreshold && r.win == winNone)):
		v.add(p+".min_samples", "needs a window")
	}
	r.minSamples = spec.MinSamples
	if r.minSamples == 0 {
		r.minSamples = 1
		if r.win == winCount {
			r.minSamples = w.Count
		}
	}
	if r.kind == kindZScore {
		if spec.MinSamples == 1 {
			v.add(p+".min_samples", "must be at least 2 for zscore rules")
		}
		if r.win == winCount && w.Count == 1 {
			v.add(wp+".count", "must be at least 2 for zscore rules")
		}
	}
	if spec.MinStddev < 0 || math.IsNaN(spec.MinStddev) || math.IsInf(spec.MinStddev, 0) {
		v.add(p+".min_stddev", "must be a finite number ≥ 0")
	} else if spec.MinStddev != 0 && r.kind != kindZScore && r.kind != kindInvalid {
		v.add(p+".min_stddev", "is only for zscore rules")
	}
	r.minStddev = spec.MinStddev

	// Conditions.
	raise, raiseErr := parseCond(spec.Raise)
	switch {
	case spec.Raise == "":
		v.add(p+".raise", "is required, e.g. \"< 10\" or \"> 5.5\"")
	case raiseErr != nil:
		v.add(p+".raise", "%v", raiseErr)
	}
	r.raise, r.clear = raise, raise.not()
	if spec.Clear != "" {
		clear, err := parseCond(spec.Clear)
		switch {
		case err != nil:
			v.add(p+".clear", "%v", err)
		case raiseErr == nil && overlap(raise, clear):
			v.add(p+".clear", "%q overlaps raise %q: a value could both raise and clear the alert; leave a gap for hysteresis", spec.Clear, spec.Raise)
		default:
			r.clear = clear
		}
	}

	if spec.For < 0 || spec.For > maxFor {
		v.add(p+".for", "must be between 0 and %v", maxFor)
	}
	r.forDur = int64(spec.For)
	r.lateness = int64(defLateness)
	if spec.Lateness != nil {
		if *spec.Lateness < 0 || *spec.Lateness > maxLateness {
			v.add(p+".lateness", "must be between 0 and %v", maxLateness)
		}
		r.lateness = int64(*spec.Lateness)
	}

	// Presentation.
	r.severity = spec.Severity
	if r.severity == "" {
		r.severity = DefaultSeverity
	} else if len(r.severity) > maxSeverityLen || !validName(r.severity) {
		v.add(p+".severity", "%q must be at most %d letters, digits, '.', '_' or '-'", spec.Severity, maxSeverityLen)
	}
	if len(spec.Labels) > maxLabels {
		v.add(p+".labels", "has %d labels, at most %d", len(spec.Labels), maxLabels)
	}
	if len(spec.Labels) > 0 {
		r.labels = make(map[string]string, len(spec.Labels))
		for _, k := range sortedKeys(spec.Labels) {
			val := spec.Labels[k]
			switch {
			case k == "" || len(k) > maxLabelKeyLen || !validName(k):
				v.add(p+".labels", "key %q must be 1 to %d letters, digits, '.', '_' or '-'", k, maxLabelKeyLen)
			case len(val) > protocol.MaxTextLen:
				v.add(p+".labels."+k, "is %d bytes, at most %d", len(val), protocol.MaxTextLen)
			}
			r.labels[k] = val
		}
	}
	r.window = describe(r)
	var err error
	if r.msg, err = parseTemplate(spec.Message, defaultMessage); err != nil {
		v.add(p+".message", "%v", err)
	}
	if r.clearMsg, err = parseTemplate(spec.ClearMessage, defaultClearMessage); err != nil {
		v.add(p+".clear_message", "%v", err)
	}
	return r, len(v.problems) == before
}

// Conditions.

type op uint8

const (
	opLT op = iota + 1
	opLE
	opGT
	opGE
)

var opNames = [...]string{opLT: "<", opLE: "<=", opGT: ">", opGE: ">="}

type cond struct {
	op op
	x  float64
}

func (c cond) holds(v float64) bool {
	switch c.op {
	case opLT:
		return v < c.x
	case opLE:
		return v <= c.x
	case opGT:
		return v > c.x
	case opGE:
		return v >= c.x
	}
	return false
}

// not is the complement of c (for values that are not NaN).
func (c cond) not() cond {
	switch c.op {
	case opLT:
		return cond{opGE, c.x}
	case opLE:
		return cond{opGT, c.x}
	case opGT:
		return cond{opLE, c.x}
	}
	return cond{opLT, c.x}
}

func (c cond) String() string { return opNames[c.op] + " " + strconv.FormatFloat(c.x, 'g', -1, 64) }

func parseCond(s string) (cond, error) {
	s = strings.TrimSpace(s)
	var c cond
	switch {
	case strings.HasPrefix(s, "<="):
		c.op, s = opLE, s[2:]
	case strings.HasPrefix(s, ">="):
		c.op, s = opGE, s[2:]
	case strings.HasPrefix(s, "<"):
		c.op, s = opLT, s[1:]
	case strings.HasPrefix(s, ">"):
		c.op, s = opGT, s[1:]
	default:
		return c, fmt.Errorf("%q must be an operator (<, <=, >, >=) and a number, e.g. \"< 10\"", s)
	}
	x, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
		return c, fmt.Errorf("%q is not a finite number", strings.TrimSpace(s))
	}
	c.x = x
	return c, nil
}

// overlap reports whether some value satisfies both a and b.
func overlap(a, b cond) bool {
	below := func(c cond) bool { return c.op == opLT || c.op == opLE }
	if below(a) == below(b) {
		return true // two half-lines pointing the same way always meet
	}
	lo, hi := a, b // lo: x < / <= lo.x; hi: x > / >= hi.x
	if !below(a) {
		lo, hi = b, a
	}
	if hi.x != lo.x {
		return hi.x < lo.x
	}
	return lo.op == opLE && hi.op == opGE
}
