package bme280

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/bmxx80"

	"github.com/outpost-iot/outpost/drivers"
	"github.com/outpost-iot/outpost/drivers/internal/hw"
)

// DefaultAddr is the address with SDO tied to GND; 0x77 with SDO to VDDIO.
const DefaultAddr uint16 = 0x76

// Opts configures a Dev.
type Opts struct {
	// Name is the sensor's name; default "bme280-0x76-temperature".
	Name string
	// Quantity is drivers.Temperature, drivers.Humidity or drivers.Pressure;
	// default temperature.
	Quantity drivers.Quantity
	// Oversampling applies to all three measurements; default 1x, the
	// datasheet's weather-monitoring setting.
	Oversampling bmxx80.Oversampling
}

// DefaultOpts are the recommended options.
var DefaultOpts = Opts{Quantity: drivers.Temperature, Oversampling: bmxx80.O1x}

// chip is the shared handle to one BMx280.
type chip struct {
	mu   sync.Mutex
	dev  *bmxx80.Dev
	addr uint16
	kind string // "BME280", "BMP280", "BMP180"
}

// Dev is one quantity of a BME280.
type Dev struct {
	c    *chip
	q    drivers.Quantity
	name string
}

var _ drivers.Sensor = (*Dev)(nil)

// New probes (chip id register) and configures the chip at addr (0x76 or
// 0x77) and returns a Sensor for opts.Quantity.
func New(bus i2c.Bus, addr uint16, opts *Opts) (*Dev, error) {
	if opts == nil {
		opts = &DefaultOpts
	}
	if addr != 0x76 && addr != 0x77 {
		return nil, fmt.Errorf("bme280: address %#02x, want 0x76 or 0x77", addr)
	}
	q := opts.Quantity
	if q == "" {
		q = drivers.Temperature
	}
	if err := checkQuantity(q, "BME280"); err != nil {
		return nil, err
	}
	ovs := opts.Oversampling
	if ovs == bmxx80.Off {
		ovs = bmxx80.O1x
	}
	if ovs > bmxx80.O16x {
		return nil, fmt.Errorf("bme280: oversampling %d out of range", ovs)
	}
	po := bmxx80.Opts{Temperature: ovs, Pressure: ovs, Humidity: ovs}
	d, err := bmxx80.NewI2C(bus, addr, &po)
	if err != nil {
		if strings.Contains(err.Error(), "unexpected chip id") {
			return nil, fmt.Errorf("bme280: device at %#02x is not a BMx280: %w", addr, err)
		}
		return nil, fmt.Errorf("bme280: open %#02x: %w", addr, hw.I2CFault(err, "bme280: open"))
	}
	kind, _, _ := strings.Cut(d.String(), "{")
	c := &chip{dev: d, addr: addr, kind: kind}
	if err := checkQuantity(q, kind); err != nil {
		return nil, err
	}
	return &Dev{c: c, q: q, name: defaultName(opts.Name, addr, q)}, nil
}

func defaultName(name string, addr uint16, q drivers.Quantity) string {
	if name != "" {
		return name
	}
	return fmt.Sprintf("bme280-%#02x-%s", addr, q)
}

func checkQuantity(q drivers.Quantity, kind string) error {
	switch q {
	case drivers.Temperature, drivers.Pressure:
		return nil
	case drivers.Humidity:
		if kind == "BME280" {
			return nil
		}
		return fmt.Errorf("bme280: the chip is a %s, which has no humidity sensor", kind)
	}
	return fmt.Errorf("bme280: quantity %q, want temperature, humidity or pressure", q)
}

// As returns a Sensor for quantity q of the same chip, named name (default
// "bme280-0x76-<q>").
func (d *Dev) As(q drivers.Quantity, name string) (*Dev, error) {
	if err := checkQuantity(q, d.c.kind); err != nil {
		return nil, err
	}
	return &Dev{c: d.c, q: q, name: defaultName(name, d.c.addr, q)}, nil
}

// Probe reads the chip id register (0xd0) at addr and names the chip:
// "BME280" (0x60), "BMP280" (0x58) or "BMP180" (0x55).
func Probe(bus i2c.Bus, addr uint16) (string, error) {
	var id [1]byte
	if err := bus.Tx(addr, []byte{0xd0}, id[:]); err != nil {
		return "", fmt.Errorf("bme280: probe %#02x: %w", addr, hw.I2CFault(err, "bme280: probe"))
	}
	switch id[0] {
	case 0x60:
		return "BME280", nil
	case 0x58:
		return "BMP280", nil
	case 0x55:
		return "BMP180", nil
	}
	return "", fmt.Errorf("bme280: device at %#02x is not a BMx280 (chip id %#02x)", addr, id[0])
}

// Chip returns the detected chip: "BME280", "BMP280" or "BMP180".
func (d *Dev) Chip() string { return d.c.kind }

// Name implements drivers.Sensor.
func (d *Dev) Name() string { return d.name }

// Quantity implements drivers.Sensor.
func (d *Dev) Quantity() drivers.Quantity { return d.q }

func (d *Dev) String() string { return fmt.Sprintf("bme280(%#02x, %s)", d.c.addr, d.q) }

// Sense runs one forced measurement and returns the Dev's quantity in its
// canonical unit (°C, %RH or hPa).
func (d *Dev) Sense(ctx context.Context) (float64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	d.c.mu.Lock()
	var e physic.Env
	err := d.c.dev.Sense(&e)
	d.c.mu.Unlock()
	if err != nil {
		return 0, hw.I2CFault(err, "bme280: measure")
	}
	var v float64
	switch d.q {
	case drivers.Humidity:
		v = float64(e.Humidity) / float64(physic.PercentRH)
		err = hw.CheckRange("bme280", v, 0, 100, "%RH")
	case drivers.Pressure:
		v = float64(e.Pressure) / float64(100*physic.Pascal)
		err = hw.CheckRange("bme280", v, 300, 1100, "hPa")
	default:
		v = e.Temperature.Celsius()
		err = hw.CheckRange("bme280", v, -40, 85, "°C")
	}
	if err != nil {
		return 0, err
	}
	return v, nil
}
