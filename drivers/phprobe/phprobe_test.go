package phprobe

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"strings"
	"testing"

	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/physic"

	"github.com/outpost-iot/outpost/drivers"
)

// ADS1115 traffic (datasheet section 8.6): a single-shot conversion writes the
// config register (pointer 0x01) and reads the conversion register (0x00).
// Config for A0, ±4.096 V, 860 SPS: OS=1 MUX=100 PGA=001 MODE=1 DR=111
// COMP_QUE=11 → 0xc3e3. One LSB is 125 µV.
const addr = 0x48

var probeOK = i2ctest.IO{Addr: addr, W: []byte{0x03}, R: []byte{0x7f, 0xff}} // Hi_thresh power-on

func convert(cfgHi byte, raw int16) []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: addr, W: []byte{0x01, cfgHi, 0xe3}},
		{Addr: addr, W: []byte{0x00}, R: []byte{byte(uint16(raw) >> 8), byte(raw)}},
	}
}

// raw is the ADS1115 code for v volts at ±4.096 V.
func raw(v float64) int16 { return int16(math.Round(v * 8000)) }

func cause(err error) string {
	var f *drivers.Fault
	if errors.As(err, &f) {
		return f.Cause
	}
	if err != nil {
		return "not a fault: " + err.Error()
	}
	return ""
}

// tank is the probe used by the device tests: DFRobot front end, 96 % slope,
// +5 mV offset, calibrated at 4 and 7 at 25 °C.
var tank = probe{fe: DFRobotV2, e0: 0.005, acidPct: 96, basePct: 96}

func tankCal() Calibration {
	return Calibration{FrontEnd: DFRobotV2, Points: []Point{tank.point(4, 25), tank.point(7, 25)}}
}

func opts(q drivers.Quantity) *Opts {
	return &Opts{Quantity: q, DataRate: 860 * physic.Hertz, Calibration: tankCal()}
}

