package rules

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/protocol"
)

// TestCountWindowAgainstNaive compares the sliding count window (running
// mean and M2, monotonic deques) with a recomputation from scratch.
func TestCountWindowAgainstNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 3, 7, 64} {
		for _, agg := range []aggregate{aggAvg, aggMin, aggMax, aggLast, aggCount, aggStddev} {
			r := &rule{count: n, agg: agg}
			w := newCountWin(r)
			var all []float64
			for i := range 5000 {
				v := rng.NormFloat64()*3 + 1000 // an offset makes naive running sums drift
				if i%97 == 0 {
					v = math.Round(v) // ties for the deques
				}
				w.push(int64(i+1), v)
				all = append(all, v)
				win := all[max(0, len(all)-n):]
				want := naive(agg, win)
				if got := w.value(agg); math.Abs(got-want) > 1e-9*math.Max(1, math.Abs(want)) {
					t.Fatalf("n=%d %v after %d readings: got %v, want %v", n, agg, i+1, got, want)
				}
				if got := w.oldest(); got != int64(len(all)-len(win)+1) {
					t.Fatalf("oldest = %d", got)
				}
			}
		}
	}
}

func naive(a aggregate, win []float64) float64 {
	var sum float64
	for _, v := range win {
		sum += v
	}
	mean := sum / float64(len(win))
	switch a {
	case aggAvg:
		return mean
	case aggMin:
		return slices.Min(win)
	case aggMax:
		return slices.Max(win)
	case aggCount:
		return float64(len(win))
	case aggStddev:
		var ss float64
		for _, v := range win {
			ss += (v - mean) * (v - mean)
		}
		return math.Sqrt(ss / float64(len(win)))
	}
	return win[len(win)-1]
}

// TestHoppingAgainstNaive checks every hopping-window judgement against the
// readings that fall in [end-size, end).
func TestHoppingAgainstNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, agg := range []string{"avg", "min", "max", "last", "count", "stddev"} {
		yml := `{rules: [{name: w, sensors: t, window: {type: hopping, size: 40s, step: 10s}, aggregate: ` + agg + `, raise: "> 1e99"}]}`
		e := mustEngine(t, yml)
		type rd struct {
			t int64
			v float64
		}
		var rds []rd
		var got []obs
		e.rules[0].trace = func(_ string, o obs) { got = append(got, o) }
		tm := t0.Add(time.Second)
		for range 2000 {
			tm = tm.Add(time.Duration(rng.ExpFloat64() * float64(4*time.Second)))
			if rng.IntN(50) == 0 {
				tm = tm.Add(2 * time.Minute) // silences
			}
			v := rng.NormFloat64()
			rds = append(rds, rd{tm.UnixNano(), v})
			e.Observe(nil, Reading{Sensor: "t", Value: v, Time: tm})
		}
		e.Advance(nil, tm.Add(time.Hour))
		a := aggregate(slices.Index(aggNames[:], agg))
		for _, o := range got {
			var win []float64
			for _, r := range rds {
				if r.t >= o.ws && r.t < o.we {
					win = append(win, r.v)
				}
			}
			if o.we-o.ws != int64(40*time.Second) || o.t != o.we || o.we%int64(10*time.Second) != 0 {
				t.Fatalf("%s: bad bounds %+v", agg, o)
			}
			want := 0.0
			if len(win) > 0 {
				want = naive(a, win)
			} else if a != aggCount {
				t.Fatalf("%s: judged an empty window %+v", agg, o)
			}
			if math.Abs(o.v-want) > 1e-9 {
				t.Fatalf("%s: window [%v, %v): got %v, want %v (%d readings)", agg, unixTime(o.ws), unixTime(o.we), o.v, want, len(win))
			}
		}
		if len(got) < 100 {
			t.Errorf("%s: only %d judgements", agg, len(got))
		}
	}
}

func TestReorder(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var q reorder
	var out []tv
	seq := 0.0
	for i := range 20000 {
		// Times within a sliding band, many equal; v records arrival order.
		q.insert(int64(i/4+rng.IntN(8)), seq)
		seq++
		for q.len() > 0 && q.front().t <= int64(i/4-8) {
			out = append(out, q.front())
			q.pop()
		}
	}
	for q.len() > 0 {
		out = append(out, q.front())
		q.pop()
	}
	if len(out) != 20000 {
		t.Fatalf("got %d readings back", len(out))
	}
	for i := 1; i < len(out); i++ {
		if out[i].t < out[i-1].t || out[i].t == out[i-1].t && out[i].v < out[i-1].v {
			t.Fatalf("out of order at %d: %v then %v", i, out[i-1], out[i])
		}
	}
	if cap(q.buf) > 256 {
		t.Errorf("buffer grew to %d for at most ~40 pending readings", cap(q.buf))
	}
}

