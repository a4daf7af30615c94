package rules

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"
)

var classicYAML = func() string {
	b, err := os.ReadFile("testdata/classic.yaml")
	if err != nil {
		panic(err)
	}
	return string(b)
}()

// classicWith is the classic rule set with another default lateness.
func classicWith(lateness string) string {
	return strings.Replace(classicYAML, "lateness: 2s", "lateness: "+lateness, 1)
}

// benchReadings is n readings of sensors temp-1..temp-k and ph-1..ph-k
// (k = sensors/2), round robin, each sensor once a second, with values that
// stay normal (no alert changes state, also when the cycle repeats).
func benchReadings(sensors, n int) []Reading {
	names := make([]string, sensors)
	for i := range names {
		if i%2 == 0 {
			names[i] = fmt.Sprintf("temp-%d", i/2+1)
		} else {
			names[i] = fmt.Sprintf("ph-%d", i/2+1)
		}
	}
	out := make([]Reading, n)
	for i := range out {
		sn := i % sensors
		round := i / sensors
		v := 21 + math.Sin(float64(round)/7)
		if sn%2 == 1 {
			v = 5 + 0.1*math.Sin(float64(round)/5)
		}
		out[i] = Reading{Sensor: names[sn], Value: v, Time: t0.Add(time.Duration(round)*time.Second + time.Duration(sn)*time.Millisecond)}
	}
	return out
}

// jitter moves each reading back by up to max, so that a sensor's readings
// arrive out of order (within max).
func jitter(in []Reading, max time.Duration) []Reading {
	rng := rand.New(rand.NewPCG(9, 10))
	out := make([]Reading, len(in))
	for i, r := range in {
		r.Time = r.Time.Add(-time.Duration(rng.Int64N(int64(max))))
		out[i] = r
	}
	return out
}

func benchEngine(b *testing.B, yml string, in []Reading, cycle time.Duration) {
	e := mustEngine(b, yml)
	var dst []Event
	for _, r := range in {
		dst = e.Observe(dst[:0], r)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var shift time.Duration
	for i := 0; i < b.N; i++ {
		j := i % len(in)
		if j == 0 {
			shift += cycle
		}
		r := in[j]
		r.Time = r.Time.Add(shift)
		dst = e.Observe(dst[:0], r)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "readings/s")
	if st := e.Stats(); st.Invalid+st.Overflow+st.Unmatched != 0 {
		b.Fatalf("stats = %+v", st)
	}
}

// 20 sensors (10 temperature, 10 pH) × the classic rule set: 3 rules judge
// each temperature reading, 1 each pH reading.
func BenchmarkEngineClassic(b *testing.B) {
	in := benchReadings(20, 20*600)
	cycle := time.Hour
	b.Run("lateness=0", func(b *testing.B) { benchEngine(b, classicWith("0s"), in, cycle) })
	b.Run("lateness=2s", func(b *testing.B) { benchEngine(b, classicWith("2s"), in, cycle) })
	b.Run("lateness=2s/out-of-order", func(b *testing.B) { benchEngine(b, classicWith("2s"), jitter(in, 1500*time.Millisecond), cycle) })
}

// Heavier windows on the same 20 sensors: a 5-minute hopping average every
// 10 s, the max of the last 100 readings, a z-score over the last 100 and a
// one-minute tumbling stddev.
func BenchmarkEngineWindows(b *testing.B) {
	const yml = `
rules:
  - {name: hop, sensors: "*", window: {type: hopping, size: 5m, step: 10s}, aggregate: avg, raise: "> 1000"}
  - {name: max, sensors: "*", window: {type: count, count: 100}, aggregate: max, raise: "> 1000"}
  - {name: z, sensors: "*", kind: zscore, window: {type: count, count: 100}, min_stddev: 0.01, raise: "> 1000"}
  - {name: sd, sensors: "*", window: {type: tumbling, size: 1m}, aggregate: stddev, raise: "> 1000"}
`
	benchEngine(b, yml, benchReadings(20, 20*600), time.Hour)
}

// Advance over 20 sensors × the classic rules, once a second.
func BenchmarkEngineAdvance(b *testing.B) {
	e := mustEngine(b, classicWith("2s"))
	var dst []Event
	for _, r := range benchReadings(20, 20*60) {
		dst = e.Observe(dst[:0], r)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dst = e.Advance(dst[:0], t0.Add(time.Minute+time.Duration(i)*time.Second))
	}
}