func TestSense(t *testing.T) {
	tests := []struct {
		name  string
		q     drivers.Quantity
		raw   int16
		want  float64
		tol   float64
		cause string
	}{
		{"pH 5.5", drivers.PH, raw(tank.volts(5.5, 25)), 5.5, 0.005, ""},
		{"pH 8.3", drivers.PH, raw(tank.volts(8.3, 25)), 8.3, 0.005, ""},
		{"voltage", drivers.Voltage, 12000, 1.5, 1e-12, ""},
		{"saturated high", drivers.PH, 0x7fff, 0, 0, drivers.CauseOutOfRange},
		{"saturated low", drivers.Voltage, -0x8000, 0, 0, drivers.CauseOutOfRange},
		{"below ground", drivers.PH, -400, 0, 0, drivers.CauseOutOfRange},
		{"open probe: electrode beyond 500 mV", drivers.PH, raw(3.2), 0, 0, drivers.CauseOutOfRange},
		{"pH above 14", drivers.PH, raw(0.15), 0, 0, drivers.CauseOutOfRange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus := &i2ctest.Playback{Ops: append([]i2ctest.IO{probeOK}, convert(0xc3, tt.raw)...), DontPanic: true}
			d, err := New(bus, addr, opts(tt.q))
			if err != nil {
				t.Fatal(err)
			}
			got, err := d.Sense(context.Background())
			if c := cause(err); c != tt.cause {
				t.Fatalf("Sense: cause %q, want %q (%v)", c, tt.cause, err)
			}
			if err == nil && math.Abs(got-tt.want) > tt.tol {
				t.Fatalf("Sense = %v, want %v", got, tt.want)
			}
			if err := bus.Close(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestSenseBusError(t *testing.T) {
	bus := &i2ctest.Playback{Ops: []i2ctest.IO{probeOK, convert(0xc3, 0)[0]}, DontPanic: true}
	d, err := New(bus, addr, opts(drivers.PH))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Sense(context.Background()); cause(err) != drivers.CauseIO {
		t.Fatalf("Sense = %v, want an io fault", err)
	}
	if _, err := d.Sense(context.Background()); cause(err) != drivers.CauseIO {
		t.Fatalf("Sense = %v, want an io fault", err)
	}
}

// TestTemperature follows the compensation rule: the supplied temperature is
// used; on failure 25 °C is used, and the switch is logged once each way.
func TestTemperature(t *testing.T) {
	const ph = 4.5
	steps := []struct {
		temp float64
		err  error
		at   float64 // the solution's real temperature
		want float64
	}{
		{40, nil, 40, ph},
		{0, errors.New("ds18b20: crc"), 25, ph},
		{0, errors.New("ds18b20: crc"), 25, ph},
		{150, nil, 25, ph}, // implausible: fallback
		{10, nil, 10, ph},
	}
	var ops []i2ctest.IO
	for _, s := range steps {
		ops = append(ops, convert(0xc3, raw(tank.volts(ph, s.at)))...)
	}
	bus := &i2ctest.Playback{Ops: append([]i2ctest.IO{probeOK}, ops...)}
	var logs bytes.Buffer
	i := 0
	o := opts(drivers.PH)
	o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	o.Temperature = func() (float64, error) { return steps[i].temp, steps[i].err }
	d, err := New(bus, addr, o)
	if err != nil {
		t.Fatal(err)
	}
	for i = range steps {
		got, err := d.Sense(context.Background())
		if err != nil || math.Abs(got-steps[i].want) > 0.005 {
			t.Fatalf("step %d: Sense = %v, %v; want %v", i, got, err, steps[i].want)
		}
	}
	if n := strings.Count(logs.String(), "falls back to 25"); n != 1 {
		t.Errorf("fallback logged %d times, want 1:\n%s", n, logs.String())
	}
	if n := strings.Count(logs.String(), "restored"); n != 1 {
		t.Errorf("restore logged %d times, want 1:\n%s", n, logs.String())
	}
	if err := bus.Close(); err != nil {
		t.Error(err)
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name  string
		addr  uint16
		opts  *Opts
		ops   []i2ctest.IO
		err   string
		cause string
	}{
		{name: "A1, default rate", addr: addr, opts: &Opts{Input: 1, Calibration: tankCal()}, ops: []i2ctest.IO{probeOK}},
		{
			name: "probe by config register", addr: 0x49, opts: &Opts{Quantity: drivers.Voltage},
			ops: []i2ctest.IO{
				{Addr: 0x49, W: []byte{0x03}, R: []byte{0x80, 0x00}}, // conversion-ready mode thresholds
				{Addr: 0x49, W: []byte{0x01}, R: []byte{0x85, 0x83}},
			},
		},
		{
			name: "a TMP102 answers", addr: addr, err: "does not look like an ADS1115",
			ops: []i2ctest.IO{
				{Addr: addr, W: []byte{0x03}, R: []byte{0x50, 0x00}},
				{Addr: addr, W: []byte{0x01}, R: []byte{0x60, 0xa0}},
			},
		},
		{name: "nothing there", addr: addr, err: "ads1115: probe 0x48", cause: drivers.CauseIO},
		{name: "bad address", addr: 0x50, err: "want 0x48..0x4b"},
		{name: "bad input", addr: addr, opts: &Opts{Input: 4}, err: "input 4"},
		{name: "bad quantity", addr: addr, opts: &Opts{Quantity: drivers.Temperature}, err: "quantity"},
		{name: "range too wide", addr: addr, opts: &Opts{FullScale: 7 * physic.Volt}, ops: []i2ctest.IO{probeOK}, err: "maximum voltage"},
		{name: "invalid calibration", addr: addr, opts: &Opts{Calibration: Calibration{FrontEnd: DFRobotV2, Points: []Point{{PH: 7, Voltage: 2.5, TempC: 25}}}}, err: "offset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus := &i2ctest.Playback{Ops: tt.ops, DontPanic: true}
			d, err := New(bus, tt.addr, tt.opts)
			if tt.err == "" {
				if err != nil {
					t.Fatal(err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("New error %v, want %q", err, tt.err)
			}
			if c := cause(err); tt.cause != "" && c != tt.cause {
				t.Errorf("cause %q, want %q", c, tt.cause)
			}
			if err == nil && tt.name == "A1, default rate" {
				if d.Name() != "ph-0x48-a1" || d.Quantity() != drivers.PH || len(d.Calibration().Points) != 2 {
					t.Errorf("Name/Quantity/Calibration = %q %q %v", d.Name(), d.Quantity(), d.Calibration())
				}
			}
			if err := bus.Close(); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestCalibrate takes points through the device, the way a calibration
// command would, and then reads a sample.
func TestCalibrate(t *testing.T) {
	ops := []i2ctest.IO{probeOK}
	// A1, 16 Hz: MUX=101 DR=001 → 0xd323.
	read := func(v float64) {
		r := raw(v)
		ops = append(ops,
			i2ctest.IO{Addr: addr, W: []byte{0x01, 0xd3, 0x23}},
			i2ctest.IO{Addr: addr, W: []byte{0x00}, R: []byte{byte(uint16(r) >> 8), byte(r)}})
	}
	read(tank.volts(7, 22))
	read(tank.volts(4, 22))
	read(tank.volts(10, 22))
	read(tank.volts(6.1, 22))
	bus := &i2ctest.Playback{Ops: ops}
	d, err := New(bus, addr, &Opts{Input: 1, Quantity: drivers.Voltage})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := (&Dev{q: drivers.PH, name: "x"}).Sense(ctx); !errors.Is(err, ErrNotCalibrated) {
		t.Fatalf("Sense without calibration = %v", err)
	}
	c := Calibration{FrontEnd: DFRobotV2}
	for _, b := range []float64{BufferMid, BufferLow, BufferHigh} {
		v, err := d.ReadVoltage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.AddPoint(b, v, 22); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	v, err := d.Sense(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ph, err := c.PH(v, 22)
	if err != nil || math.Abs(ph-6.1) > 0.005 {
		t.Fatalf("pH = %v, %v; want 6.1", ph, err)
	}
	if err := bus.Close(); err != nil {
		t.Error(err)
	}
}
