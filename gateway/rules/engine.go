package rules

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/outpost-iot/outpost/internal/protocol"
)

// Reading is one sensor value at its event time (when it was sampled).
type Reading struct {
	Sensor string
	Value  float64
	Time   time.Time
}

// Transition is what happened to an alert.
type Transition string

// Transitions; the same strings as protocol.AlertRaised and AlertCleared.
const (
	Raised  Transition = protocol.AlertRaised
	Cleared Transition = protocol.AlertCleared
)

// Event is an alert transition of one rule for one sensor.
type Event struct {
	State    Transition `json:"state"`
	Rule     string     `json:"rule"`
	Sensor   string     `json:"sensor"`
	Severity string     `json:"severity,omitempty"`
	// Labels are the rule's labels. The map is shared by every event of the
	// rule: read it, do not modify it.
	Labels map[string]string `json:"labels,omitempty"`
	// Value is what the rule judged: the reading, the window aggregate, the
	// change (rate) or the z-score.
	Value float64 `json:"value"`
	// Window describes what Value is, e.g. "avg 1m tumbling" or "reading".
	Window string `json:"window,omitempty"`
	// WindowStart and WindowEnd bound what Value covers: the half-open
	// interval [start, end) of a time window, or the event times of the
	// first and last reading judged (equal for a single reading).
	WindowStart time.Time `json:"window_start"`
	WindowEnd   time.Time `json:"window_end"`
	// Since is when the raise condition began to hold; a cleared event
	// carries the Since of the alert it clears.
	Since time.Time `json:"since"`
	// Time is the event time of the transition.
	Time    time.Time `json:"time"`
	Message string    `json:"message,omitempty"`
}

// Stats counts what the engine did with its input.
type Stats struct {
	Readings  uint64 // readings passed to Observe
	Late      uint64 // readings dropped as late by at least one rule
	Invalid   uint64 // readings with a bad sensor name, value or time
	Unmatched uint64 // readings of sensors no rule selects
	Overflow  uint64 // readings of sensors beyond Config.MaxSensors
	Active    int    // alerts active now
}

// Bounds on what a reading may carry.
const (
	// MaxAbsValue bounds |Reading.Value| so that running sums of squares
	// cannot overflow.
	MaxAbsValue = 1e100
	minUnix     = 1          // event times are after the Unix epoch...
	maxUnix     = 7258118400 // ...and before 2200-01-01
)

// Engine evaluates alert rules on readings in event time. It is not safe for
// concurrent use: one goroutine owns it.
type Engine struct {
	rules      []*rule
	byName     map[string]*rule
	sensors    map[string]*sensor
	order      []*sensor // in order of first sight
	maxSensors int
	floor      int64 // latest Advance
	stats      Stats
}

type sensor struct {
	name   string
	states []state // one per rule that selects the sensor, in rule order
}

// New validates cfg and builds an engine for it. The engine keeps no
// reference to cfg.
func New(cfg *Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Engine{
		byName:     make(map[string]*rule, len(cfg.Rules)),
		sensors:    make(map[string]*sensor),
		maxSensors: cfg.MaxSensors,
	}
	if e.maxSensors == 0 {
		e.maxSensors = DefaultMaxSensors
	}
	for i := range cfg.Rules {
		var v validator
		r, ok := compileRule(&cfg.Rules[i], cfg.Lateness, fmt.Sprintf("rules[%d]", i), &v)
		if !ok {
			return nil, v.err() // unreachable: Validate passed
		}
		e.rules = append(e.rules, r)
		e.byName[r.name] = r
	}
	return e, nil
}

func validTime(t time.Time) (int64, bool) {
	if u := t.Unix(); u < minUnix || u >= maxUnix {
		return 0, false
	}
	return t.UnixNano(), true
}

// Observe judges one reading and appends the alert transitions it causes to
// dst. It does not allocate unless a sensor is new, a reorder buffer grows or
// an alert changes state.
func (e *Engine) Observe(dst []Event, r Reading) []Event {
	e.stats.Readings++
	t, ok := validTime(r.Time)
	if !ok || r.Sensor == "" || len(r.Sensor) > protocol.MaxSensorNameLen ||
		!(math.Abs(r.Value) <= MaxAbsValue) {
		e.stats.Invalid++
		return dst
	}
	sn := e.sensors[r.Sensor]
	if sn == nil {
		if sn = e.addSensor(r.Sensor); sn == nil {
			e.stats.Overflow++
			return dst
		}
	}
	if len(sn.states) == 0 {
		e.stats.Unmatched++
		return dst
	}
	late := false
	for i := range sn.states {
		var l bool
		dst, l = sn.states[i].observe(dst, t, r.Value)
		late = late || l
	}
	if late {
		e.stats.Late++
	}
	return dst
}

// addSensor creates the states of a sensor seen for the first time; nil when
// the engine is full.
func (e *Engine) addSensor(name string) *sensor {
	if len(e.order) >= e.maxSensors {
		return nil
	}
	sn := &sensor{name: name}
	for _, r := range e.rules {
		if r.sensors.Matches(name) {
			sn.states = append(sn.states, newState(r, name, e.floor))
		}
	}
	e.sensors[name] = sn
	e.order = append(e.order, sn)
	return sn
}

