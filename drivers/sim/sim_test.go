package sim

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/drivers"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// series reads n values one second apart from t0.
func series(t *testing.T, o Opts, n int) ([]float64, []error) {
	t.Helper()
	d, err := New(&o)
	if err != nil {
		t.Fatal(err)
	}
	vs := make([]float64, n)
	errs := make([]error, n)
	for i := range n {
		vs[i], errs[i] = d.SenseAt(t0.Add(time.Duration(i) * time.Second))
	}
	return vs, errs
}

func TestDeterministic(t *testing.T) {
	o := Opts{Seed: 42, Base: 20, Noise: 0.5, SpikeProb: 0.1, SpikeSize: 5, DropoutProb: 0.05, StuckProb: 0.05, StuckFor: 3 * time.Second}
	a, aerr := series(t, o, 200)
	b, berr := series(t, o, 200)
	for i := range a {
		if a[i] != b[i] || (aerr[i] == nil) != (berr[i] == nil) {
			t.Fatalf("reading %d differs: %v/%v vs %v/%v", i, a[i], aerr[i], b[i], berr[i])
		}
	}
	o.Seed = 43
	c, _ := series(t, o, 200)
	same := 0
	for i := range a {
		if a[i] == c[i] {
			same++
		}
	}
	if same > 20 {
		t.Fatalf("seeds 42 and 43 agree on %d of 200 readings", same)
	}
}

func TestShape(t *testing.T) {
	tests := []struct {
		name string
		o    Opts
		at   time.Duration
		want float64
		tol  float64
	}{
		{"base", Opts{Base: 7}, 0, 7, 0},
		{"drift after 2 h", Opts{Base: 7, DriftPerHour: -0.25}, 2 * time.Hour, 6.5, 1e-12},
		{"before a step", Opts{Base: 10, Steps: []Step{{At: time.Minute, Size: 3}}}, 59 * time.Second, 10, 0},
		{"at a step", Opts{Base: 10, Steps: []Step{{At: time.Minute, Size: 3}}}, time.Minute, 13, 0},
		{"two steps", Opts{Base: 10, Steps: []Step{{At: time.Minute, Size: 3}, {At: 2 * time.Minute, Size: -1}}}, 3 * time.Minute, 12, 0},
		{"every reading spikes", Opts{Base: 10, SpikeProb: 1, SpikeSize: 4}, time.Second, 4, -1}, // |v-10| == 4
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.o
			o.Start = t0
			d, err := New(&o)
			if err != nil {
				t.Fatal(err)
			}
			v, err := d.SenseAt(t0.Add(tt.at))
			if err != nil {
				t.Fatal(err)
			}
			if tt.tol < 0 {
				if math.Abs(math.Abs(v-tt.o.Base)-tt.want) > 1e-12 {
					t.Fatalf("spike: %v, want base ± %v", v, tt.want)
				}
				return
			}
			if math.Abs(v-tt.want) > tt.tol {
				t.Fatalf("SenseAt(+%v) = %v, want %v", tt.at, v, tt.want)
			}
		})
	}
}

func TestNoise(t *testing.T) {
	vs, _ := series(t, Opts{Seed: 1, Base: 20, Noise: 0.5}, 5000)
	var sum, sq float64
	for _, v := range vs {
		sum += v
	}
	mean := sum / float64(len(vs))
	for _, v := range vs {
		sq += (v - mean) * (v - mean)
	}
	sd := math.Sqrt(sq / float64(len(vs)-1))
	if math.Abs(mean-20) > 0.05 || math.Abs(sd-0.5) > 0.05 {
		t.Fatalf("mean %.3f sd %.3f, want 20 and 0.5", mean, sd)
	}
}

func TestDropoutsAndSpikes(t *testing.T) {
	vs, errs := series(t, Opts{Seed: 7, Base: 20, DropoutProb: 0.2, SpikeProb: 0.1, SpikeSize: 10}, 5000)
	drops, spikes := 0, 0
	for i, err := range errs {
		if err != nil {
			var f *drivers.Fault
			if !errors.As(err, &f) || f.Cause != drivers.CauseMissing {
				t.Fatalf("dropout error %v is not a missing fault", err)
			}
			drops++
			continue
		}
		if math.Abs(vs[i]-20) == 10 {
			spikes++
		}
	}
	if drops < 900 || drops > 1100 {
		t.Errorf("%d dropouts in 5000, want about 1000", drops)
	}
	if spikes < 320 || spikes > 480 { // 10 % of the 80 % that are not dropouts
		t.Errorf("%d spikes in about 4000, want about 400", spikes)
	}
}

func TestStuck(t *testing.T) {
	d, err := New(&Opts{Seed: 3, Base: 20, Noise: 1, StuckProb: 1, StuckFor: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	first, _ := d.SenseAt(t0)                   // nothing to stick to yet
	v, _ := d.SenseAt(t0.Add(time.Second))      // sticks until +11 s
	w, _ := d.SenseAt(t0.Add(10 * time.Second)) // still stuck
	if v != first || w != first {
		t.Fatalf("stuck values %v %v, want %v", v, w, first)
	}
	// StuckProb 0 after the stretch: values move again.
	d.o.StuckProb = 0
	x, _ := d.SenseAt(t0.Add(11 * time.Second))
	if x == first {
		t.Fatalf("value %v still stuck after StuckFor", x)
	}
}

// TestDemoPresets checks the demo's promise: the alert conditions raise and
// clear within the first minute, with margin for hysteresis, for any seed.
func TestDemoPresets(t *testing.T) {
	for seed := uint64(0); seed < 20; seed++ {
		temp, _ := series(t, DemoTemperature(seed), 61)
		ph, _ := series(t, DemoPH(seed), 61)
		for s := 0; s <= 60; s++ {
			switch {
			case s >= 12 && s <= 33:
				if temp[s] >= 9 || ph[s] <= 6 {
					t.Fatalf("seed %d, %d s: temperature %.2f (want < 9), pH %.2f (want > 6)", seed, s, temp[s], ph[s])
				}
			case s < 10 || s >= 35:
				if temp[s] <= 13 || ph[s] >= 5.3 {
					t.Fatalf("seed %d, %d s: temperature %.2f (want > 13), pH %.2f (want < 5.3)", seed, s, temp[s], ph[s])
				}
			}
		}
	}
	d, _ := New(&Opts{Quantity: drivers.PH})
	if d.Name() != "sim-ph" || d.Quantity() != drivers.PH {
		t.Fatalf("Name/Quantity = %q %q", d.Name(), d.Quantity())
	}
}

func TestClock(t *testing.T) {
	now := t0
	o := DemoTemperature(1)
	o.Clock = func() time.Time { return now }
	d, err := New(&o)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if v, _ := d.Sense(ctx); v < 13 {
		t.Fatalf("at start: %v", v)
	}
	now = now.Add(20 * time.Second)
	if v, _ := d.Sense(ctx); v > 9 {
		t.Fatalf("at 20 s: %v", v)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := d.Sense(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sense(cancelled) = %v", err)
	}
}

func TestValidate(t *testing.T) {
	for _, o := range []Opts{
		{Quantity: "weight"},
		{SpikeProb: 1.5},
		{DropoutProb: -0.1},
		{StuckProb: math.NaN()},
		{Noise: -1},
		{Base: math.Inf(1)},
		{StuckFor: -time.Second},
		{Steps: []Step{{At: -time.Second, Size: 1}}},
		{Steps: []Step{{At: time.Second, Size: math.NaN()}}},
	} {
		if _, err := New(&o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}
