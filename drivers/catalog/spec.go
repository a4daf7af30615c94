package catalog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/outpost-iot/outpost/drivers"
	"github.com/outpost-iot/outpost/drivers/ds18b20"
	"github.com/outpost-iot/outpost/drivers/sim"
	"github.com/outpost-iot/outpost/drivers/w1"
	"github.com/outpost-iot/outpost/internal/protocol"
)

// Type names a kind of sensor in the configuration.
type Type string

// Sensor types.
const (
	W1DS18B20     Type = "w1-ds18b20"     // DS18B20 through the kernel's w1 sysfs
	DS2482DS18B20 Type = "ds2482-ds18b20" // DS18B20 behind a DS2482 I²C-1-Wire bridge
	TMP102        Type = "tmp102"
	MCP9808       Type = "mcp9808"
	BME280        Type = "bme280"
	ADS1115PH     Type = "ads1115-ph" // analog pH probe on an ADS1115
	EZOPH         Type = "ezo-ph"     // Atlas Scientific EZO-pH
	Sim           Type = "sim"        // simulated
)

// Types lists every Type.
var Types = []Type{W1DS18B20, DS2482DS18B20, TMP102, MCP9808, BME280, ADS1115PH, EZOPH, Sim}

// DefaultBus is the I²C bus on a Raspberry Pi's header. periph's
// i2creg.Open("") takes the lowest-numbered bus, which may be another one.
const DefaultBus = "1"

// DefaultInterval is the sampling period when a Spec has none.
const DefaultInterval = 10 * time.Second

// typeInfo is what Validate and Open know about a Type.
type typeInfo struct {
	i2c         bool               // on an I²C bus (DS2482: the bridge's bus)
	addrs       []uint16           // valid addresses; addrs[0] is the default
	quantities  []drivers.Quantity // quantities[0] is the default
	rom         bool               // needs a ROM id
	shared      bool               // several Specs may use one chip
	minInterval time.Duration
}

var types = map[Type]typeInfo{
	W1DS18B20: {quantities: []drivers.Quantity{drivers.Temperature}, rom: true, minInterval: time.Second},
	// periph's ds248x accepts 0x18 and 0x19 of the DS2482's 0x18..0x1b.
	DS2482DS18B20: {i2c: true, addrs: []uint16{0x18, 0x19}, quantities: []drivers.Quantity{drivers.Temperature}, rom: true, shared: true},
	TMP102:        {i2c: true, addrs: []uint16{0x48, 0x49, 0x4a, 0x4b}, quantities: []drivers.Quantity{drivers.Temperature}, minInterval: 250 * time.Millisecond},
	MCP9808:       {i2c: true, addrs: []uint16{0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f}, quantities: []drivers.Quantity{drivers.Temperature}, minInterval: 250 * time.Millisecond},
	BME280:        {i2c: true, addrs: []uint16{0x76, 0x77}, quantities: []drivers.Quantity{drivers.Temperature, drivers.Humidity, drivers.Pressure}, shared: true, minInterval: 100 * time.Millisecond},
	ADS1115PH:     {i2c: true, addrs: []uint16{0x48, 0x49, 0x4a, 0x4b}, quantities: []drivers.Quantity{drivers.PH, drivers.Voltage}, shared: true, minInterval: 100 * time.Millisecond},
	EZOPH:         {i2c: true, addrs: []uint16{0x63}, quantities: []drivers.Quantity{drivers.PH}, minInterval: time.Second},
	Sim:           {quantities: []drivers.Quantity{drivers.Temperature, drivers.PH, drivers.Humidity, drivers.Pressure, drivers.Voltage}},
}

// Addr is a 7-bit I²C address. In YAML it is hex with 0x (0x48) or decimal
// (72), bare or quoted.
type Addr uint16

func (a Addr) String() string { return fmt.Sprintf("%#02x", uint16(a)) }

