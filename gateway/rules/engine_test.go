package rules

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

// judgements runs ins through an engine built from yml and returns every
// judgement of every rule as "sensor value @t [ws,we]", times as offsets.
func judgements(t *testing.T, yml string, ins []in) ([]string, *Engine, []Event) {
	t.Helper()
	e := mustEngine(t, yml)
	var got []string
	for _, r := range e.rules {
		r.trace = func(sensor string, o obs) {
			got = append(got, fmt.Sprintf("%s %.6g @%v [%v,%v]", sensor, o.v,
				unixTime(o.t).Sub(t0), unixTime(o.ws).Sub(t0), unixTime(o.we).Sub(t0)))
		}
	}
	evs := run(e, ins)
	return got, e, evs
}

func checkStrings(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\n got:\n\t%s\nwant:\n\t%s", what, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

func TestThresholdHysteresis(t *testing.T) {
	wobble := series("t", 0, time.Second, 10.2, 9.9, 10.1, 9.8, 10.4, 10.5, 10.6, 10.0, 9.95)
	tests := []struct {
		name string
		yml  string
		want []string
	}{
		{
			name: "explicit clear leaves a gap: no flapping",
			yml:  `{rules: [{name: low, sensors: t, raise: "< 10", clear: "> 10.5"}]}`,
			want: []string{
				"raised low/t 9.9 @1s since 1s",
				"cleared low/t 10.6 @6s since 1s",
				"raised low/t 9.95 @8s since 8s",
			},
		},
		{
			name: "default clear is not-raise: follows every crossing",
			yml:  `{rules: [{name: low, sensors: t, raise: "< 10"}]}`,
			want: []string{
				"raised low/t 9.9 @1s since 1s",
				"cleared low/t 10.1 @2s since 1s",
				"raised low/t 9.8 @3s since 3s",
				"cleared low/t 10.4 @4s since 3s",
				"raised low/t 9.95 @8s since 8s",
			},
		},
		{
			name: "inclusive operators",
			yml:  `{rules: [{name: low, sensors: t, raise: "<= 9.9", clear: ">= 10.5"}]}`,
			want: []string{
				"raised low/t 9.9 @1s since 1s",
				"cleared low/t 10.5 @5s since 1s",
			},
		},
		{
			name: "above",
			yml:  `{rules: [{name: high, sensors: t, raise: "> 10.3", clear: "< 10"}]}`,
			want: []string{
				"raised high/t 10.4 @4s since 4s",
				"cleared high/t 9.95 @8s since 4s",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := mustEngine(t, tc.yml)
			checkEvents(t, run(e, wobble), tc.want)
		})
	}
}

func TestFor(t *testing.T) {
	const yml = `{rules: [{name: ph, sensors: ph, raise: "> 5.5", clear: "< 5.4", for: 10s}]}`
	tests := []struct {
		name string
		ins  []in
		want []string
	}{
		{
			name: "held for exactly for, judged by a reading",
			ins:  series("ph", 0, 2*time.Second, 5.6, 5.6, 5.6, 5.6, 5.6, 5.6),
			want: []string{"raised ph/ph 5.6 @10s since 0s"},
		},
		{
			name: "broken before for: starts over",
			ins: cat(series("ph", 0, 2*time.Second, 5.6, 5.6, 5.6, 5.45, 5.6, 5.6, 5.6, 5.6, 5.6),
				series("ph", 18*time.Second, time.Second, 5.7)),
			want: []string{"raised ph/ph 5.7 @18s since 8s"},
		},
		{
			name: "sparse readings: raised at since+for, not at the next reading",
			ins:  series("ph", 0, 3*time.Second, 5.6, 5.6, 5.6, 5.6, 5.6),
			want: []string{"raised ph/ph 5.6 @10s since 0s"},
		},
		{
			name: "readings stop: Advance fires the timer once since+for has passed",
			ins:  []in{{"ph", 5.6, 0}, adv(sec(5)), adv(sec(10)), adv(sec(10.001))},
			want: []string{"raised ph/ph 5.6 @10s since 0s"},
		},
		{
			name: "a contrary reading at exactly since+for wins",
			ins:  []in{{"ph", 5.6, 0}, adv(sec(10)), {"ph", 5.45, sec(10)}, adv(sec(30))},
			want: nil,
		},
		{
			name: "raise by timer, then clear",
			ins:  []in{{"ph", 5.6, 0}, adv(sec(11)), {"ph", 5.3, sec(12)}},
			want: []string{"raised ph/ph 5.6 @10s since 0s", "cleared ph/ph 5.3 @12s since 0s"},
		},
		{
			name: "a late-arriving contrary reading cannot undo a fired timer",
			ins:  []in{{"ph", 5.6, 0}, {"ph", 5.6, sec(20)}, {"ph", 5.0, sec(15)}},
			want: []string{"raised ph/ph 5.6 @10s since 0s"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := mustEngine(t, yml)
			checkEvents(t, run(e, tc.ins), tc.want)
		})
	}
}

func TestWindows(t *testing.T) {
	// 3 1 4 1 5 at 0..4 s: avg 2.8, min 1, max 5, last 5, count 5, stddev 1.6.
	pi := series("t", 0, time.Second, 3, 1, 4, 1, 5)
	tumbling := func(agg string) string {
		return `{rules: [{name: w, sensors: t, window: {type: tumbling, size: 10s}, aggregate: ` + agg + `, raise: "> 1000"}]}`
	}
	tests := []struct {
		name string
		yml  string
		ins  []in
		want []string
	}{
		{"tumbling avg", tumbling("avg"), cat(pi, []in{adv(sec(10))}), []string{"t 2.8 @10s [0s,10s]"}},
		{"tumbling min", tumbling("min"), cat(pi, []in{adv(sec(10))}), []string{"t 1 @10s [0s,10s]"}},
		{"tumbling max", tumbling("max"), cat(pi, []in{adv(sec(10))}), []string{"t 5 @10s [0s,10s]"}},
		{"tumbling last", tumbling("last"), cat(pi, []in{adv(sec(10))}), []string{"t 5 @10s [0s,10s]"}},
		{"tumbling count", tumbling("count"), cat(pi, []in{adv(sec(10))}), []string{"t 5 @10s [0s,10s]"}},
		{"tumbling stddev", tumbling("stddev"), cat(pi, []in{adv(sec(10))}), []string{"t 1.6 @10s [0s,10s]"}},
		{
			name: "tumbling: a window closes only once the watermark reaches its end",
			yml:  tumbling("avg"),
			ins:  cat(pi, []in{adv(sec(9.999)), {"t", 7, sec(9.999)}, {"t", 100, sec(10)}, {"t", 200, sec(25)}}),
			want: []string{"t 3.5 @10s [0s,10s]", "t 100 @20s [10s,20s]"},
		},
		{
			name: "tumbling: empty windows are not judged",
			yml:  tumbling("avg"),
			ins:  []in{{"t", 1, sec(5)}, {"t", 2, sec(45)}, adv(sec(100))},
			want: []string{"t 1 @10s [0s,10s]", "t 2 @50s [40s,50s]"},
		},
		{
			name: "tumbling count: an empty window counts 0, once per silence",
			yml:  tumbling("count"),
			ins:  []in{{"t", 1, sec(5)}, {"t", 1, sec(6)}, adv(sec(100)), {"t", 1, sec(101)}, adv(sec(130))},
			want: []string{"t 2 @10s [0s,10s]", "t 0 @20s [10s,20s]", "t 1 @1m50s [1m40s,1m50s]", "t 0 @2m0s [1m50s,2m0s]"},
		},
		{
			name: "tumbling min_samples",
			yml:  `{rules: [{name: w, sensors: t, window: {type: tumbling, size: 10s}, aggregate: avg, min_samples: 3, raise: "> 1000"}]}`,
			ins:  []in{{"t", 1, sec(1)}, {"t", 2, sec(2)}, {"t", 4, sec(11)}, {"t", 5, sec(12)}, {"t", 6, sec(13)}, adv(sec(20))},
			want: []string{"t 5 @20s [10s,20s]"},
		},
		{
			name: "hopping avg 30s every 10s",
			yml:  `{rules: [{name: w, sensors: t, window: {type: hopping, size: 30s, step: 10s}, aggregate: avg, raise: "> 1000"}]}`,
			ins:  []in{{"t", 1, 0}, {"t", 2, sec(5)}, {"t", 3, sec(15)}, {"t", 4, sec(25)}, {"t", 5, sec(35)}, adv(sec(70))},
			want: []string{
				"t 1.5 @10s [-20s,10s]",
				"t 2 @20s [-10s,20s]",
				"t 2.5 @30s [0s,30s]",
				"t 4 @40s [10s,40s]",
				"t 4.5 @50s [20s,50s]",
				"t 5 @1m0s [30s,1m0s]",
			},
		},
		{
			name: "hopping max and stddev merge panes",
			yml: `{rules: [{name: mx, sensors: t, window: {type: hopping, size: 20s, step: 10s}, aggregate: max, raise: "> 1000"},
			               {name: sd, sensors: t, window: {type: hopping, size: 20s, step: 10s}, aggregate: stddev, raise: "> 1000"}]}`,
			ins: []in{{"t", 2, sec(1)}, {"t", 4, sec(2)}, {"t", 9, sec(11)}, {"t", 1, sec(12)}, adv(sec(30))},
			want: []string{
				"t 4 @10s [-10s,10s]", "t 1 @10s [-10s,10s]",
				// The reading at 11 s closes [-10s,10s) for both rules; Advance
				// then moves each rule's state in turn.
				"t 9 @20s [0s,20s]", "t 9 @30s [10s,30s]",
				"t 3.08221 @20s [0s,20s]", "t 4 @30s [10s,30s]", // stddev of 2 4 9 1; of 9 1
			},
		},
		{
			name: "count window avg",
			yml:  `{rules: [{name: w, sensors: t, window: {type: count, count: 3}, aggregate: avg, raise: "> 1000"}]}`,
			ins:  series("t", 0, time.Second, 1, 2, 3, 4, 5),
			want: []string{"t 2 @2s [0s,2s]", "t 3 @3s [1s,3s]", "t 4 @4s [2s,4s]"},
		},
		{
			name: "count window min with min_samples",
			yml:  `{rules: [{name: w, sensors: t, window: {type: count, count: 3}, aggregate: min, min_samples: 2, raise: "> 1000"}]}`,
			ins:  series("t", 0, time.Second, 5, 1, 4, 2, 3, 0),
			want: []string{"t 1 @1s [0s,1s]", "t 1 @2s [0s,2s]", "t 1 @3s [1s,3s]", "t 2 @4s [2s,4s]", "t 0 @5s [3s,5s]"},
		},
		{
			name: "count window max, last, count, stddev",
			yml: `{rules: [{name: mx, sensors: t, window: {type: count, count: 3}, aggregate: max, raise: "> 1000"},
			               {name: l, sensors: t, window: {type: count, count: 3}, aggregate: last, raise: "> 1000"},
			               {name: c, sensors: t, window: {type: count, count: 3}, aggregate: count, raise: "> 1000"},
			               {name: sd, sensors: t, window: {type: count, count: 2}, aggregate: stddev, raise: "> 1000"}]}`,
			ins: series("t", 0, time.Second, 5, 1, 4, 2),
			want: []string{
				"t 2 @1s [0s,1s]", // stddev of 5 1
				"t 5 @2s [0s,2s]", "t 4 @2s [0s,2s]", "t 3 @2s [0s,2s]", "t 1.5 @2s [1s,2s]",
				"t 4 @3s [1s,3s]", "t 2 @3s [1s,3s]", "t 3 @3s [1s,3s]", "t 1 @3s [2s,3s]",
			},
		},
		{
			name: "no window judges each reading",
			yml:  `{rules: [{name: w, sensors: t, raise: "> 1000"}]}`,
			ins:  series("t", 0, time.Second, 5, 1),
			want: []string{"t 5 @0s [0s,0s]", "t 1 @1s [1s,1s]"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _, _ := judgements(t, tc.yml, tc.ins)
			checkStrings(t, "judgements", got, tc.want)
		})
	}
}

func TestWindowAlerts(t *testing.T) {
	const yml = `{rules: [{name: avg, sensors: t, window: {type: tumbling, size: 1m}, aggregate: avg, raise: "> 30", clear: "< 29"}]}`
	e := mustEngine(t, yml)
	evs := run(e, []in{{"t", 28, 0}, {"t", 32, sec(20)}, {"t", 35, sec(40)}, {"t", 20, sec(60)}, adv(sec(120))})
	checkEvents(t, evs, []string{
		"raised avg/t 31.6667 @1m0s since 1m0s",
		"cleared avg/t 20 @2m0s since 1m0s",
	})
	if ev := evs[0]; ev.Window != "avg 1m tumbling" || !ev.WindowStart.Equal(t0) || !ev.WindowEnd.Equal(at(time.Minute)) {
		t.Errorf("window = %q [%v, %v)", ev.Window, ev.WindowStart, ev.WindowEnd)
	}
}

func TestLateAndOutOfOrder(t *testing.T) {
	tests := []struct {
		name     string
		yml      string
		ins      []in
		want     []string
		wantLate uint64
	}{
		{
			name:     "no lateness: an older reading is late, an equal time is not",
			yml:      `{rules: [{name: w, sensors: t, raise: "> 1000"}]}`,
			ins:      []in{{"t", 1, sec(5)}, {"t", 2, sec(3)}, {"t", 3, sec(5)}, {"t", 4, sec(6)}},
			want:     []string{"t 1 @5s [5s,5s]", "t 3 @5s [5s,5s]", "t 4 @6s [6s,6s]"},
			wantLate: 1,
		},
		{
			name: "lateness: folded into the right tumbling window, too late dropped",
			yml:  `{lateness: 5s, rules: [{name: w, sensors: t, window: {type: tumbling, size: 10s}, aggregate: avg, raise: "> 1000"}]}`,
			ins: []in{
				{"t", 1, sec(2)}, {"t", 2, sec(12)},
				{"t", 3, sec(8)},  // 4 s behind: in time for [0,10)
				{"t", 4, sec(20)}, // watermark 20: [0,10) closes (20-5 ≥ 10)
				{"t", 5, sec(9)},  // 11 s behind: late
				{"t", 6, sec(16)}, // 4 s behind: in time for [10,20)
				adv(sec(40)),
			},
			want:     []string{"t 2 @10s [0s,10s]", "t 4 @20s [10s,20s]", "t 4 @30s [20s,30s]"},
			wantLate: 1,
		},
		{
			name:     "lateness: rate judges consecutive readings in event-time order",
			yml:      `{rules: [{name: r, sensors: t, kind: rate, lateness: 5s, raise: "> 5"}]}`,
			ins:      []in{{"t", 10, 0}, {"t", 20, sec(2)}, {"t", 12, sec(1)}, adv(sec(10))},
			want:     []string{"t 2 @1s [0s,1s]", "t 8 @2s [1s,2s]"},
			wantLate: 0,
		},
		{
			name:     "lateness: count window in event-time order",
			yml:      `{rules: [{name: c, sensors: t, lateness: 1m, window: {type: count, count: 2}, aggregate: last, raise: "> 1000"}]}`,
			ins:      []in{{"t", 3, sec(3)}, {"t", 1, sec(1)}, {"t", 2, sec(2)}, {"t", 4, sec(4)}, adv(sec(70))},
			want:     []string{"t 2 @2s [1s,2s]", "t 3 @3s [2s,3s]", "t 4 @4s [3s,4s]"},
			wantLate: 0,
		},
		{
			name:     "Advance is a watermark for every sensor",
			yml:      `{rules: [{name: w, sensors: "*", lateness: 2s, raise: "> 1000"}]}`,
			ins:      []in{adv(sec(10)), {"a", 1, sec(7)}, {"a", 2, sec(8)}, {"b", 3, sec(9)}, adv(sec(12))},
			want:     []string{"a 2 @8s [8s,8s]", "b 3 @9s [9s,9s]"},
			wantLate: 1,
		},
		{
			name:     "per-sensor watermarks: one sensor running ahead does not make another late",
			yml:      `{rules: [{name: w, sensors: "*", raise: "> 1000"}]}`,
			ins:      []in{{"a", 1, sec(100)}, {"b", 2, sec(1)}},
			want:     []string{"a 1 @1m40s [1m40s,1m40s]", "b 2 @1s [1s,1s]"},
			wantLate: 0,
		},
		{
			name: "last is the latest in event time, not in arrival",
			yml:  `{rules: [{name: w, sensors: t, lateness: 5s, window: {type: tumbling, size: 10s}, aggregate: last, raise: "> 1000"}]}`,
			ins:  []in{{"t", 1, sec(1)}, {"t", 9, sec(9)}, {"t", 5, sec(5)}, adv(sec(15))},
			want: []string{"t 9 @10s [0s,10s]"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, e, _ := judgements(t, tc.yml, tc.ins)
			checkStrings(t, "judgements", got, tc.want)
			if st := e.Stats(); st.Late != tc.wantLate {
				t.Errorf("Stats.Late = %d, want %d", st.Late, tc.wantLate)
			}
		})
	}
}

func TestRate(t *testing.T) {
	tests := []struct {
		name string
		yml  string
		ins  []in
		want []string
	}{
		{
			name: "jump of more than 5 either way",
			yml:  `{rules: [{name: jump, sensors: t, kind: rate, raise: "> 5"}]}`,
			ins:  series("t", 0, time.Second, 20, 22, 28, 28.5, 22, 21),
			want: []string{
				"raised jump/t 6 @2s since 2s", "cleared jump/t 0.5 @3s since 2s",
				"raised jump/t 6.5 @4s since 4s", "cleared jump/t 1 @5s since 4s",
			},
		},
		{
			name: "up only",
			yml:  `{rules: [{name: jump, sensors: t, kind: rate, rate: {direction: up}, raise: "> 5"}]}`,
			ins:  series("t", 0, time.Second, 20, 14, 21),
			want: []string{"raised jump/t 7 @2s since 2s"},
		},
		{
			name: "down only",
			yml:  `{rules: [{name: drop, sensors: t, kind: rate, rate: {direction: down}, raise: "> 5"}]}`,
			ins:  series("t", 0, time.Second, 20, 14, 21),
			want: []string{"raised drop/t 6 @1s since 1s", "cleared drop/t -7 @2s since 1s"},
		},
		{
			name: "per second",
			yml:  `{rules: [{name: slope, sensors: t, kind: rate, rate: {per: second}, raise: "> 3"}]}`,
			ins:  []in{{"t", 20, 0}, {"t", 22, sec(1)}, {"t", 30, sec(3)}, {"t", 31, sec(3)}, {"t", 32, sec(4)}},
			want: []string{"raised slope/t 4 @3s since 3s", "cleared slope/t 1 @4s since 3s"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkEvents(t, run(mustEngine(t, tc.yml), tc.ins), tc.want)
		})
	}
}

// zscore is the reference: |x - mean| / population stddev of base.
func zscore(base []float64, x float64) float64 {
	var sum float64
	for _, v := range base {
		sum += v
	}
	mean := sum / float64(len(base))
	var ss float64
	for _, v := range base {
		ss += (v - mean) * (v - mean)
	}
	return math.Abs(x-mean) / math.Sqrt(ss/float64(len(base)))
}

func TestZScore(t *testing.T) {
	const yml = `{rules: [{name: z, sensors: t, kind: zscore, window: {type: count, count: 5}, raise: "> 3", clear: "< 2"}]}`
	vals := []float64{10, 10.2, 9.8, 10.1, 9.9, 10.1, 11, 10}
	got, _, evs := judgements(t, yml, series("t", 0, time.Second, vals...))
	var want []string
	for i := 5; i < len(vals); i++ {
		want = append(want, fmt.Sprintf("t %.6g @%v [%v,%v]", zscore(vals[i-5:i], vals[i]), sec(float64(i)), sec(float64(i-5)), sec(float64(i))))
	}
	checkStrings(t, "judgements", got, want)
	z6 := zscore(vals[1:6], 11)
	z7 := zscore(vals[2:7], 10)
	checkEvents(t, evs, []string{
		fmt.Sprintf("raised z/t %.6g @6s since 6s", z6),
		fmt.Sprintf("cleared z/t %.6g @7s since 6s", z7),
	})

	t.Run("flat baseline", func(t *testing.T) {
		flat := series("t", 0, time.Second, 10, 10, 10, 10, 10, 10, 10.5)
		got, _, _ := judgements(t, yml, flat)
		checkStrings(t, "no spread: equal judged 0, different not judged", got, []string{"t 0 @5s [0s,5s]"})
		got, _, evs := judgements(t, `{rules: [{name: z, sensors: t, kind: zscore, window: {type: count, count: 5}, min_stddev: 0.1, raise: "> 3"}]}`, flat)
		checkStrings(t, "min_stddev floors the spread", got, []string{"t 0 @5s [0s,5s]", "t 5 @6s [1s,6s]"})
		checkEvents(t, evs, []string{"raised z/t 5 @6s since 6s"})
	})
	t.Run("min_samples", func(t *testing.T) {
		got, _, _ := judgements(t, `{rules: [{name: z, sensors: t, kind: zscore, window: {type: count, count: 5}, min_samples: 2, raise: "> 3"}]}`,
			series("t", 0, time.Second, 1, 3, 2))
		checkStrings(t, "judgements", got, []string{fmt.Sprintf("t %.6g @2s [0s,2s]", zscore([]float64{1, 3}, 2))})
	})
}

func TestSensors(t *testing.T) {
	const yml = `
max_sensors: 4
rules:
  - {name: low, sensors: [a, "b-*"], raise: "< 10"}
  - {name: all, sensors: "*", raise: "> 100"}
`
	e := mustEngine(t, yml)
	evs := run(e, []in{
		{"a", 5, 0}, {"b-1", 20, 0}, {"b-2", 5, 0}, {"c", 5, 0},
		{"b-1", 5, sec(1)}, {"a", 11, sec(1)}, {"c", 200, sec(1)},
		{"d", 500, sec(2)}, // fifth sensor: over max_sensors
	})
	checkEvents(t, evs, []string{
		"raised low/a 5 @0s since 0s",
		"raised low/b-2 5 @0s since 0s",
		"raised low/b-1 5 @1s since 1s",
		"cleared low/a 11 @1s since 0s",
		"raised all/c 200 @1s since 1s",
	})
	e.Observe(nil, Reading{Sensor: "e", Value: 1, Time: at(sec(3))})
	st := e.Stats()
	if st.Overflow != 2 || st.Unmatched != 0 || st.Active != 3 || st.Readings != 9 {
		t.Errorf("stats = %+v", st)
	}

	t.Run("unmatched", func(t *testing.T) {
		e := mustEngine(t, `{rules: [{name: low, sensors: a, raise: "< 10"}]}`)
		run(e, []in{{"x", 1, 0}, {"x", 1, sec(1)}})
		if st := e.Stats(); st.Unmatched != 2 {
			t.Errorf("stats = %+v", st)
		}
	})
}

func TestInvalidReadings(t *testing.T) {
	e := mustEngine(t, `{rules: [{name: any, sensors: "*", raise: "> 0"}]}`)
	bad := []Reading{
		{Sensor: "", Value: 1, Time: t0},
		{Sensor: strings.Repeat("x", 65), Value: 1, Time: t0},
		{Sensor: "a", Value: math.NaN(), Time: t0},
		{Sensor: "a", Value: math.Inf(1), Time: t0},
		{Sensor: "a", Value: 2e100, Time: t0},
		{Sensor: "a", Value: 1},
		{Sensor: "a", Value: 1, Time: time.Unix(0, 0)},
		{Sensor: "a", Value: 1, Time: time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for _, r := range bad {
		if evs := e.Observe(nil, r); len(evs) != 0 {
			t.Errorf("Observe(%+v) = %v", r, evs)
		}
	}
	if st := e.Stats(); st.Invalid != uint64(len(bad)) || st.Active != 0 {
		t.Errorf("stats = %+v", st)
	}
	if evs := e.Advance(nil, time.Time{}); len(evs) != 0 {
		t.Errorf("Advance(zero) = %v", evs)
	}
}

func TestEventFields(t *testing.T) {
	e := mustEngine(t, `
rules:
  - name: low
    sensors: t
    raise: "< 10"
    severity: critical
    labels: {line: "2", quantity: temperature}
    message: "${sensor} is ${value} °C (${rule}, ${severity}, ${window}, ${state})"
`)
	evs := run(e, []in{{"t", 9.87654, sec(1)}, {"t", 12, sec(2)}})
	if len(evs) != 2 {
		t.Fatalf("events = %v", shorts(evs))
	}
	r := evs[0]
	if r.State != Raised || r.Rule != "low" || r.Sensor != "t" || r.Severity != "critical" ||
		r.Labels["line"] != "2" || r.Value != 9.87654 || r.Window != "reading" ||
		!r.Since.Equal(at(sec(1))) || !r.Time.Equal(at(sec(1))) || !r.WindowStart.Equal(r.Time) || !r.WindowEnd.Equal(r.Time) {
		t.Errorf("raised = %+v", r)
	}
	if want := "t is 9.877 °C (low, critical, reading, raised)"; r.Message != want {
		t.Errorf("message = %q, want %q", r.Message, want)
	}
	if c := evs[1]; c.Message != "low cleared: t reading 12" || !c.Since.Equal(at(sec(1))) {
		t.Errorf("cleared = %+v", c)
	}
}

func TestActiveSnapshotRestore(t *testing.T) {
	const yml = `
rules:
  - {name: low, sensors: "t*", raise: "< 10", clear: "> 10.5"}
  - {name: high, sensors: "t*", raise: "> 50"}
`
	e := mustEngine(t, yml)
	run(e, []in{{"t2", 5, sec(2)}, {"t1", 5, sec(1)}, {"t3", 60, sec(1)}})
	checkEvents(t, e.Active(nil), []string{
		"raised high/t3 60 @1s since 1s",
		"raised low/t1 5 @1s since 1s",
		"raised low/t2 5 @2s since 2s",
	})

	b, err := json.Marshal(e.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	var snap Snapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		t.Fatal(err)
	}

	// Restart with the high rule removed.
	e2 := mustEngine(t, `{rules: [{name: low, sensors: "t*", raise: "< 10", clear: "> 10.5"}]}`)
	evs, err := e2.Restore(nil, snap, at(sec(100)))
	if err != nil {
		t.Fatal(err)
	}
	checkEvents(t, evs, []string{"cleared high/t3 60 @1m40s since 1s"})
	checkEvents(t, e2.Active(nil), []string{
		"raised low/t1 5 @1s since 1s",
		"raised low/t2 5 @2s since 2s",
	})
	// Still low: not raised again. Readings before the raise time are late.
	evs = run(e2, []in{{"t1", 4, sec(101)}, {"t2", 11, sec(1)}, {"t2", 11, sec(102)}, {"t3", 9, sec(103)}})
	checkEvents(t, evs, []string{"cleared low/t2 11 @1m42s since 2s", "raised low/t3 9 @1m43s since 1m43s"})
	if st := e2.Stats(); st.Late != 1 || st.Active != 2 {
		t.Errorf("stats = %+v", st)
	}

	t.Run("errors", func(t *testing.T) {
		if _, err := e2.Restore(nil, snap, t0); err != ErrNotFresh {
			t.Errorf("Restore into a used engine: %v", err)
		}
		e3 := mustEngine(t, yml)
		if _, err := e3.Restore(nil, Snapshot{V: 2}, t0); err == nil {
			t.Error("Restore of a v2 snapshot: no error")
		}
		for _, bad := range []Event{
			{State: Cleared, Rule: "low", Sensor: "t1", Time: t0},
			{State: Raised, Rule: "low", Sensor: "", Time: t0},
			{State: Raised, Rule: "low", Sensor: "t1"},
		} {
			if _, err := e3.Restore(nil, Snapshot{V: SnapshotVersion, Active: []Event{bad}}, t0); err == nil {
				t.Errorf("Restore of %+v: no error", bad)
			}
		}
	})
}

func TestClassicFixture(t *testing.T) {
	b, err := os.ReadFile("testdata/classic.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Lateness is 2 s: a judgement is reported once the watermark is 2 s past.
	var ins []in
	temps := []float64{12, 11, 9.5, 9.9, 10.2, 10.8, 17, 31, 33, 35, 34, 36}
	for i, v := range temps {
		ins = append(ins, in{"temp-1", v, time.Duration(i) * 10 * time.Second})
	}
	for i := 0; i < 20; i++ {
		v := 5.0
		if i >= 3 && i < 15 {
			v = 5.6
		}
		ins = append(ins, in{"ph-1", v, time.Duration(i) * 2 * time.Second})
	}
	ins = append(ins, in{"temp-1", 30, 119 * time.Second}, in{"temp-1", 5, 100 * time.Second}, adv(3*time.Minute))
	evs := run(e, ins)
	checkEvents(t, evs, []string{
		"raised temperature-low/temp-1 9.5 @20s since 20s",
		"cleared temperature-low/temp-1 10.8 @50s since 20s",
		"raised temperature-jump/temp-1 6.2 @1m0s since 1m0s",
		"cleared temperature-jump/temp-1 2 @1m20s since 1m0s",
		"raised ph-high/ph-1 5.6 @16s since 6s",
		"cleared ph-high/ph-1 5 @30s since 6s",
		"raised temperature-jump/temp-1 6 @1m59s since 1m59s",
		"raised temperature-avg-high/temp-1 30.8571 @2m0s since 2m0s",
	})
	if st := e.Stats(); st.Late != 1 || st.Active != 2 {
		t.Errorf("stats = %+v", st)
	}
}
