package catalog

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"periph.io/x/conn/v3/i2c"

	"github.com/outpost-iot/outpost/drivers"
	"github.com/outpost-iot/outpost/drivers/bme280"
	"github.com/outpost-iot/outpost/drivers/ds18b20"
	"github.com/outpost-iot/outpost/drivers/ezoph"
	"github.com/outpost-iot/outpost/drivers/mcp9808"
	"github.com/outpost-iot/outpost/drivers/phprobe"
	"github.com/outpost-iot/outpost/drivers/tmp102"
	"github.com/outpost-iot/outpost/drivers/w1"
)

// BusW1 is Found.Bus for probes seen through the kernel's 1-Wire sysfs.
const BusW1 = "w1"

// Found is a chip, or a 1-Wire probe, that Scan found.
type Found struct {
	Bus  string // I²C bus name, or BusW1
	Addr Addr   // I²C address; for a probe behind a DS2482, the bridge's; 0 on w1
	Chip string // TMP102, ADS1115, MCP9808, DS2482, BME280, BMP280, BMP180, EZO-pH, DS18B20, unknown
	Type Type   // the Spec type that reads it; "" when none does (a bridge, an unknown chip)
	ROM  string // a DS18B20's ROM id
	Note string // firmware, or what is wrong
}

func (f Found) String() string {
	var b strings.Builder
	if f.Bus == BusW1 {
		b.WriteString("w1")
	} else {
		fmt.Fprintf(&b, "i2c-%s %s", f.Bus, f.Addr)
	}
	b.WriteString(" " + f.Chip)
	if f.ROM != "" {
		b.WriteString(" " + f.ROM)
	}
	if f.Type != "" {
		b.WriteString(" (type " + string(f.Type) + ")")
	}
	if f.Note != "" {
		b.WriteString(": " + f.Note)
	}
	return b.String()
}

// Spec suggests a Spec that reads f, named after it; false when no type
// reads f. An ADS1115 is suggested as voltage: pH needs a calibration.
func (f Found) Spec() (Spec, bool) {
	s := Spec{Type: f.Type, Bus: f.Bus, Addr: f.Addr, ROM: f.ROM}
	addr := strings.TrimPrefix(f.Addr.String(), "0x")
	switch f.Type {
	case W1DS18B20:
		s.Bus = ""
		s.Name = "ds18b20-" + strings.TrimPrefix(f.ROM, "28-")
	case DS2482DS18B20:
		s.Name = "ds18b20-" + strings.TrimPrefix(f.ROM, "28-")
	case ADS1115PH:
		s.Name = fmt.Sprintf("ads1115-%s-%s-a0", f.Bus, addr)
		s.Quantity = drivers.Voltage
	case TMP102, MCP9808, BME280, EZOPH:
		s.Name = fmt.Sprintf("%s-%s-%s", f.Type, f.Bus, addr)
	default:
		return Spec{}, false
	}
	return s, true
}

// Scan probes each bus in env.I2CBuses at the addresses the drivers know
// (0x18..0x1f, 0x48..0x4b, 0x63, 0x76, 0x77), searches every DS2482 it finds,
// and lists the kernel's 1-Wire probes under env.W1Root. Probing is read-only
// except for a DS2482 reset and an EZO "i" (which blinks its LED); do not
// scan while the gateway is sampling. The error covers buses that could not
// be opened; what Scan found is returned anyway.
func Scan(env Env) ([]Found, error) {
	o := newOpener(env)
	buses := env.I2CBuses
	if buses == nil {
		buses = []string{DefaultBus}
	}
	var found []Found
	var errs []error
	for _, name := range buses {
		if env.I2C == nil {
			errs = append(errs, errors.New("catalog: scan: no I²C bus opener"))
			break
		}
		b, err := o.bus(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("catalog: scan bus %s: %w", name, err))
			continue
		}
		found = append(found, o.scanBus(name, b)...)
	}
	ids, err := w1.Scan(env.W1Root)
	switch {
	case errors.Is(err, fs.ErrNotExist): // no 1-Wire master loaded
	case err != nil:
		errs = append(errs, err)
	}
	for _, id := range ids {
		found = append(found, Found{Bus: BusW1, Chip: "DS18B20", Type: W1DS18B20, ROM: id})
	}
	return found, errors.Join(errs...)
}

