package bme280

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/devices/v3/bmxx80"

	"github.com/outpost-iot/outpost/drivers"
)

// Calibration and measurement bytes recorded from a real BME280 (periph's
// bmxx80 tests); register map in datasheet section 5.
var (
	calib  = []byte{0x10, 0x6e, 0x6c, 0x66, 0x32, 0x0, 0x5d, 0x95, 0xb8, 0xd5, 0xd0, 0xb, 0x77, 0x1e, 0x9d, 0xff, 0xf9, 0xff, 0xac, 0x26, 0xa, 0xd8, 0xbd, 0x10, 0x0, 0x4b}
	calibH = []byte{0x6e, 0x1, 0x0, 0x13, 0x5, 0x0, 0x1e}
	sample = []byte{0x4a, 0x52, 0xc0, 0x80, 0x96, 0xc0, 0x7a, 0x76} // press, temp, hum
)

// bmeInit is New's traffic for a BME280 at 1x oversampling: chip id, the two
// calibration blocks, then ctrl_meas (sleep), ctrl_hum, config, ctrl_meas.
func bmeInit(addr uint16) []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: addr, W: []byte{0xd0}, R: []byte{0x60}},
		{Addr: addr, W: []byte{0x88}, R: calib},
		{Addr: addr, W: []byte{0xe1}, R: calibH},
		{Addr: addr, W: []byte{0xf4, 0x24, 0xf2, 0x01, 0xf5, 0xa0, 0xf4, 0x24}},
	}
}

// measure is one forced measurement: ctrl_meas forced, status busy then idle,
// burst read of 0xf7..0xfe.
func measure(addr uint16, data []byte) []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: addr, W: []byte{0xf4, 0x25}},
		{Addr: addr, W: []byte{0xf3}, R: []byte{0x08}},
		{Addr: addr, W: []byte{0xf3}, R: []byte{0x00}},
		{Addr: addr, W: []byte{0xf7}, R: data},
	}
}

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