func TestSteadyStateAllocs(t *testing.T) {
	for _, lateness := range []string{"0s", "3s"} {
		t.Run("lateness "+lateness, func(t *testing.T) {
			e := mustEngine(t, classicWith(lateness))
			in := benchReadings(20, 4096)
			var dst []Event
			for _, r := range in { // warm up: sensors, buffers, the initial alerts
				dst = e.Observe(dst[:0], r)
			}
			i := 0
			allocs := testing.AllocsPerRun(10000, func() {
				r := in[i%len(in)]
				r.Time = r.Time.Add(time.Duration(i/len(in)+1) * time.Hour)
				dst = e.Observe(dst[:0], r)
				i++
			})
			if allocs != 0 {
				t.Errorf("%v allocations per reading", allocs)
			}
		})
	}
}

// TestAdvanceDoesNotChangeOutcome: the events of each (rule, sensor) are
// the same whether or not Advance is called between readings (given the
// same readings that were not late), once event time has moved past them.
func TestAdvanceDoesNotChangeOutcome(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for round := range 200 {
		ops := randomOps(rng, 300)
		checkAdvanceInvariance(t, fuzzConfigs[round%len(fuzzConfigs)], ops)
	}
}

// fuzzOp is one fuzz step: a reading, or an Advance when sensor < 0.
type fuzzOp struct {
	sensor int
	v      float64
	dt     time.Duration // from the previous op's time; may be negative
}

var fuzzSensors = []string{"temp-1", "temp-2", "ph-1", "x"}

func randomOps(rng *rand.Rand, n int) []fuzzOp {
	ops := make([]fuzzOp, n)
	for i := range ops {
		ops[i] = fuzzOp{sensor: rng.IntN(5) - 1, v: 5 + rng.NormFloat64()*4, dt: time.Duration(rng.IntN(12000)-2000) * time.Millisecond}
	}
	return ops
}

// fuzzConfigs exercise every rule kind; each has one lateness for all rules,
// so a reading is late for all of a sensor's rules or for none.
var fuzzConfigs = []string{
	classicWith("2s"),
	classicWith("0s"),
	`
lateness: 5s
rules:
  - {name: hop, sensors: "*", window: {type: hopping, size: 30s, step: 10s}, aggregate: avg, raise: "> 6", clear: "< 5", for: 15s}
  - {name: cnt, sensors: "temp-*", window: {type: tumbling, size: 20s}, aggregate: count, raise: "< 2", clear: "> 3"}
  - {name: cw, sensors: "*", window: {type: count, count: 5}, aggregate: max, raise: "> 12", for: 5s}
  - {name: cmin, sensors: "ph-*", window: {type: count, count: 4}, aggregate: min, min_samples: 2, raise: "< 0"}
  - {name: z, sensors: "*", kind: zscore, window: {type: count, count: 8}, min_stddev: 0.5, raise: "> 2", clear: "< 1"}
  - {name: slope, sensors: "*", kind: rate, rate: {per: second, direction: up}, raise: "> 2"}
  - {name: sd, sensors: "*", window: {type: tumbling, size: 15s}, aggregate: stddev, raise: "> 4", clear: "< 3"}
`,
	`
lateness: 0s
rules:
  - {name: last, sensors: "*", window: {type: hopping, size: 20s, step: 5s}, aggregate: last, raise: "<= 3", clear: ">= 4", for: 7s}
  - {name: min, sensors: "*", window: {type: tumbling, size: 10s}, aggregate: min, raise: "< 1"}
  - {name: fall, sensors: "*", kind: rate, rate: {direction: down}, raise: "> 6", for: 2s}
`,
}

