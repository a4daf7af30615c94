package w1

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"periph.io/x/conn/v3/onewire"

	"github.com/outpost-iot/outpost/drivers"
)

// DefaultRoot is where the kernel lists 1-Wire devices.
const DefaultRoot = "/sys/bus/w1/devices"

// Files a probe directory may hold.
const (
	FileSlave       = "w1_slave"    // scratchpad + CRC verdict + t=millidegrees
	FileTemperature = "temperature" // millidegrees only (kernel ≥ 5.0)
)

// DS18B20 limits in millidegrees Celsius (datasheet p.1).
const (
	minMilliC     = -55000
	maxMilliC     = 125000
	powerOnMilliC = 85000
)

var romRE = regexp.MustCompile(`^28-[0-9a-f]{12}$`)

// Opts configures a Dev.
type Opts struct {
	// Name is the sensor's name; default the ROM id.
	Name string
	// File selects what to read: "" reads w1_slave and falls back to
	// temperature when w1_slave does not exist; FileSlave or FileTemperature
	// read only that file.
	File string
}

// DefaultOpts are the recommended options.
var DefaultOpts = Opts{}

// Dev is one DS18B20 seen through sysfs.
type Dev struct {
	dir  string
	id   string
	name string
	file string
	mu   sync.Mutex // one read at a time; the kernel serialises the bus anyway
}

var _ drivers.Sensor = (*Dev)(nil)

// ValidID reports whether id looks like a DS18B20 ROM id as sysfs names it:
// family 28, a dash and 12 lowercase hex digits.
func ValidID(id string) bool { return romRE.MatchString(id) }