// UnmarshalYAML implements yaml.Unmarshaler.
func (a *Addr) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: addr must be a number like 0x48", n.Line)
	}
	s := strings.TrimSpace(n.Value)
	var v uint64
	var err error
	if h, ok := strings.CutPrefix(strings.ToLower(s), "0x"); ok {
		v, err = strconv.ParseUint(h, 16, 16)
	} else {
		v, err = strconv.ParseUint(s, 10, 16)
	}
	if err != nil {
		return fmt.Errorf("line %d: addr %q is not an I²C address (want hex like 0x48)", n.Line, n.Value)
	}
	*a = Addr(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler: addresses are written as hex.
func (a Addr) MarshalYAML() (any, error) { return a.String(), nil }

// Spec is one configured sensor.
type Spec struct {
	// Name identifies the sensor in readings, alerts and rules.
	Name string `yaml:"name"`
	// Type is one of Types.
	Type Type `yaml:"type"`
	// Bus is the I²C bus name for I²C types (DS2482: the bridge's bus);
	// default DefaultBus.
	Bus string `yaml:"bus,omitempty"`
	// Addr is the I²C address (DS2482: the bridge's); default per type.
	Addr Addr `yaml:"addr,omitempty"`
	// ROM is a DS18B20's ROM id as the kernel prints it (28-0316a2797aff).
	ROM string `yaml:"rom,omitempty"`
	// Quantity; default per type (bme280 needs it to read other than temperature).
	Quantity drivers.Quantity `yaml:"quantity,omitempty"`
	// Interval is the sampling period; default DefaultInterval.
	Interval time.Duration `yaml:"interval,omitempty"`
	// Resolution is a ds2482-ds18b20's resolution in bits, 9..12; default 12.
	Resolution int `yaml:"resolution,omitempty"`
	// Input is an ads1115-ph's ADC input, 0..3 (A0..A3).
	Input int `yaml:"input,omitempty"`
	// Calibration is an ads1115-ph's calibration file (JSON, see phprobe).
	Calibration string `yaml:"calibration,omitempty"`
	// TempSensor names the temperature sensor that compensates a pH sensor.
	TempSensor string `yaml:"temp_sensor,omitempty"`
	// Sim configures a sim sensor.
	Sim *SimSpec `yaml:"sim,omitempty"`
}

// SimSpec configures a simulated sensor; see package sim. A preset gives the
// starting values and the other fields override it (steps replace the
// preset's steps).
type SimSpec struct {
	Preset       string        `yaml:"preset,omitempty"` // demo-temperature | demo-ph
	Seed         uint64        `yaml:"seed,omitempty"`
	Base         *float64      `yaml:"base,omitempty"`
	Noise        *float64      `yaml:"noise,omitempty"`
	DriftPerHour float64       `yaml:"drift_per_hour,omitempty"`
	SpikeProb    float64       `yaml:"spike_prob,omitempty"`
	SpikeSize    float64       `yaml:"spike_size,omitempty"`
	Steps        []sim.Step    `yaml:"steps,omitempty"`
	DropoutProb  float64       `yaml:"dropout_prob,omitempty"`
	StuckProb    float64       `yaml:"stuck_prob,omitempty"`
	StuckFor     time.Duration `yaml:"stuck_for,omitempty"`
}

// Sim presets.
var simPresets = map[string]func(seed uint64) sim.Opts{
	"demo-temperature": sim.DemoTemperature,
	"demo-ph":          sim.DemoPH,
}

// simBase is the level of a sim sensor without preset or base.
var simBase = map[drivers.Quantity]float64{drivers.Temperature: 20, drivers.PH: 7, drivers.Humidity: 50, drivers.Pressure: 1013, drivers.Voltage: 1.5}

// opts builds the sim options for quantity q (already defaulted).
func (s *SimSpec) opts(q drivers.Quantity) sim.Opts {
	var o sim.Opts
	if s == nil {
		s = &SimSpec{}
	}
	if p, ok := simPresets[s.Preset]; ok {
		o = p(s.Seed)
	} else {
		o = sim.Opts{Seed: s.Seed, Base: simBase[q], Noise: 0.01 * math.Max(1, math.Abs(simBase[q]))}
	}
	o.Quantity = q
	if s.Base != nil {
		o.Base = *s.Base
	}
	if s.Noise != nil {
		o.Noise = *s.Noise
	}
	if s.DriftPerHour != 0 {
		o.DriftPerHour = s.DriftPerHour
	}
	if s.SpikeProb != 0 || s.SpikeSize != 0 {
		o.SpikeProb, o.SpikeSize = s.SpikeProb, s.SpikeSize
	}
	if s.Steps != nil {
		o.Steps = s.Steps
	}
	if s.DropoutProb != 0 {
		o.DropoutProb = s.DropoutProb
	}
	if s.StuckProb != 0 || s.StuckFor != 0 {
		o.StuckProb, o.StuckFor = s.StuckProb, s.StuckFor
	}
	return o
}

// WithDefaults returns s with the defaults of its type filled in: bus,
// address, quantity, interval, resolution. An unknown type is left alone.
func (s Spec) WithDefaults() Spec {
	ti, ok := types[s.Type]
	if !ok {
		return s
	}
	if ti.i2c {
		if s.Bus == "" {
			s.Bus = DefaultBus
		}
		if s.Addr == 0 {
			s.Addr = Addr(ti.addrs[0])
		}
	}
	if s.Quantity == "" {
		s.Quantity = ti.quantities[0]
		if s.Type == Sim && s.Sim != nil {
			if p, ok := simPresets[s.Sim.Preset]; ok {
				s.Quantity = p(0).Quantity
			}
		}
	}
	if s.Interval == 0 {
		s.Interval = DefaultInterval
	}
	if s.Type == DS2482DS18B20 && s.Resolution == 0 {
		s.Resolution = 12
	}
	return s
}

// Problem is one invalid setting, named by its key path.
type Problem struct {
	Key string // e.g. "sensors[2].addr"
	Msg string
}

func (p Problem) Error() string { return p.Key + ": " + p.Msg }

// Problems is every problem found in a configuration. It is an error.
type Problems []Problem

func (ps Problems) Error() string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.Error()
	}
	return strings.Join(s, "\n")
}