// checkInvariants checks what must hold of any event sequence, and returns
// the events of each (rule, sensor) in order.
func checkInvariants(tb testing.TB, e *Engine, evs []Event) map[string][]Event {
	tb.Helper()
	per := map[string][]Event{}
	for i, ev := range evs {
		k := ev.Rule + "/" + ev.Sensor
		prev := per[k]
		switch ev.State {
		case Raised:
			if len(prev) > 0 && prev[len(prev)-1].State == Raised {
				tb.Fatalf("event %d: %s raised again while active", i, short(ev))
			}
			if d := ev.Time.Sub(ev.Since); d < time.Duration(e.byName[ev.Rule].forDur) {
				tb.Fatalf("event %d: %s raised after %v, before its for", i, short(ev), d)
			}
		case Cleared:
			if len(prev) == 0 || prev[len(prev)-1].State != Raised {
				tb.Fatalf("event %d: %s cleared without a raise", i, short(ev))
			}
			if !ev.Since.Equal(prev[len(prev)-1].Since) {
				tb.Fatalf("event %d: %s has another since than its raise", i, short(ev))
			}
		default:
			tb.Fatalf("event %d: state %q", i, ev.State)
		}
		if len(prev) > 0 && ev.Time.Before(prev[len(prev)-1].Time) {
			tb.Fatalf("event %d: %s goes back in time", i, short(ev))
		}
		if ev.Since.After(ev.Time) || ev.WindowStart.After(ev.WindowEnd) {
			tb.Fatalf("event %d: %s: since or window out of order: %+v", i, short(ev), ev)
		}
		// What the uplink will do with it must be a valid record.
		rec := protocol.Record{Seq: uint64(i + 1), Kind: protocol.KindAlert, Time: ev.Time.UnixMilli(), Sensor: ev.Sensor,
			Alert: &protocol.Alert{Rule: ev.Rule, State: string(ev.State), Severity: ev.Severity, Value: ev.Value,
				Window: ev.Window, Since: ev.Since.UnixMilli(), Message: ev.Message, Labels: ev.Labels}}
		if err := rec.Validate(); err != nil {
			tb.Fatalf("event %d: %s: not a valid protocol record: %v", i, short(ev), err)
		}
		per[k] = append(prev, ev)
	}
	// Active agrees with the transitions.
	var want []string
	for k, l := range per {
		if l[len(l)-1].State == Raised {
			want = append(want, k)
		}
	}
	var got []string
	for _, ev := range e.Active(nil) {
		got = append(got, ev.Rule+"/"+ev.Sensor)
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) || e.Stats().Active != len(want) {
		tb.Fatalf("Active = %v, Stats.Active = %d, want %v", got, e.Stats().Active, want)
	}
	return per
}

// checkAdvanceInvariance runs ops (with Advance) and checks the invariants,
// then runs the readings that were not late without any Advance, and checks
// that each (rule, sensor) saw the same events.
func checkAdvanceInvariance(tb testing.TB, yml string, ops []fuzzOp) {
	tb.Helper()
	e1 := mustEngine(tb, yml)
	var evs1 []Event
	var kept []Reading
	tm, last := t0, t0
	for _, o := range ops {
		tm = tm.Add(o.dt)
		if tm.After(last) {
			last = tm
		}
		if o.sensor < 0 {
			evs1 = e1.Advance(evs1, tm)
			continue
		}
		r := Reading{Sensor: fuzzSensors[o.sensor], Value: o.v, Time: tm}
		late := e1.Stats().Late
		evs1 = e1.Observe(evs1, r)
		if e1.Stats().Late == late {
			kept = append(kept, r)
		}
	}
	end := last.Add(time.Hour)
	evs1 = e1.Advance(evs1, end)
	per1 := checkInvariants(tb, e1, evs1)

	e2 := mustEngine(tb, yml)
	var evs2 []Event
	for _, r := range kept {
		evs2 = e2.Observe(evs2, r)
	}
	evs2 = e2.Advance(evs2, end)
	if e2.Stats().Late != 0 {
		tb.Fatalf("without Advance, %d readings are late", e2.Stats().Late)
	}
	per2 := checkInvariants(tb, e2, evs2)
	for k := range mergeKeys(per1, per2) {
		a, b := fmt.Sprint(shorts(per1[k])), fmt.Sprint(shorts(per2[k]))
		if a != b {
			tb.Fatalf("%s: with Advance:\n\t%s\nwithout:\n\t%s", k, a, b)
		}
		for i := range per1[k] {
			x, y := per1[k][i], per2[k][i]
			if !x.WindowStart.Equal(y.WindowStart) || !x.WindowEnd.Equal(y.WindowEnd) || x.Message != y.Message {
				tb.Fatalf("%s event %d differs:\n\t%+v\n\t%+v", k, i, x, y)
			}
		}
	}
}

func mergeKeys[V any](a, b map[string]V) map[string]bool {
	m := map[string]bool{}
	for k := range a {
		m[k] = true
	}
	for k := range b {
		m[k] = true
	}
	return m
}
