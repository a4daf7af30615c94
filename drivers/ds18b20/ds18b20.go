package ds18b20

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"periph.io/x/conn/v3/onewire"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/ds18b20"

	"github.com/outpost-iot/outpost/drivers"
	"github.com/outpost-iot/outpost/drivers/internal/hw"
	"github.com/outpost-iot/outpost/internal/wait"
)

// Family is the DS18B20's 1-Wire family code.
const Family = 0x28

// Opts configures a Dev.
type Opts struct {
	// Name is the sensor's name; default "ds18b20-" + the ROM id.
	Name string
	// Resolution in bits, 9..12: 0.5, 0.25, 0.125 or 0.0625 °C; a conversion
	// takes 94, 188, 375 or 750 ms.
	Resolution int
}

// DefaultOpts are the recommended options: 12 bits.
var DefaultOpts = Opts{Resolution: 12}

// Dev is one DS18B20 on a 1-Wire bus.
type Dev struct {
	bus  onewire.Bus
	addr onewire.Address
	dev  *ds18b20.Dev
	name string
	wait time.Duration
	mu   sync.Mutex
}

var _ drivers.Sensor = (*Dev)(nil)

// New opens the probe at addr on bus. It reads the scratchpad (a probe that
// does not answer is a wrapped *drivers.Fault) and writes the resolution to
// EEPROM when it differs from opts.Resolution.
func New(bus onewire.Bus, addr onewire.Address, opts *Opts) (*Dev, error) {
	if opts == nil {
		opts = &DefaultOpts
	}
	res := opts.Resolution
	if res == 0 {
		res = DefaultOpts.Resolution
	}
	if res < 9 || res > 12 {
		return nil, fmt.Errorf("ds18b20: resolution %d bits, want 9..12", res)
	}
	if byte(addr) != Family {
		return nil, fmt.Errorf("ds18b20: %s has family %#02x, not a DS18B20 (0x28)", FormatROM(addr), byte(addr))
	}
	if !validCRC(addr) {
		return nil, fmt.Errorf("ds18b20: address %#016x has a bad ROM CRC", uint64(addr))
	}
	d, err := ds18b20.New(bus, addr, res)
	if err != nil {
		return nil, fmt.Errorf("ds18b20: open %s: %w", FormatROM(addr), classify(err, "ds18b20: open "+FormatROM(addr)))
	}
	name := opts.Name
	if name == "" {
		name = "ds18b20-" + FormatROM(addr)
	}
	return &Dev{bus: bus, addr: addr, dev: d, name: name, wait: ConversionTime(res)}, nil
}

// ConversionTime is how long a conversion at bits resolution takes
// (datasheet p.6: 93.75 ms at 9 bits, doubling per bit).
func ConversionTime(bits int) time.Duration {
	return (94 << uint(bits-9)) * time.Millisecond
}

// Name implements drivers.Sensor.
func (d *Dev) Name() string { return d.name }

// Quantity implements drivers.Sensor.
func (d *Dev) Quantity() drivers.Quantity { return drivers.Temperature }

// Addr returns the probe's 64-bit address.
func (d *Dev) Addr() onewire.Address { return d.addr }

func (d *Dev) String() string { return "ds18b20(" + FormatROM(d.addr) + ")" }

// Sense starts a conversion (with the strong pull-up, for parasite power),
// waits for it and reads the scratchpad. It returns °C.
func (d *Dev) Sense(ctx context.Context) (float64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	what := "ds18b20: " + FormatROM(d.addr)
	ow := onewire.Dev{Bus: d.bus, Addr: d.addr}
	if err := ow.TxPower([]byte{0x44}, nil); err != nil { // Convert T
		return 0, classify(err, what+": convert")
	}
	if err := wait.Sleep(ctx, d.wait); err != nil {
		return 0, err
	}
	t, err := d.dev.LastTemp()
	if err != nil {
		return 0, classify(err, what+": read scratchpad")
	}
	if t == physic.ZeroCelsius+85*physic.Celsius {
		return 0, drivers.NewFault(drivers.CausePowerOn, nil, "%s: 85.000 °C is the power-on value (no conversion: power or pull-up problem)", what)
	}
	c := t.Celsius()
	if err := hw.CheckRange(what, c, -55, 125, "°C"); err != nil {
		return 0, err
	}
	return c, nil
}

// classify maps a periph 1-Wire error to a fault.
func classify(err error, what string) error {
	if err == nil {
		return nil
	}
	var f *drivers.Fault
	if errors.As(err, &f) {
		return err
	}
	msg := err.Error()
	var nd onewire.NoDevicesError
	cause := drivers.CauseIO
	switch {
	case errors.As(err, &nd) && nd.NoDevices(),
		strings.Contains(msg, "did not respond"),     // periph ds18b20: scratchpad all 0xff
		strings.Contains(msg, "no device present"),   // periph ds248x: no presence pulse
		strings.Contains(msg, "no devices detected"): // netlink
		cause = drivers.CauseMissing
	case strings.Contains(msg, "CRC"):
		cause = drivers.CauseCRC
	}
	return &drivers.Fault{Cause: cause, Detail: what, Err: err}
}

// Scan searches bus and returns the addresses of every DS18B20 (family 0x28)
// on it, sorted. Devices of other families are skipped. If the search fails
// part way, the probes found so far are returned with the error.
func Scan(bus onewire.Bus) ([]onewire.Address, error) {
	all, err := bus.Search(false)
	var out []onewire.Address
	for _, a := range all {
		if byte(a) == Family {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	if err != nil {
		return out, fmt.Errorf("ds18b20: search %s: %w", bus, classify(err, "ds18b20: search"))
	}
	return out, nil
}

// FormatROM prints a as the kernel names it: family, dash, 48-bit serial in
// 12 lowercase hex digits (the CRC byte is dropped).
func FormatROM(a onewire.Address) string {
	return fmt.Sprintf("%02x-%012x", byte(a), (uint64(a)>>8)&0xffffffffffff)
}

// ParseROM parses a ROM id: the kernel's form ("28-0316a2797aff"; the CRC
// byte is computed) or the 64-bit address in hex, CRC in the top byte
// ("0xff0316a2797a28" style, with or without 0x), whose CRC is checked.
func ParseROM(s string) (onewire.Address, error) {
	if fam, serial, ok := strings.Cut(s, "-"); ok {
		if len(fam) != 2 || len(serial) != 12 {
			return 0, fmt.Errorf("ds18b20: ROM id %q: want ff-ffffffffffff", s)
		}
		f, err1 := strconv.ParseUint(fam, 16, 8)
		n, err2 := strconv.ParseUint(serial, 16, 48)
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("ds18b20: ROM id %q is not hex", s)
		}
		a := n<<8 | f
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], a)
		a |= uint64(onewire.CalcCRC(b[:7])) << 56
		return onewire.Address(a), nil
	}
	h := strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if len(h) == 0 || len(h) > 16 {
		return 0, fmt.Errorf("ds18b20: ROM id %q: want ff-ffffffffffff or 16 hex digits", s)
	}
	n, err := strconv.ParseUint(h, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("ds18b20: ROM id %q is not hex", s)
	}
	if !validCRC(onewire.Address(n)) {
		return 0, fmt.Errorf("ds18b20: ROM id %q has a bad CRC byte", s)
	}
	return onewire.Address(n), nil
}

func validCRC(a onewire.Address) bool {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(a))
	return onewire.CheckCRC(b[:])
}