// err returns ps as an error, or nil when there is none.
func (ps Problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

type problems struct {
	prefix string
	list   Problems
}

func (p *problems) add(key, format string, args ...any) {
	k := p.prefix
	if key != "" {
		if k != "" {
			k += "."
		}
		k += key
	}
	p.list = append(p.list, Problem{Key: k, Msg: fmt.Sprintf(format, args...)})
}

// Validate checks one Spec on its own (with its defaults applied) and returns
// Problems keyed relative to the Spec ("addr", "sim.noise"), or nil.
// Checks across Specs (names, address clashes, temp_sensor) need Validate.
func (s Spec) Validate() error {
	p := &problems{}
	s.validate(p)
	return p.list.err()
}

func (s Spec) validate(p *problems) {
	if err := checkName(s.Name); err != nil {
		p.add("name", "%v", err)
	}
	ti, ok := types[s.Type]
	if !ok {
		if s.Type == "" {
			p.add("type", "missing; want one of %s", typeList())
		} else {
			p.add("type", "%q is not a sensor type; want one of %s", s.Type, typeList())
		}
		return
	}
	s = s.WithDefaults()
	t := s.Type
	notFor := func(key string) { p.add(key, "not used by type %s", t) }

	// Bus and address.
	if ti.i2c {
		a := uint16(s.Addr)
		switch {
		case a > 0x7f:
			p.add("addr", "%s is not a 7-bit address", s.Addr)
		case a < 0x08 || a > 0x77:
			p.add("addr", "%s is a reserved I²C address", s.Addr)
		case t != EZOPH && !slices.Contains(ti.addrs, a):
			p.add("addr", "%s: a %s answers at %s", s.Addr, t, addrList(ti.addrs))
		}
		if strings.ContainsAny(s.Bus, " \t\n") {
			p.add("bus", "%q is not a bus name", s.Bus)
		}
	} else {
		if s.Bus != "" {
			notFor("bus")
		}
		if s.Addr != 0 {
			notFor("addr")
		}
	}

	// ROM.
	switch {
	case t == W1DS18B20 && s.ROM == "":
		p.add("rom", "missing: the probe's ROM id, e.g. 28-0316a2797aff (see outpost-gateway scan)")
	case t == W1DS18B20 && !w1.ValidID(s.ROM):
		p.add("rom", "%q is not a DS18B20 ROM id (want 28- and 12 lowercase hex digits)", s.ROM)
	case t == DS2482DS18B20 && s.ROM == "":
		p.add("rom", "missing: the probe's ROM id, e.g. 28-0316a2797aff (see outpost-gateway scan)")
	case t == DS2482DS18B20:
		if a, err := ds18b20.ParseROM(s.ROM); err != nil {
			p.add("rom", "%v", strings.TrimPrefix(err.Error(), "ds18b20: "))
		} else if byte(a) != ds18b20.Family {
			p.add("rom", "%q is family %#02x, not a DS18B20 (28)", s.ROM, byte(a))
		}
	case !ti.rom && s.ROM != "":
		notFor("rom")
	}

	// Quantity.
	if !slices.Contains(ti.quantities, s.Quantity) {
		p.add("quantity", "%q: a %s measures %s", s.Quantity, t, quantityList(ti.quantities))
	}

	// Interval.
	switch {
	case s.Interval < 0:
		p.add("interval", "%v is negative", s.Interval)
	case s.Interval < minInterval(s):
		p.add("interval", "%v is shorter than a %s reading takes (%v)", s.Interval, t, minInterval(s))
	}

	// Type-specific settings.
	if t == DS2482DS18B20 {
		if s.Resolution < 9 || s.Resolution > 12 {
			p.add("resolution", "%d bits, want 9..12", s.Resolution)
		}
	} else if s.Resolution != 0 {
		notFor("resolution")
	}
	if t == ADS1115PH {
		if s.Input < 0 || s.Input > 3 {
			p.add("input", "%d, want 0..3 (A0..A3)", s.Input)
		}
		if s.Quantity == drivers.PH && s.Calibration == "" {
			p.add("calibration", "missing: an ads1115-ph needs a calibration file to give pH")
		}
	} else {
		if s.Input != 0 {
			notFor("input")
		}
		if s.Calibration != "" {
			notFor("calibration")
		}
	}
	phSensor := (t == ADS1115PH || t == EZOPH) && s.Quantity == drivers.PH
	if s.TempSensor != "" && !phSensor {
		p.add("temp_sensor", "only a pH sensor takes a temperature sensor")
	}
	if t == Sim {
		s.Sim.validate(p, s.Quantity)
	} else if s.Sim != nil {
		notFor("sim")
	}
}

func (s *SimSpec) validate(p *problems, q drivers.Quantity) {
	if s == nil {
		return
	}
	if s.Preset != "" {
		f, ok := simPresets[s.Preset]
		if !ok {
			p.add("sim.preset", "%q unknown; want demo-temperature or demo-ph", s.Preset)
		} else if pq := f(0).Quantity; pq != q {
			p.add("sim.preset", "%s gives %s, but quantity is %s", s.Preset, pq, q)
		}
	}
	for _, f := range []struct {
		key string
		v   float64
	}{{"sim.spike_prob", s.SpikeProb}, {"sim.dropout_prob", s.DropoutProb}, {"sim.stuck_prob", s.StuckProb}} {
		if !(f.v >= 0 && f.v <= 1) {
			p.add(f.key, "%g, want a probability 0..1", f.v)
		}
	}
	if s.Noise != nil && !(*s.Noise >= 0) {
		p.add("sim.noise", "%g, want ≥ 0", *s.Noise)
	}
	if s.Base != nil && (math.IsNaN(*s.Base) || math.IsInf(*s.Base, 0)) {
		p.add("sim.base", "%g is not a number", *s.Base)
	}
	for key, v := range map[string]float64{"sim.drift_per_hour": s.DriftPerHour, "sim.spike_size": s.SpikeSize} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			p.add(key, "%g is not a number", v)
		}
	}
	if s.StuckFor < 0 {
		p.add("sim.stuck_for", "%v is negative", s.StuckFor)
	}
	for i, st := range s.Steps {
		if st.At < 0 {
			p.add(fmt.Sprintf("sim.steps[%d].at", i), "%v is negative", st.At)
		}
		if math.IsNaN(st.Size) || math.IsInf(st.Size, 0) {
			p.add(fmt.Sprintf("sim.steps[%d].size", i), "%g is not a number", st.Size)
		}
	}
}