// Advance tells the engine that event time has reached now for every sensor,
// also for those that stopped reporting: it closes the windows and fires the
// `for` timers that now (less each rule's lateness) has passed. Readings
// older than now less a rule's lateness are late for it from then on.
// Call it periodically (say every second) from the sampling clock.
func (e *Engine) Advance(dst []Event, now time.Time) []Event {
	t, ok := validTime(now)
	if !ok || t <= e.floor {
		return dst
	}
	e.floor = t
	for _, sn := range e.order {
		for i := range sn.states {
			dst = sn.states[i].advance(dst, t)
		}
	}
	return dst
}

// Active appends the raise event of every active alert to dst, oldest
// first (ties by rule, then sensor).
func (e *Engine) Active(dst []Event) []Event {
	n := len(dst)
	for _, sn := range e.order {
		for i := range sn.states {
			if s := &sn.states[i]; s.active {
				dst = append(dst, s.raised)
			}
		}
	}
	slices.SortStableFunc(dst[n:], func(a, b Event) int {
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.Sensor, b.Sensor))
	})
	return dst
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	st := e.stats
	for _, sn := range e.order {
		for i := range sn.states {
			if sn.states[i].active {
				st.Active++
			}
		}
	}
	return st
}

// SnapshotVersion is the schema version of Snapshot.
const SnapshotVersion = 1

// Snapshot is the engine state worth persisting: the active alerts, so that
// a restart neither raises them again nor forgets to clear them. Windows,
// reorder buffers, pending `for` timers and watermarks are not kept: after a
// restart they start empty. It marshals to JSON.
type Snapshot struct {
	V      int     `json:"v"`
	Active []Event `json:"active"`
}

// Snapshot returns the state to persist.
func (e *Engine) Snapshot() Snapshot {
	return Snapshot{V: SnapshotVersion, Active: e.Active(nil)}
}

// ErrNotFresh is returned by Restore on an engine that has seen input.
var ErrNotFresh = errors.New("rules: restore into an engine that has already seen readings")

// Restore loads a snapshot into a new engine, before any Observe or Advance.
// Each restored alert is active again, with its original since and raise
// time, and is judged from then on: it is cleared by the rule's clear
// condition, never raised twice. Its (rule, sensor) treats readings older
// than the raise time as late, so replaying old readings cannot contradict
// it. An alert whose rule no longer exists or no longer selects its sensor
// is cleared at once, at event time now (or its raise time, if later): its
// cleared event is appended to dst.
func (e *Engine) Restore(dst []Event, snap Snapshot, now time.Time) ([]Event, error) {
	if snap.V != SnapshotVersion {
		return dst, fmt.Errorf("rules: restore: snapshot version %d, want %d", snap.V, SnapshotVersion)
	}
	if e.stats.Readings > 0 || e.floor > 0 || len(e.order) > 0 {
		return dst, ErrNotFresh
	}
	for i := range snap.Active {
		a := snap.Active[i]
		if a.State != Raised {
			return dst, fmt.Errorf("rules: restore: active[%d]: state %q, want %q", i, a.State, Raised)
		}
		if a.Sensor == "" || len(a.Sensor) > protocol.MaxSensorNameLen {
			return dst, fmt.Errorf("rules: restore: active[%d]: bad sensor name %q", i, a.Sensor)
		}
		at, ok := validTime(a.Time)
		if !ok {
			return dst, fmt.Errorf("rules: restore: active[%d]: time %v out of range", i, a.Time)
		}
		since, ok := validTime(a.Since)
		if !ok || since > at {
			since = at
		}
		ws, _ := validTime(a.WindowStart)
		we, _ := validTime(a.WindowEnd)
		var s *state
		if r := e.byName[a.Rule]; r != nil && r.sensors.Matches(a.Sensor) {
			sn := e.sensors[a.Sensor]
			if sn == nil {
				sn = e.addSensor(a.Sensor)
			}
			if sn != nil {
				for j := range sn.states {
					if sn.states[j].r == r {
						s = &sn.states[j]
					}
				}
			}
		}
		if s != nil && s.active {
			continue // a duplicate
		}
		if s == nil {
			// The rule is gone, no longer selects the sensor, or the engine
			// is full: close the alert rather than leave it open forever.
			c := a
			c.State = Cleared
			c.Since = unixTime(since)
			if now.After(a.Time) {
				c.Time = now.UTC()
			}
			c.Message = a.Rule + " cleared: rule no longer applies to " + a.Sensor
			dst = append(dst, c)
			continue
		}
		s.wm = max(s.wm, at)
		s.done = max(s.done, at)
		s.active = true
		s.since = since
		s.last = obs{v: a.Value, t: at, ws: ws, we: we}
		s.raised = s.event(Raised, at)
	}
	return dst, nil
}
