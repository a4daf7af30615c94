package mcp9808

import (
	"context"
	"fmt"
	"sync"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/devices/v3/mcp9808"

	"github.com/outpost-iot/outpost/drivers"
	"github.com/outpost-iot/outpost/drivers/internal/hw"
)

// DefaultAddr is the address with A2 A1 A0 tied to GND.
const DefaultAddr uint16 = 0x18

// Resolution is the conversion resolution (datasheet register 5-9).
type Resolution int

// Resolutions and their conversion times.
const (
	Res0_0625 Resolution = iota // 0.0625 °C, 250 ms (power-on default)
	Res0_125                    // 0.125 °C, 130 ms
	Res0_25                     // 0.25 °C, 65 ms
	Res0_5                      // 0.5 °C, 30 ms
)

// Opts configures a Dev.
type Opts struct {
	// Name is the sensor's name; default "mcp9808-0x18".
	Name string
	// Resolution; the zero value is the finest.
	Resolution Resolution
}

// DefaultOpts are the recommended options.
var DefaultOpts = Opts{Resolution: Res0_0625}

// Dev is an MCP9808.
type Dev struct {
	dev  *mcp9808.Dev
	addr uint16
	name string
	mu   sync.Mutex
}

var _ drivers.Sensor = (*Dev)(nil)

// New probes and configures the MCP9808 at addr (0x18..0x1f). A chip that does
// not answer is a wrapped *drivers.Fault; one that answers with the wrong IDs
// is a plain error.
func New(bus i2c.Bus, addr uint16, opts *Opts) (*Dev, error) {
	if opts == nil {
		opts = &DefaultOpts
	}
	if addr < 0x18 || addr > 0x1f {
		return nil, fmt.Errorf("mcp9808: address %#02x, want 0x18..0x1f", addr)
	}
	po := mcp9808.Opts{Addr: int(addr)}
	switch opts.Resolution {
	case Res0_0625:
		po.Res = mcp9808.Maximum
	case Res0_125:
		po.Res = mcp9808.High
	case Res0_25:
		po.Res = mcp9808.Medium
	case Res0_5:
		po.Res = mcp9808.Low
	default:
		return nil, fmt.Errorf("mcp9808: unknown resolution %d", opts.Resolution)
	}
	if err := Probe(bus, addr); err != nil {
		return nil, err
	}
	d, err := mcp9808.New(bus, &po)
	if err != nil {
		return nil, fmt.Errorf("mcp9808: configure %#02x: %w", addr, hw.I2CFault(err, "mcp9808: configure"))
	}
	name := opts.Name
	if name == "" {
		name = fmt.Sprintf("mcp9808-%#02x", addr)
	}
	return &Dev{dev: d, addr: addr, name: name}, nil
}

// Probe checks the manufacturer ID (register 6 = 0x0054) and the device ID
// (register 7, upper byte = 0x04) at addr.
func Probe(bus i2c.Bus, addr uint16) error {
	var m, id [2]byte
	if err := bus.Tx(addr, []byte{0x06}, m[:]); err != nil {
		return fmt.Errorf("mcp9808: probe %#02x: %w", addr, hw.I2CFault(err, "mcp9808: probe"))
	}
	if err := bus.Tx(addr, []byte{0x07}, id[:]); err != nil {
		return fmt.Errorf("mcp9808: probe %#02x: %w", addr, hw.I2CFault(err, "mcp9808: probe"))
	}
	if m != [2]byte{0x00, 0x54} || id[0] != 0x04 {
		return fmt.Errorf("mcp9808: device at %#02x is not an MCP9808 (manufacturer %#02x%02x, device %#02x)", addr, m[0], m[1], id[0])
	}
	return nil
}

// Name implements drivers.Sensor.
func (d *Dev) Name() string { return d.name }

// Quantity implements drivers.Sensor.
func (d *Dev) Quantity() drivers.Quantity { return drivers.Temperature }

func (d *Dev) String() string { return fmt.Sprintf("mcp9808(%#02x)", d.addr) }

// Sense reads the ambient temperature register and returns °C.
func (d *Dev) Sense(ctx context.Context) (float64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	t, err := d.dev.SenseTemp()
	if err != nil {
		return 0, hw.I2CFault(err, "mcp9808: read temperature")
	}
	c := t.Celsius()
	if err := hw.CheckRange("mcp9808", c, -40, 125, "°C"); err != nil {
		return 0, err
	}
	return c, nil
}