func minInterval(s Spec) time.Duration {
	if s.Type == DS2482DS18B20 && s.Resolution >= 9 && s.Resolution <= 12 {
		return ds18b20.ConversionTime(s.Resolution)
	}
	return types[s.Type].minInterval
}

// checkName applies the rule for sensor names: 1..MaxSensorNameLen of
// [A-Za-z0-9._-], not starting with '.' or '-' (they appear in topics and rules).
func checkName(n string) error {
	if n == "" {
		return errors.New("missing")
	}
	if len(n) > protocol.MaxSensorNameLen {
		return fmt.Errorf("%.20q… is %d bytes, at most %d", n, len(n), protocol.MaxSensorNameLen)
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
		case (c == '.' || c == '-') && i > 0:
		default:
			return fmt.Errorf("%q: character %q at %d not allowed (use A-Z a-z 0-9 . _ -)", n, c, i)
		}
	}
	return nil
}

func typeList() string {
	s := make([]string, len(Types))
	for i, t := range Types {
		s[i] = string(t)
	}
	return strings.Join(s, " | ")
}

func addrList(as []uint16) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = Addr(a).String()
	}
	return strings.Join(s, ", ")
}

func quantityList(qs []drivers.Quantity) string {
	s := make([]string, len(qs))
	for i, q := range qs {
		s[i] = string(q)
	}
	return strings.Join(s, ", ")
}

