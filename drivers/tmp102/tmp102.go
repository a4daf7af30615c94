package tmp102

import (
	"context"
	"fmt"
	"sync"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/tmp102"

	"github.com/outpost-iot/outpost/drivers"
	"github.com/outpost-iot/outpost/drivers/internal/hw"
)

// DefaultAddr is the address with ADD0 tied to GND.
const DefaultAddr uint16 = 0x48

// Opts configures a Dev.
type Opts struct {
	// Name is the sensor's name; default "tmp102-0x48".
	Name string
	// SampleRate is the chip's conversion rate.
	SampleRate tmp102.ConversionRate
}

// DefaultOpts are the recommended options: the chip's power-on rate, 4 Hz.
var DefaultOpts = Opts{SampleRate: tmp102.RateFourHertz}

// Dev is a TMP102.
type Dev struct {
	dev  *tmp102.Dev
	addr uint16
	name string
	mu   sync.Mutex
}

var _ drivers.Sensor = (*Dev)(nil)

// New probes and configures the TMP102 at addr (0x48..0x4b, set by ADD0).
// A chip that does not answer is a wrapped *drivers.Fault; a chip that answers
// but is not a TMP102 is a plain error.
func New(bus i2c.Bus, addr uint16, opts *Opts) (*Dev, error) {
	if opts == nil {
		opts = &DefaultOpts
	}
	if addr < 0x48 || addr > 0x4b {
		return nil, fmt.Errorf("tmp102: address %#02x, want 0x48..0x4b", addr)
	}
	if err := Probe(bus, addr); err != nil {
		return nil, err
	}
	po := tmp102.Opts{SampleRate: opts.SampleRate, AlertSetting: tmp102.ModeComparator}
	d, err := tmp102.NewI2C(bus, addr, &po)
	if err != nil {
		return nil, fmt.Errorf("tmp102: configure %#02x: %w", addr, hw.I2CFault(err, "tmp102: configure"))
	}
	name := opts.Name
	if name == "" {
		name = fmt.Sprintf("tmp102-%#02x", addr)
	}
	return &Dev{dev: d, addr: addr, name: name}, nil
}

// Probe reads the configuration register at addr and checks the bits a
// TMP102 fixes (datasheet table 8: R1 R0 = 11, bits 3..0 = 0).
func Probe(bus i2c.Bus, addr uint16) error {
	var r [2]byte
	if err := bus.Tx(addr, []byte{0x01}, r[:]); err != nil {
		return fmt.Errorf("tmp102: probe %#02x: %w", addr, hw.I2CFault(err, "tmp102: probe"))
	}
	cfg := uint16(r[0])<<8 | uint16(r[1])
	if cfg&0x6000 != 0x6000 || cfg&0x000f != 0 {
		return fmt.Errorf("tmp102: device at %#02x is not a TMP102 (configuration register %#04x)", addr, cfg)
	}
	return nil
}

// Name implements drivers.Sensor.
func (d *Dev) Name() string { return d.name }

// Quantity implements drivers.Sensor.
func (d *Dev) Quantity() drivers.Quantity { return drivers.Temperature }

func (d *Dev) String() string { return fmt.Sprintf("tmp102(%#02x)", d.addr) }

// Sense reads the last conversion and returns °C.
func (d *Dev) Sense(ctx context.Context) (float64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var e physic.Env
	if err := d.dev.Sense(&e); err != nil {
		return 0, hw.I2CFault(err, "tmp102: read temperature")
	}
	c := e.Temperature.Celsius()
	if err := hw.CheckRange("tmp102", c, -55, 150, "°C"); err != nil {
		return 0, err
	}
	return c, nil
}
