package sim

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/outpost-iot/outpost/drivers"
)

// Step changes the level by Size from offset At after Start on.
type Step struct {
	At   time.Duration `yaml:"at" json:"at"`
	Size float64       `yaml:"size" json:"size"`
}

// Opts configures a Dev.
type Opts struct {
	// Name is the sensor's name; default "sim-" + the quantity.
	Name string
	// Quantity is what it pretends to measure; default temperature.
	Quantity drivers.Quantity
	// Seed selects the random sequence.
	Seed uint64
	// Base is the level at Start.
	Base float64
	// Noise is the standard deviation of the gaussian noise.
	Noise float64
	// DriftPerHour is added per hour since Start.
	DriftPerHour float64
	// SpikeProb is the probability that a reading carries a spike of
	// ±SpikeSize (sign at random).
	SpikeProb, SpikeSize float64
	// Steps are level changes at offsets from Start.
	Steps []Step
	// DropoutProb is the probability that a reading is a CauseMissing fault.
	DropoutProb float64
	// StuckProb is the probability that the value freezes at the last one
	// for StuckFor.
	StuckProb float64
	StuckFor  time.Duration
	// Clock gives the time for Sense; nil means time.Now.
	Clock func() time.Time
	// Start is time zero for drift and steps; zero means the time of the
	// first reading.
	Start time.Time
}

// DefaultOpts is a steady 20 °C with a little noise.
var DefaultOpts = Opts{Quantity: drivers.Temperature, Base: 20, Noise: 0.05}

// DemoTemperature is a water temperature of 14 °C that steps down to 8 °C 10 s
// after Start and back up 35 s after Start: a "below 10 °C" alert raises and
// clears within the first minute, with room for hysteresis and a short window.
func DemoTemperature(seed uint64) Opts {
	return Opts{
		Name: "sim-temperature", Quantity: drivers.Temperature, Seed: seed,
		Base: 14, Noise: 0.05,
		Steps: []Step{{At: 10 * time.Second, Size: -6}, {At: 35 * time.Second, Size: 6}},
	}
}

// DemoPH is a pH of 5.0 that steps up to 6.2 10 s after Start and back 35 s
// after Start: a "pH above 5.5" alert raises and clears within the first minute.
func DemoPH(seed uint64) Opts {
	return Opts{
		Name: "sim-ph", Quantity: drivers.PH, Seed: seed,
		Base: 5.0, Noise: 0.02,
		Steps: []Step{{At: 10 * time.Second, Size: 1.2}, {At: 35 * time.Second, Size: -1.2}},
	}
}

// Validate checks the options and returns the first problem.
func (o *Opts) Validate() error {
	if o.Quantity != "" && o.Quantity.Unit() == "" {
		return fmt.Errorf("sim: unknown quantity %q", o.Quantity)
	}
	for _, p := range []struct {
		name string
		v    float64
	}{{"spike_prob", o.SpikeProb}, {"dropout_prob", o.DropoutProb}, {"stuck_prob", o.StuckProb}} {
		if !(p.v >= 0 && p.v <= 1) {
			return fmt.Errorf("sim: %s %g outside 0..1", p.name, p.v)
		}
	}
	nums := []float64{o.Base, o.Noise, o.DriftPerHour, o.SpikeSize}
	for _, s := range o.Steps {
		nums = append(nums, s.Size)
	}
	for _, v := range nums {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("sim: %g is not a number", v)
		}
	}
	if o.Noise < 0 {
		return fmt.Errorf("sim: noise %g is negative", o.Noise)
	}
	if o.StuckFor < 0 {
		return fmt.Errorf("sim: stuck_for %v is negative", o.StuckFor)
	}
	for _, s := range o.Steps {
		if s.At < 0 {
			return fmt.Errorf("sim: step at %v is negative", s.At)
		}
	}
	return nil
}

// Dev is a simulated sensor.
type Dev struct {
	o          Opts
	mu         sync.Mutex
	rng        *rand.Rand
	start      time.Time
	last       float64
	haveLast   bool
	stuckUntil time.Time
}

var _ drivers.Sensor = (*Dev)(nil)

// New returns a simulated sensor; opts nil means DefaultOpts.
func New(opts *Opts) (*Dev, error) {
	if opts == nil {
		opts = &DefaultOpts
	}
	o := *opts
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Quantity == "" {
		o.Quantity = drivers.Temperature
	}
	if o.Name == "" {
		o.Name = "sim-" + string(o.Quantity)
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	o.Steps = append([]Step(nil), o.Steps...)
	return &Dev{o: o, rng: rand.New(rand.NewPCG(o.Seed, 0x5eed0f0a7b05)), start: o.Start}, nil
}

// Name implements drivers.Sensor.
func (d *Dev) Name() string { return d.o.Name }

// Quantity implements drivers.Sensor.
func (d *Dev) Quantity() drivers.Quantity { return d.o.Quantity }

func (d *Dev) String() string { return "sim(" + d.o.Name + ")" }

// Sense returns the reading at Opts.Clock().
func (d *Dev) Sense(ctx context.Context) (float64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return d.SenseAt(d.o.Clock())
}

// SenseAt returns the reading at t.
func (d *Dev) SenseAt(t time.Time) (float64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.start.IsZero() {
		d.start = t
	}
	// Always the same draws, in the same order.
	uDrop, uStuck, uSpike, uSign := d.rng.Float64(), d.rng.Float64(), d.rng.Float64(), d.rng.Float64()
	n := d.rng.NormFloat64()

	if uDrop < d.o.DropoutProb {
		return 0, drivers.NewFault(drivers.CauseMissing, nil, "sim: %s: simulated dropout", d.o.Name)
	}
	if d.haveLast && t.Before(d.stuckUntil) {
		return d.last, nil
	}
	if d.haveLast && uStuck < d.o.StuckProb {
		d.stuckUntil = t.Add(d.o.StuckFor)
		return d.last, nil
	}
	el := t.Sub(d.start)
	v := d.o.Base + d.o.DriftPerHour*el.Hours() + d.o.Noise*n
	for _, s := range d.o.Steps {
		if el >= s.At {
			v += s.Size
		}
	}
	if uSpike < d.o.SpikeProb {
		if uSign < 0.5 {
			v -= d.o.SpikeSize
		} else {
			v += d.o.SpikeSize
		}
	}
	d.last, d.haveLast = v, true
	return v, nil
}