// answered reports whether err means a chip answered (but is not the one
// the probe looked for), as opposed to nothing at the address.
func answered(err error) bool {
	var f *drivers.Fault
	return err != nil && !errors.As(err, &f)
}

func (o *opener) scanBus(name string, b i2c.Bus) []Found {
	var found []Found
	add := func(a uint16, chip string, t Type, note string) {
		found = append(found, Found{Bus: name, Addr: Addr(a), Chip: chip, Type: t, Note: note})
	}
	for a := uint16(0x18); a <= 0x1f; a++ {
		err := mcp9808.Probe(b, a)
		if err == nil {
			add(a, "MCP9808", MCP9808, "")
			continue
		}
		if a <= 0x1b && probeDS2482(b, a) {
			found = append(found, o.scanBridge(name, a)...)
			continue
		}
		if answered(err) {
			add(a, "unknown", "", err.Error())
		}
	}
	for a := uint16(0x48); a <= 0x4b; a++ {
		aerr := phprobe.Probe(b, a)
		if aerr == nil {
			add(a, "ADS1115", ADS1115PH, "")
			continue
		}
		terr := tmp102.Probe(b, a)
		if terr == nil {
			add(a, "TMP102", TMP102, "")
			continue
		}
		if answered(aerr) || answered(terr) {
			add(a, "unknown", "", "neither an ADS1115 nor a TMP102")
		}
	}
	opts := ezoph.Opts{}
	o.tune(Spec{Type: EZOPH, Bus: name, Addr: Addr(ezoph.DefaultAddr)}, &opts)
	if d, err := ezoph.New(b, ezoph.DefaultAddr, &opts); err == nil {
		add(ezoph.DefaultAddr, "EZO-pH", EZOPH, "firmware "+d.Firmware())
	} else if answered(err) {
		add(ezoph.DefaultAddr, "unknown", "", err.Error())
	}
	for _, a := range []uint16{0x76, 0x77} {
		chip, err := bme280.Probe(b, a)
		if err == nil {
			add(a, chip, BME280, "")
		} else if answered(err) {
			add(a, "unknown", "", err.Error())
		}
	}
	return found
}

// probeDS2482 resets the bridge and checks its status register (0x18 after a
// reset: RST and LL set), the same check periph's ds248x makes.
func probeDS2482(b i2c.Bus, a uint16) bool {
	if err := b.Tx(a, []byte{0xf0}, nil); err != nil {
		return false
	}
	var st [1]byte
	return b.Tx(a, []byte{0xe1, 0xf0}, st[:]) == nil && st[0] == 0x18
}

// scanBridge lists the DS2482 at a and the DS18B20s behind it.
func (o *opener) scanBridge(bus string, a uint16) []Found {
	bridge := Found{Bus: bus, Addr: Addr(a), Chip: "DS2482"}
	if a > 0x19 {
		bridge.Note = "periph's ds248x accepts only 0x18 and 0x19: move it with its AD0/AD1 pins"
		return []Found{bridge}
	}
	ow, err := o.oneWire(chipKey{bus, Addr(a)})
	if err != nil {
		bridge.Note = err.Error()
		return []Found{bridge}
	}
	roms, err := ds18b20.Scan(ow)
	if err != nil {
		bridge.Note = err.Error()
	}
	out := []Found{bridge}
	for _, r := range roms {
		out = append(out, Found{Bus: bus, Addr: Addr(a), Chip: "DS18B20", Type: DS2482DS18B20, ROM: ds18b20.FormatROM(r)})
	}
	return out
}
