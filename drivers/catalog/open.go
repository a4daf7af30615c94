package catalog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/onewire"
	"periph.io/x/devices/v3/ds248x"
	"periph.io/x/devices/v3/tmp102"

	"github.com/outpost-iot/outpost/drivers"
	"github.com/outpost-iot/outpost/drivers/bme280"
	"github.com/outpost-iot/outpost/drivers/ds18b20"
	"github.com/outpost-iot/outpost/drivers/ezoph"
	"github.com/outpost-iot/outpost/drivers/internal/hw"
	"github.com/outpost-iot/outpost/drivers/mcp9808"
	"github.com/outpost-iot/outpost/drivers/phprobe"
	"github.com/outpost-iot/outpost/drivers/sim"
	ourtmp102 "github.com/outpost-iot/outpost/drivers/tmp102"
	"github.com/outpost-iot/outpost/drivers/w1"
)

// TempTimeout bounds the read of a temperature sensor that compensates a pH
// sensor, when Env.TempSource is nil.
const TempTimeout = 5 * time.Second

// Env is what Open and Scan need from the host. The caller owns the buses it
// hands out: the catalog never closes them.
type Env struct {
	// I2C opens an I²C bus by name (on a Pi, "1" after host.Init and
	// i2creg.Open("1")). Called at most once per bus by Open and Scan.
	I2C func(bus string) (i2c.Bus, error)
	// OneWire returns the 1-Wire bus of the DS2482 at addr on I²C bus bus.
	// Nil means periph's ds248x on the bus from I2C. Called again after the
	// bridge failed at the I²C level (its error is sticky).
	OneWire func(bus string, addr uint16) (onewire.Bus, error)
	// W1Root is the kernel's 1-Wire device directory; "" means w1.DefaultRoot.
	W1Root string
	// Clock is the time source of sim sensors; nil means time.Now.
	Clock func() time.Time
	// TempSource returns the temperature function for a pH sensor, given the
	// sensor named by its temp_sensor. Nil reads that sensor directly, with
	// TempTimeout. A gateway that already samples it may return its last
	// reading instead.
	TempSource func(s drivers.Sensor) func() (float64, error)
	// Tune, if not nil, is called with a pointer to each driver's options
	// (*tmp102.Opts, *mcp9808.Opts, *bme280.Opts, *phprobe.Opts, *ezoph.Opts,
	// *ds18b20.Opts, *w1.Opts, *sim.Opts of this module) just before the
	// driver is opened, for settings the YAML does not carry. Tests use it to
	// zero the EZO-pH waits.
	Tune func(s Spec, opts any)
	// I2CBuses are the buses Scan probes; nil means {DefaultBus}.
	I2CBuses []string
	// Logger receives open failures and recoveries; nil discards.
	Logger *slog.Logger
}

// Check validates specs (keys "sensors[i]...") and loads their calibration
// files, without touching any hardware: the `check` subcommand's part.
func Check(specs []Spec) error {
	_, err := check(specs)
	return err
}

func check(specs []Spec) (map[int]phprobe.Calibration, error) {
	var ps Problems
	if err := Validate(specs); err != nil {
		ps = append(ps, err.(Problems)...)
	}
	cals := map[int]phprobe.Calibration{}
	for i, s := range specs {
		if s.Type != ADS1115PH || s.Calibration == "" {
			continue
		}
		c, err := phprobe.LoadCalibration(s.Calibration)
		if err != nil {
			ps = append(ps, Problem{fmt.Sprintf("sensors[%d].calibration", i), err.Error()})
			continue
		}
		cals[i] = c
	}
	return cals, ps.err()
}

// Open checks specs (as Check does) and returns one Sensor per Spec, in the
// same order. Configuration problems fail Open with Problems. A chip that
// cannot be opened now does not: its Sensor returns a *drivers.Fault from
// Sense and retries the open on every Sense (the failure is logged once).
func Open(specs []Spec, env Env) ([]drivers.Sensor, error) {
	cals, err := check(specs)
	if err != nil {
		return nil, err
	}
	if env.I2C == nil {
		var ps Problems
		for i, s := range specs {
			if types[s.Type].i2c && (s.Type != DS2482DS18B20 || env.OneWire == nil) {
				ps = append(ps, Problem{fmt.Sprintf("sensors[%d].type", i), fmt.Sprintf("%s needs an I²C bus and this gateway has none", s.Type)})
			}
		}
		if len(ps) > 0 {
			return nil, ps
		}
	}
	o := newOpener(env)
	out := make([]drivers.Sensor, len(specs))
	byName := map[string]*managed{}
	ms := make([]*managed, len(specs))
	for i, s := range specs {
		s = s.WithDefaults()
		m := &managed{spec: s, log: o.log, keep: s.Type == Sim}
		m.lock, m.open, m.fault = o.plan(s, cals[i], byName)
		ms[i], out[i] = m, m
		byName[s.Name] = m
	}
	for _, m := range ms {
		m.mu.Lock()
		if err := m.tryOpen(); err != nil {
			m.log.Warn("sensor not available; will retry on each reading", "sensor", m.spec.Name, "type", m.spec.Type, "err", err)
			m.failing = true
		}
		m.mu.Unlock()
	}
	return out, nil
}