// Scan lists the DS18B20 ROM ids (28-*) under root (DefaultRoot if empty),
// sorted. A missing root means no 1-Wire master is loaded: it returns an
// error wrapping fs.ErrNotExist.
func Scan(root string) ([]string, error) {
	if root == "" {
		root = DefaultRoot
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("w1: scan: %w (is dtoverlay=w1-gpio set?)", err)
	}
	var ids []string
	for _, e := range ents {
		if ValidID(e.Name()) {
			ids = append(ids, e.Name())
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// New returns the probe id under root (DefaultRoot if empty). It checks that
// the probe's directory exists: a missing one is a *drivers.Fault with
// CauseMissing (wrapped), so callers can tell it from a bad id.
func New(root, id string, opts *Opts) (*Dev, error) {
	if opts == nil {
		opts = &DefaultOpts
	}
	if root == "" {
		root = DefaultRoot
	}
	if !ValidID(id) {
		return nil, fmt.Errorf("w1: %q is not a DS18B20 ROM id (want 28- and 12 hex digits)", id)
	}
	switch opts.File {
	case "", FileSlave, FileTemperature:
	default:
		return nil, fmt.Errorf("w1: unknown file %q (want %q or %q)", opts.File, FileSlave, FileTemperature)
	}
	d := &Dev{dir: filepath.Join(root, id), id: id, name: opts.Name, file: opts.File}
	if d.name == "" {
		d.name = id
	}
	if _, err := os.Stat(d.dir); err != nil {
		return nil, fmt.Errorf("w1: %w", missing(id, err))
	}
	return d, nil
}

// Name implements drivers.Sensor.
func (d *Dev) Name() string { return d.name }

// Quantity implements drivers.Sensor.
func (d *Dev) Quantity() drivers.Quantity { return drivers.Temperature }

// ID returns the probe's ROM id.
func (d *Dev) ID() string { return d.id }

func (d *Dev) String() string { return "w1-ds18b20(" + d.id + ")" }

// Sense reads the probe and returns °C.
func (d *Dev) Sense(ctx context.Context) (float64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	milli, err := d.read()
	if err != nil {
		return 0, err
	}
	return float64(milli) / 1000, nil
}

func (d *Dev) read() (int, error) {
	if d.file != FileTemperature {
		b, err := os.ReadFile(filepath.Join(d.dir, FileSlave))
		switch {
		case err == nil:
			return ParseSlave(b)
		case d.file == FileSlave || !errors.Is(err, fs.ErrNotExist):
			return 0, d.readErr(err)
		}
		// No w1_slave: fall back to temperature, unless the probe is gone.
	}
	b, err := os.ReadFile(filepath.Join(d.dir, FileTemperature))
	if err != nil {
		return 0, d.readErr(err)
	}
	return ParseTemperature(b)
}

// readErr classifies a read error: a vanished directory is CauseMissing, the
// rest (the kernel returns EIO when the probe does not answer) CauseIO.
func (d *Dev) readErr(err error) error {
	if _, serr := os.Stat(d.dir); serr != nil {
		return missing(d.id, err)
	}
	return &drivers.Fault{Cause: drivers.CauseIO, Detail: "w1: read " + d.id, Err: err}
}

func missing(id string, err error) *drivers.Fault {
	return &drivers.Fault{Cause: drivers.CauseMissing, Detail: "w1: " + id + " not present (unplugged, or not found by the w1 master)", Err: err}
}

// ParseSlave parses the contents of a w1_slave file and returns the
// temperature in millidegrees Celsius. The file has two lines:
//
//	72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
//	72 01 4b 46 7f ff 0e 10 57 t=23125
//
// Faults: CRC NO (or a scratchpad whose CRC does not check) → CauseCRC; an
// all-0x00 or all-0xff scratchpad → CauseMissing; t=85000 → CausePowerOn;
// outside -55..125 °C → CauseOutOfRange; anything unparsable → CauseIO.
func ParseSlave(b []byte) (int, error) {
	lines := strings.Split(strings.TrimRight(string(b), "\r\n\x00 "), "\n")
	if len(lines) != 2 {
		return 0, malformed("want 2 lines, got %d", len(lines))
	}
	l1, l2 := strings.TrimSpace(lines[0]), strings.TrimSpace(lines[1])
	i := strings.Index(l1, "crc=")
	if i < 0 {
		return 0, malformed("line 1 has no crc=")
	}
	spad, err := scratchpad(l1[:i])
	if err != nil {
		return 0, err
	}
	verdict := l1[i+len("crc="):]
	if sp := strings.IndexByte(verdict, ' '); sp >= 0 {
		verdict = strings.TrimSpace(verdict[sp+1:])
	} else {
		return 0, malformed("line 1 has no CRC verdict")
	}
	if allBytes(spad, 0x00) || allBytes(spad, 0xff) {
		return 0, drivers.NewFault(drivers.CauseMissing, nil, "w1: scratchpad reads all %#02x (probe gone or data line stuck)", spad[0])
	}
	switch verdict {
	case "YES":
		if !onewire.CheckCRC(spad) {
			return 0, drivers.NewFault(drivers.CauseCRC, nil, "w1: kernel says crc YES but scratchpad % x does not check", spad)
		}
	case "NO":
		return 0, drivers.NewFault(drivers.CauseCRC, nil, "w1: scratchpad % x", spad)
	default:
		return 0, malformed("CRC verdict %q", verdict)
	}
	j := strings.Index(l2, "t=")
	if j < 0 {
		return 0, malformed("line 2 has no t=")
	}
	return checkMilli(l2[j+2:])
}

// ParseTemperature parses the contents of a temperature file (millidegrees
// Celsius, one integer) with the same value checks as ParseSlave.
func ParseTemperature(b []byte) (int, error) {
	return checkMilli(strings.TrimSpace(string(b)))
}

func checkMilli(s string) (int, error) {
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, malformed("temperature %q: %v", s, err)
	}
	switch {
	case v == powerOnMilliC:
		return 0, drivers.NewFault(drivers.CausePowerOn, nil, "w1: 85.000 °C is the power-on value (no conversion: power or pull-up problem)")
	case v < minMilliC || v > maxMilliC:
		return 0, drivers.NewFault(drivers.CauseOutOfRange, nil, "w1: %.3f °C outside -55..125", float64(v)/1000)
	}
	return v, nil
}

// scratchpad parses the 9 hex bytes before "crc=".
func scratchpad(s string) ([]byte, error) {
	s = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), ":"))
	f := strings.Fields(s)
	if len(f) != 9 {
		return nil, malformed("scratchpad has %d bytes, want 9", len(f))
	}
	b := make([]byte, 9)
	for i, h := range f {
		v, err := strconv.ParseUint(h, 16, 8)
		if err != nil || len(h) != 2 {
			return nil, malformed("scratchpad byte %q", h)
		}
		b[i] = byte(v)
	}
	return b, nil
}

func allBytes(b []byte, v byte) bool {
	for _, c := range b {
		if c != v {
			return false
		}
	}
	return true
}

func malformed(format string, args ...any) *drivers.Fault {
	return drivers.NewFault(drivers.CauseIO, nil, "w1: malformed reading: "+format, args...)
}