func TestSense(t *testing.T) {
	hot := append([]byte{}, sample...)
	hot[3], hot[4], hot[5] = 0xf0, 0x00, 0x00 // raw temperature 0xf0000 → 167 °C
	tests := []struct {
		name  string
		q     drivers.Quantity
		read  []i2ctest.IO
		want  float64
		cause string
	}{
		{"temperature", drivers.Temperature, measure(0x76, sample), 23.72, ""},
		{"humidity", drivers.Humidity, measure(0x76, sample), 65.3056, ""},
		{"pressure", drivers.Pressure, measure(0x76, sample), 1009.426953125, ""},
		{"too hot", drivers.Temperature, measure(0x76, hot), 0, drivers.CauseOutOfRange},
		{"bus error on trigger", drivers.Temperature, nil, 0, drivers.CauseIO},
		{"bus error on read", drivers.Humidity, measure(0x76, sample)[:3], 0, drivers.CauseIO},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus := &i2ctest.Playback{Ops: append(bmeInit(0x76), tt.read...), DontPanic: true}
			d, err := New(bus, 0x76, &Opts{Quantity: tt.q})
			if err != nil {
				t.Fatal(err)
			}
			got, err := d.Sense(context.Background())
			if c := cause(err); c != tt.cause {
				t.Fatalf("Sense: cause %q, want %q (%v)", c, tt.cause, err)
			}
			if err == nil && math.Abs(got-tt.want) > 1e-9 {
				t.Fatalf("Sense = %v, want %v", got, tt.want)
			}
			if err := bus.Close(); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestAs reads all three quantities from one chip, one measurement each.
func TestAs(t *testing.T) {
	ops := bmeInit(0x77)
	for range 3 {
		ops = append(ops, measure(0x77, sample)...)
	}
	bus := &i2ctest.Playback{Ops: ops}
	temp, err := New(bus, 0x77, nil)
	if err != nil {
		t.Fatal(err)
	}
	hum, err := temp.As(drivers.Humidity, "")
	if err != nil {
		t.Fatal(err)
	}
	pres, err := temp.As(drivers.Pressure, "air-pressure")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := temp.As(drivers.PH, ""); err == nil {
		t.Error("As(ph) succeeded")
	}
	want := []struct {
		s    *Dev
		name string
		q    drivers.Quantity
		v    float64
	}{
		{temp, "bme280-0x77-temperature", drivers.Temperature, 23.72},
		{hum, "bme280-0x77-humidity", drivers.Humidity, 65.3056},
		{pres, "air-pressure", drivers.Pressure, 1009.426953125},
	}
	for _, w := range want {
		if w.s.Name() != w.name || w.s.Quantity() != w.q || w.s.Chip() != "BME280" {
			t.Errorf("Name/Quantity/Chip = %q %q %q", w.s.Name(), w.s.Quantity(), w.s.Chip())
		}
		v, err := w.s.Sense(context.Background())
		if err != nil || math.Abs(v-w.v) > 1e-9 {
			t.Errorf("%s: Sense = %v, %v; want %v", w.name, v, err, w.v)
		}
	}
	if err := bus.Close(); err != nil {
		t.Error(err)
	}
}

func TestNew(t *testing.T) {
	bmp := []i2ctest.IO{
		{Addr: 0x76, W: []byte{0xd0}, R: []byte{0x58}},
		{Addr: 0x76, W: []byte{0x88}, R: calib},
		{Addr: 0x76, W: []byte{0xf4, 0x24, 0xf5, 0xa0, 0xf4, 0x24}},
	}
	tests := []struct {
		name  string
		addr  uint16
		opts  *Opts
		ops   []i2ctest.IO
		err   string
		cause string
	}{
		{name: "BME280", addr: 0x76, ops: bmeInit(0x76)},
		{name: "BMP280 temperature", addr: 0x76, ops: bmp},
		{name: "BMP280 humidity", addr: 0x76, opts: &Opts{Quantity: drivers.Humidity}, ops: bmp, err: "no humidity"},
		{
			name: "4x oversampling", addr: 0x76, opts: &Opts{Oversampling: bmxx80.O4x},
			ops: append(bmeInit(0x76)[:3], i2ctest.IO{Addr: 0x76, W: []byte{0xf4, 0x6c, 0xf2, 0x03, 0xf5, 0xa0, 0xf4, 0x6c}}),
		},
		{name: "not a Bosch chip", addr: 0x76, ops: []i2ctest.IO{{Addr: 0x76, W: []byte{0xd0}, R: []byte{0x12}}}, err: "not a BMx280"},
		{name: "nothing there", addr: 0x76, err: "bme280: open 0x76", cause: drivers.CauseIO},
		{name: "bad address", addr: 0x48, err: "want 0x76 or 0x77"},
		{name: "bad quantity", addr: 0x76, opts: &Opts{Quantity: drivers.PH}, err: "quantity \"ph\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus := &i2ctest.Playback{Ops: tt.ops, DontPanic: true}
			_, err := New(bus, tt.addr, tt.opts)
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
			if err := bus.Close(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestProbe(t *testing.T) {
	tests := []struct {
		id   []byte
		want string
	}{
		{[]byte{0x60}, "BME280"},
		{[]byte{0x58}, "BMP280"},
		{[]byte{0x55}, "BMP180"},
		{[]byte{0x61}, ""},
		{nil, ""}, // nothing there
	}
	for _, tt := range tests {
		var ops []i2ctest.IO
		if tt.id != nil {
			ops = []i2ctest.IO{{Addr: 0x77, W: []byte{0xd0}, R: tt.id}}
		}
		bus := &i2ctest.Playback{Ops: ops, DontPanic: true}
		got, err := Probe(bus, 0x77)
		if got != tt.want || (err == nil) != (tt.want != "") {
			t.Errorf("Probe(chip id %#x) = %q, %v; want %q", tt.id, got, err, tt.want)
		}
	}
}
