package phprobe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/ads1x15"

	"github.com/outpost-iot/outpost/drivers"
	"github.com/outpost-iot/outpost/drivers/internal/hw"
)

// DefaultAddr is the ADS1115's address with ADDR tied to GND.
const DefaultAddr uint16 = 0x48

// ErrNotCalibrated is returned by Sense (for pH) when the calibration has no points.
var ErrNotCalibrated = errors.New("phprobe: not calibrated")

// Limits of a plausible electrode.
const (
	maxElectrode = 0.5 // V; a pH electrode spans about ±415 mV over 0..14
	minInput     = -0.010
)

// Opts configures a Dev.
type Opts struct {
	// Name is the sensor's name; default "ph-0x48-a0".
	Name string
	// Quantity is drivers.PH (default) or drivers.Voltage, which returns the
	// front end's output in volts (for calibration and diagnostics).
	Quantity drivers.Quantity
	// Input is the single-ended ADS1115 input the front end feeds, 0..3 (A0..A3).
	Input int
	// FullScale is the ADC range; the next range at or above it is used
	// (6.144, 4.096, 2.048, 1.024, 0.512 or 0.256 V). Default 4.096 V. It
	// must not exceed VDD + 0.3 V on the input.
	FullScale physic.ElectricPotential
	// DataRate is the conversion rate; a read takes 1/DataRate. Lower rates
	// filter more noise. Default 16 Hz (62.5 ms).
	DataRate physic.Frequency
	// Calibration maps voltage to pH; it may be empty for Quantity voltage.
	Calibration Calibration
	// Temperature returns the solution temperature in °C; nil means 25 °C.
	// See the package documentation for the fallback rule.
	Temperature func() (float64, error)
	// Logger receives the temperature-fallback transitions; nil discards.
	Logger *slog.Logger
}

// DefaultOpts are the recommended options, with the DFRobot V2 front end
// and no calibration points yet.
var DefaultOpts = Opts{
	Quantity:    drivers.PH,
	FullScale:   4096 * physic.MilliVolt,
	DataRate:    16 * physic.Hertz,
	Calibration: Calibration{FrontEnd: DFRobotV2},
}

// Dev is a pH probe on one ADS1115 input.
type Dev struct {
	pin   ads1x15.PinADC
	addr  uint16
	input int
	name  string
	q     drivers.Quantity
	cal   Calibration
	temp  func() (float64, error)
	log   *slog.Logger

	mu       sync.Mutex
	fallback bool // the last Sense compensated at 25 °C because Temperature failed
}

var _ drivers.Sensor = (*Dev)(nil)