// Validate checks specs, the "sensors" list of the gateway configuration,
// and returns Problems keyed "sensors[i].key", or nil.
func Validate(specs []Spec) error { return ValidateAt("sensors", specs) }

// ValidateAt is Validate with the list at key path path.
func ValidateAt(path string, specs []Spec) error {
	var all Problems
	for i, s := range specs {
		p := &problems{prefix: fmt.Sprintf("%s[%d]", path, i)}
		s.validate(p)
		all = append(all, p.list...)
	}
	all = append(all, crossCheck(path, specs)...)
	sort.SliceStable(all, func(i, j int) bool { return specIndex(all[i].Key) < specIndex(all[j].Key) })
	return all.err()
}

// specIndex extracts i from "path[i].key" for sorting.
func specIndex(key string) int {
	open := strings.IndexByte(key, '[')
	end := strings.IndexByte(key, ']')
	if open < 0 || end < open {
		return -1
	}
	n, _ := strconv.Atoi(key[open+1 : end])
	return n
}

// Known address clashes, for a helpful message.
var clashHints = map[[2]Type]string{
	{ADS1115PH, TMP102}:      "ADS1115 and TMP102 both default to 0x48: move one with its ADDR/ADD0 pin",
	{DS2482DS18B20, MCP9808}: "DS2482 and MCP9808 both default to 0x18: move the MCP9808 with its A0..A2 pins",
}

