package rules

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// t0 is the origin of every test's event time; it is on a whole hour, so
// windows aligned to the epoch start at t0.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

// sec is x seconds, as a duration.
func sec(x float64) time.Duration { return time.Duration(x * float64(time.Second)) }

// in is one input: a reading, or an Advance when sensor is "".
type in struct {
	sensor string
	v      float64
	t      time.Duration
}

// adv is an Advance to t0+t.
func adv(t time.Duration) in { return in{t: t} }

func mustEngine(tb testing.TB, yml string) *Engine {
	tb.Helper()
	cfg, err := ParseConfig([]byte(yml))
	if err != nil {
		tb.Fatalf("ParseConfig: %v", err)
	}
	e, err := New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return e
}

func run(e *Engine, ins []in) []Event {
	var evs []Event
	for _, x := range ins {
		if x.sensor == "" {
			evs = e.Advance(evs, at(x.t))
		} else {
			evs = e.Observe(evs, Reading{Sensor: x.sensor, Value: x.v, Time: at(x.t)})
		}
	}
	return evs
}

// short renders an event compactly, times as offsets from t0:
// "raised rule/sensor 9.5 @3s since 1s".
func short(e Event) string {
	return fmt.Sprintf("%s %s/%s %s @%v since %v", e.State, e.Rule, e.Sensor,
		strconv.FormatFloat(e.Value, 'g', 6, 64), e.Time.Sub(t0), e.Since.Sub(t0))
}

func shorts(evs []Event) []string {
	out := make([]string, 0, len(evs))
	for _, e := range evs {
		out = append(out, short(e))
	}
	return out
}

func checkEvents(tb testing.TB, got []Event, want []string) {
	tb.Helper()
	g := shorts(got)
	if strings.Join(g, "\n") != strings.Join(want, "\n") {
		tb.Errorf("events:\n got:\n\t%s\nwant:\n\t%s", strings.Join(g, "\n\t"), strings.Join(want, "\n\t"))
	}
}

// series is readings of one sensor, one per interval starting at start.
func series(sensor string, start, every time.Duration, vals ...float64) []in {
	out := make([]in, len(vals))
	for i, v := range vals {
		out[i] = in{sensor: sensor, v: v, t: start + time.Duration(i)*every}
	}
	return out
}

func cat(parts ...[]in) []in {
	var out []in
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