// New probes the ADS1115 at addr (0x48..0x4b) and prepares single-shot reads
// of opts.Input. The calibration, if it has points, must be valid.
func New(bus i2c.Bus, addr uint16, opts *Opts) (*Dev, error) {
	if opts == nil {
		opts = &DefaultOpts
	}
	o := *opts
	if addr < 0x48 || addr > 0x4b {
		return nil, fmt.Errorf("ads1115: address %#02x, want 0x48..0x4b", addr)
	}
	if o.Input < 0 || o.Input > 3 {
		return nil, fmt.Errorf("ads1115: input %d, want 0..3", o.Input)
	}
	if o.Quantity == "" {
		o.Quantity = drivers.PH
	}
	if o.Quantity != drivers.PH && o.Quantity != drivers.Voltage {
		return nil, fmt.Errorf("phprobe: quantity %q, want ph or voltage", o.Quantity)
	}
	if o.FullScale == 0 {
		o.FullScale = DefaultOpts.FullScale
	}
	if o.DataRate == 0 {
		o.DataRate = DefaultOpts.DataRate
	}
	if len(o.Calibration.Points) > 0 {
		if err := o.Calibration.Validate(); err != nil {
			return nil, err
		}
	}
	if err := Probe(bus, addr); err != nil {
		return nil, err
	}
	adc, err := ads1x15.NewADS1115(bus, &ads1x15.Opts{I2cAddress: addr})
	if err != nil {
		return nil, fmt.Errorf("ads1115: %w", err)
	}
	pin, err := adc.PinForChannel(ads1x15.Channel0+ads1x15.Channel(o.Input), o.FullScale, o.DataRate, ads1x15.BestQuality)
	if err != nil {
		return nil, fmt.Errorf("ads1115: input %d: %w", o.Input, err)
	}
	if o.Name == "" {
		o.Name = fmt.Sprintf("ph-%#02x-a%d", addr, o.Input)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Dev{pin: pin, addr: addr, input: o.Input, name: o.Name, q: o.Quantity,
		cal: o.Calibration, temp: o.Temperature, log: o.Logger}, nil
}

// Probe checks that the device at addr answers like an ADS1115. The chip has
// no ID register, so it looks at registers a TMP102 (same addresses) cannot
// produce: Hi_thresh at its power-on 0x7fff, or a configuration register with
// any of its 4 low bits set (0x8583 at power-on). An ADS1115 whose comparator
// was reprogrammed by other software may fail this; power-cycle it.
func Probe(bus i2c.Bus, addr uint16) error {
	var hi, cfg [2]byte
	if err := bus.Tx(addr, []byte{0x03}, hi[:]); err != nil {
		return fmt.Errorf("ads1115: probe %#02x: %w", addr, hw.I2CFault(err, "ads1115: probe"))
	}
	if hi == [2]byte{0x7f, 0xff} {
		return nil
	}
	if err := bus.Tx(addr, []byte{0x01}, cfg[:]); err != nil {
		return fmt.Errorf("ads1115: probe %#02x: %w", addr, hw.I2CFault(err, "ads1115: probe"))
	}
	if cfg[1]&0x0f != 0 {
		return nil
	}
	return fmt.Errorf("ads1115: device at %#02x does not look like an ADS1115 (Hi_thresh %#02x%02x, config %#02x%02x; a TMP102?)", addr, hi[0], hi[1], cfg[0], cfg[1])
}

// Name implements drivers.Sensor.
func (d *Dev) Name() string { return d.name }

// Quantity implements drivers.Sensor.
func (d *Dev) Quantity() drivers.Quantity { return d.q }

func (d *Dev) String() string { return fmt.Sprintf("phprobe(ads1115 %#02x A%d)", d.addr, d.input) }

// Calibration returns the calibration in use.
func (d *Dev) Calibration() Calibration { return d.cal }

// ReadVoltage does one conversion and returns the front end's output in
// volts. Use it to take calibration points.
func (d *Dev) ReadVoltage(ctx context.Context) (float64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.readVoltage()
}

func (d *Dev) readVoltage() (float64, error) {
	s, err := d.pin.Read()
	if err != nil {
		return 0, hw.I2CFault(err, "ads1115: read")
	}
	if s.Raw >= math.MaxInt16 || s.Raw <= math.MinInt16+1 {
		return 0, drivers.NewFault(drivers.CauseOutOfRange, nil, "ads1115: A%d saturated at %s (probe open or front end railed)", d.input, s.V)
	}
	v := float64(s.V) / float64(physic.Volt)
	if v < minInput {
		return 0, drivers.NewFault(drivers.CauseOutOfRange, nil, "ads1115: A%d reads %.3f V, below ground (input floating?)", d.input, v)
	}
	return v, nil
}

// Sense reads the front end and returns pH (or volts, for Quantity voltage).
func (d *Dev) Sense(ctx context.Context) (float64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if d.q == drivers.Voltage {
		return d.ReadVoltage(ctx)
	}
	if len(d.cal.Points) == 0 {
		return 0, ErrNotCalibrated
	}
	// Ask for the temperature first: it may read another sensor.
	t, terr := RefTempC, error(nil)
	if d.temp != nil {
		t, terr = d.temp()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	t = d.compensation(t, terr)
	v, err := d.readVoltage()
	if err != nil {
		return 0, err
	}
	e := d.cal.electrode(v)
	if math.Abs(e) > maxElectrode {
		return 0, drivers.NewFault(drivers.CauseOutOfRange, nil, "phprobe: electrode potential %+.0f mV (%.3f V at the ADC) beyond ±%.0f mV: probe open or broken", 1000*e, v, 1000*maxElectrode)
	}
	ph := d.cal.model().pH(e, t)
	if !(ph >= 0 && ph <= 14) {
		return 0, drivers.NewFault(drivers.CauseOutOfRange, nil, "phprobe: pH %.2f outside 0..14 (%.3f V)", ph, v)
	}
	return ph, nil
}

// compensation applies the fallback rule to the temperature t, err that
// Opts.Temperature returned; d.mu is held.
func (d *Dev) compensation(t float64, err error) float64 {
	if err == nil && !(t >= 0 && t <= 100) {
		err = fmt.Errorf("%g °C outside 0..100", t)
	}
	if err != nil {
		if !d.fallback {
			d.log.Warn("pH temperature compensation falls back to 25 °C", "sensor", d.name, "err", err)
			d.fallback = true
		}
		return RefTempC
	}
	if d.fallback {
		d.log.Info("pH temperature compensation restored", "sensor", d.name, "temp_c", t)
		d.fallback = false
	}
	return t
}