func crossCheck(path string, specs []Spec) Problems {
	var ps Problems
	key := func(i int, k string) string { return fmt.Sprintf("%s[%d].%s", path, i, k) }
	d := make([]Spec, len(specs))
	for i, s := range specs {
		d[i] = s.WithDefaults()
	}

	// Names are unique.
	names := map[string]int{}
	for i, s := range d {
		if s.Name == "" {
			continue
		}
		if j, ok := names[s.Name]; ok {
			ps = append(ps, Problem{key(i, "name"), fmt.Sprintf("%q is already the name of %s[%d]", s.Name, path, j)})
			continue
		}
		names[s.Name] = i
	}

	// One chip per (bus, address), unless the type shares a chip; then no
	// two Specs read the same thing from it.
	type busAddr struct {
		bus  string
		addr Addr
	}
	first := map[busAddr]int{}
	same := map[string]int{}
	for i, s := range d {
		ti, ok := types[s.Type]
		if !ok || !ti.i2c {
			continue
		}
		ba := busAddr{s.Bus, s.Addr}
		j, seen := first[ba]
		if !seen {
			first[ba] = i
		} else if o := d[j]; o.Type != s.Type || !ti.shared {
			msg := fmt.Sprintf("%s on bus %s is also used by %s[%d] (%s)", s.Addr, s.Bus, path, j, o.Type)
			pair := [2]Type{o.Type, s.Type}
			slices.Sort(pair[:])
			if h, ok := clashHints[pair]; ok {
				msg += "; " + h
			}
			ps = append(ps, Problem{key(i, "addr"), msg})
			continue
		}
		// What this Spec reads from the chip.
		what := ""
		switch s.Type {
		case BME280:
			what = "quantity " + string(s.Quantity)
		case ADS1115PH:
			what = fmt.Sprintf("input %d as %s", s.Input, s.Quantity)
		case DS2482DS18B20:
			a, err := ds18b20.ParseROM(s.ROM)
			if err != nil {
				continue
			}
			what = "rom " + ds18b20.FormatROM(a)
		}
		k := fmt.Sprintf("%s|%s|%s", s.Bus, s.Addr, what)
		if j, ok := same[k]; ok {
			ps = append(ps, Problem{key(i, "addr"), fmt.Sprintf("%s %s on bus %s is already read by %s[%d]", s.Addr, what, s.Bus, path, j)})
			continue
		}
		same[k] = i
	}

	// A 1-Wire probe is configured once.
	roms := map[string]int{}
	for i, s := range d {
		if s.Type != W1DS18B20 || s.ROM == "" {
			continue
		}
		if j, ok := roms[s.ROM]; ok {
			ps = append(ps, Problem{key(i, "rom"), fmt.Sprintf("%s is already read by %s[%d]", s.ROM, path, j)})
			continue
		}
		roms[s.ROM] = i
	}

	// temp_sensor names a temperature sensor.
	for i, s := range d {
		if s.TempSensor == "" {
			continue
		}
		j, ok := names[s.TempSensor]
		switch {
		case !ok:
			ps = append(ps, Problem{key(i, "temp_sensor"), fmt.Sprintf("no sensor is named %q", s.TempSensor)})
		case j == i:
			ps = append(ps, Problem{key(i, "temp_sensor"), "a sensor cannot compensate itself"})
		case d[j].Quantity != drivers.Temperature && types[d[j].Type].quantities != nil:
			ps = append(ps, Problem{key(i, "temp_sensor"), fmt.Sprintf("%q measures %s, not temperature", s.TempSensor, d[j].Quantity)})
		}
	}
	return ps
}

// ParseSpecs decodes a YAML list of Specs, rejecting unknown keys, and
// validates it (keys "sensors[i]...").
func ParseSpecs(b []byte) ([]Spec, error) {
	var specs []Spec
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&specs); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("catalog: decode sensors: %w", err)
	}
	if err := Validate(specs); err != nil {
		return nil, err
	}
	return specs, nil
}