// opener opens buses and shares them, and the per-chip locks.
type opener struct {
	env    Env
	log    *slog.Logger
	mu     sync.Mutex
	i2c    map[string]i2c.Bus
	bridge map[chipKey]onewire.Bus
	locks  map[chipKey]*sync.Mutex
}

type chipKey struct {
	bus  string
	addr Addr
}

func newOpener(env Env) *opener {
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &opener{env: env, log: log, i2c: map[string]i2c.Bus{}, bridge: map[chipKey]onewire.Bus{}, locks: map[chipKey]*sync.Mutex{}}
}

func (o *opener) bus(name string) (i2c.Bus, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if b, ok := o.i2c[name]; ok {
		return b, nil
	}
	if o.env.I2C == nil {
		return nil, fmt.Errorf("catalog: no I²C bus opener for bus %s", name)
	}
	b, err := o.env.I2C(name)
	if err != nil {
		return nil, &drivers.Fault{Cause: drivers.CauseIO, Detail: "open I²C bus " + name, Err: err}
	}
	o.i2c[name] = b
	return b, nil
}

// oneWire returns the (shared) 1-Wire bus behind the DS2482 at k.
func (o *opener) oneWire(k chipKey) (onewire.Bus, error) {
	o.mu.Lock()
	if ow, ok := o.bridge[k]; ok {
		o.mu.Unlock()
		return ow, nil
	}
	o.mu.Unlock()
	var ow onewire.Bus
	var err error
	if o.env.OneWire != nil {
		ow, err = o.env.OneWire(k.bus, uint16(k.addr))
	} else {
		var b i2c.Bus
		if b, err = o.bus(k.bus); err == nil {
			var d *ds248x.Dev
			d, err = ds248x.New(b, uint16(k.addr), &ds248x.DefaultOpts)
			if err == nil {
				ow = d
			} else {
				err = hw.I2CFault(err, "ds2482: open")
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ds2482 %s on bus %s: %w", k.addr, k.bus, err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if prev, ok := o.bridge[k]; ok {
		return prev, nil
	}
	o.bridge[k] = ow
	return ow, nil
}

// dropOneWire forgets the bridge at k if it is still ow, so the next open
// makes a fresh one.
func (o *opener) dropOneWire(k chipKey, ow onewire.Bus) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.bridge[k] == ow {
		delete(o.bridge, k)
	}
}

func (o *opener) lock(k chipKey) *sync.Mutex {
	o.mu.Lock()
	defer o.mu.Unlock()
	l, ok := o.locks[k]
	if !ok {
		l = &sync.Mutex{}
		o.locks[k] = l
	}
	return l
}

func (o *opener) tune(s Spec, opts any) {
	if o.env.Tune != nil {
		o.env.Tune(s, opts)
	}
}

// plan returns how to open s: the chip lock (nil if none is shared), the open
// function and a hook called with every fault that makes the chip reopen.
func (o *opener) plan(s Spec, cal phprobe.Calibration, byName map[string]*managed) (*sync.Mutex, func() (drivers.Sensor, error), func(error)) {
	k := chipKey{s.Bus, s.Addr}
	addr := uint16(s.Addr)
	switch s.Type {
	case W1DS18B20:
		return nil, func() (drivers.Sensor, error) {
			opts := w1.Opts{Name: s.Name}
			o.tune(s, &opts)
			return w1.New(o.env.W1Root, s.ROM, &opts)
		}, nil

	case DS2482DS18B20:
		var cur onewire.Bus
		return o.lock(k), func() (drivers.Sensor, error) {
				ow, err := o.oneWire(k)
				if err != nil {
					return nil, err
				}
				cur = ow
				a, err := ds18b20.ParseROM(s.ROM)
				if err != nil {
					return nil, err
				}
				opts := ds18b20.Opts{Name: s.Name, Resolution: s.Resolution}
				o.tune(s, &opts)
				return ds18b20.New(ow, a, &opts)
			}, func(err error) {
				// An error that is not a 1-Wire bus error came from the
				// bridge or its I²C bus: ds248x keeps it, so make a new one.
				var be onewire.BusError
				if cur != nil && !(errors.As(err, &be) && be.BusError()) {
					o.dropOneWire(k, cur)
				}
			}

	case TMP102:
		return o.lock(k), o.i2cOpen(s, func(b i2c.Bus) (drivers.Sensor, error) {
			opts := ourtmp102.Opts{Name: s.Name, SampleRate: tmp102.RateFourHertz}
			o.tune(s, &opts)
			return ourtmp102.New(b, addr, &opts)
		}), nil

	case MCP9808:
		return o.lock(k), o.i2cOpen(s, func(b i2c.Bus) (drivers.Sensor, error) {
			opts := mcp9808.Opts{Name: s.Name}
			o.tune(s, &opts)
			return mcp9808.New(b, addr, &opts)
		}), nil

	case BME280:
		return o.lock(k), o.i2cOpen(s, func(b i2c.Bus) (drivers.Sensor, error) {
			opts := bme280.DefaultOpts
			opts.Name, opts.Quantity = s.Name, s.Quantity
			o.tune(s, &opts)
			return bme280.New(b, addr, &opts)
		}), nil

	case ADS1115PH:
		return o.lock(k), o.i2cOpen(s, func(b i2c.Bus) (drivers.Sensor, error) {
			opts := phprobe.DefaultOpts
			opts.Name, opts.Quantity, opts.Input, opts.Logger = s.Name, s.Quantity, s.Input, o.log
			if s.Calibration != "" {
				opts.Calibration = cal
			}
			opts.Temperature = o.tempFunc(s, byName)
			o.tune(s, &opts)
			return phprobe.New(b, addr, &opts)
		}), nil

	case EZOPH:
		return o.lock(k), o.i2cOpen(s, func(b i2c.Bus) (drivers.Sensor, error) {
			opts := ezoph.Opts{Name: s.Name, Logger: o.log, Temperature: o.tempFunc(s, byName)}
			o.tune(s, &opts)
			return ezoph.New(b, addr, &opts)
		}), nil

	default: // Sim; Validate let nothing else through.
		return nil, func() (drivers.Sensor, error) {
			opts := s.Sim.opts(s.Quantity)
			opts.Name, opts.Clock = s.Name, o.env.Clock
			o.tune(s, &opts)
			return sim.New(&opts)
		}, nil
	}
}

func (o *opener) i2cOpen(s Spec, open func(i2c.Bus) (drivers.Sensor, error)) func() (drivers.Sensor, error) {
	return func() (drivers.Sensor, error) {
		b, err := o.bus(s.Bus)
		if err != nil {
			return nil, err
		}
		return open(b)
	}
}

// tempFunc wires a pH sensor to its temp_sensor; nil if it has none.
func (o *opener) tempFunc(s Spec, byName map[string]*managed) func() (float64, error) {
	if s.TempSensor == "" {
		return nil
	}
	t := byName[s.TempSensor]
	if t == nil {
		return nil // Validate guarantees it exists; it is built later in the list.
	}
	if o.env.TempSource != nil {
		return o.env.TempSource(t)
	}
	return func() (float64, error) {
		ctx, cancel := context.WithTimeout(context.Background(), TempTimeout)
		defer cancel()
		return t.Sense(ctx)
	}
}

// managed is the Sensor Open returns: it opens its chip lazily, reopens it
// after an I/O or missing fault, and takes the chip's lock around each Sense.
type managed struct {
	spec  Spec
	log   *slog.Logger
	lock  *sync.Mutex // shared per chip; nil for w1 and sim
	open  func() (drivers.Sensor, error)
	fault func(error)
	keep  bool // never reopen (a sim's faults are part of its script)

	mu      sync.Mutex // guards dev and failing
	dev     drivers.Sensor
	failing bool // the last open failed (logged once)
}

var _ drivers.Sensor = (*managed)(nil)

func (m *managed) Name() string               { return m.spec.Name }
func (m *managed) Quantity() drivers.Quantity { return m.spec.Quantity }
func (m *managed) String() string             { return fmt.Sprintf("%s(%s)", m.spec.Type, m.spec.Name) }

// tryOpen opens the chip if needed; m.mu is held.
func (m *managed) tryOpen() error {
	if m.dev != nil {
		return nil
	}
	d, err := m.open()
	if err != nil {
		return openFault(err)
	}
	if m.failing {
		m.log.Info("sensor available again", "sensor", m.spec.Name)
		m.failing = false
	}
	m.dev = d
	return nil
}

// openFault turns an open error into a fault: a fault already in it keeps its
// cause; anything else (a chip that answers but is the wrong one) is a device error.
func openFault(err error) error {
	var f *drivers.Fault
	if errors.As(err, &f) {
		return &drivers.Fault{Cause: f.Cause, Detail: "open", Err: err}
	}
	return &drivers.Fault{Cause: drivers.CauseDeviceError, Detail: "open", Err: err}
}

// Sense implements drivers.Sensor.
func (m *managed) Sense(ctx context.Context) (float64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if m.lock != nil {
		m.lock.Lock()
		defer m.lock.Unlock()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.tryOpen(); err != nil {
		if !m.failing {
			m.log.Warn("sensor not available", "sensor", m.spec.Name, "err", err)
			m.failing = true
		}
		return 0, err
	}
	v, err := m.dev.Sense(ctx)
	var f *drivers.Fault
	if errors.As(err, &f) && !m.keep {
		switch f.Cause {
		case drivers.CauseIO, drivers.CauseMissing, drivers.CauseTimeout:
			m.dev = nil // probe and configure again next time
			if m.fault != nil {
				m.fault(err)
			}
		}
	}
	return v, err
}
