package tmp102

import (
	"context"
	"errors"
	"strings"
	"testing"

	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/devices/v3/tmp102"

	"github.com/outpost-iot/outpost/drivers"
)

// Register traffic from the datasheet (section 7.5) and periph's tmp102.NewI2C:
// our probe reads the configuration register (power-on value 0x60a0), periph
// reads it again and writes it back with the rate and comparator mode.
func initOps(addr uint16) []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: addr, W: []byte{0x01}, R: []byte{0x60, 0xa0}}, // probe
		{Addr: addr, W: []byte{0x01}, R: []byte{0x60, 0xa0}}, // periph: read configuration
		{Addr: addr, W: []byte{0x01, 0x60, 0xa0}},            // periph: write configuration (4 Hz, comparator, running)
	}
}

func temp(addr uint16, msb, lsb byte) i2ctest.IO {
	return i2ctest.IO{Addr: addr, W: []byte{0x00}, R: []byte{msb, lsb}}
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
	tests := []struct {
		name  string
		read  []i2ctest.IO
		want  float64
		cause string
	}{
		{"25", []i2ctest.IO{temp(0x48, 0x19, 0x00)}, 25, ""},
		{"0.0625", []i2ctest.IO{temp(0x48, 0x00, 0x10)}, 0.0625, ""},
		{"-25", []i2ctest.IO{temp(0x48, 0xe7, 0x00)}, -25, ""},
		{"-55", []i2ctest.IO{temp(0x48, 0xc9, 0x00)}, -55, ""},
		{"127.9375", []i2ctest.IO{temp(0x48, 0x7f, 0xf0)}, 127.9375, ""},
		{"below -55", []i2ctest.IO{temp(0x48, 0xc8, 0x00)}, 0, drivers.CauseOutOfRange},
		{"bus error", nil, 0, drivers.CauseIO},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus := &i2ctest.Playback{Ops: append(initOps(0x48), tt.read...), DontPanic: true}
			d, err := New(bus, 0x48, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := d.Sense(context.Background())
			if c := cause(err); c != tt.cause {
				t.Fatalf("Sense: cause %q, want %q (%v)", c, tt.cause, err)
			}
			if err == nil && got != tt.want {
				t.Fatalf("Sense = %v, want %v", got, tt.want)
			}
			if err := bus.Close(); err != nil {
				t.Error(err)
			}
		})
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
		{name: "default", addr: 0x48, ops: initOps(0x48)},
		{
			name: "1 Hz at 0x49", addr: 0x49, opts: &Opts{SampleRate: tmp102.RateOneHertz, Name: "air"},
			ops: []i2ctest.IO{
				{Addr: 0x49, W: []byte{0x01}, R: []byte{0x60, 0xa0}},
				{Addr: 0x49, W: []byte{0x01}, R: []byte{0x60, 0xa0}},
				{Addr: 0x49, W: []byte{0x01, 0x60, 0x60}}, // CR1 CR0 = 01
			},
		},
		{name: "no chip", addr: 0x48, err: "tmp102: probe 0x48", cause: drivers.CauseIO},
		{
			name: "an ADS1115 answers", addr: 0x48, err: "not a TMP102",
			ops: []i2ctest.IO{{Addr: 0x48, W: []byte{0x01}, R: []byte{0x85, 0x83}}}, // ADS1115 power-on config
		},
		{
			name: "configuration write fails", addr: 0x48, err: "tmp102: configure", cause: drivers.CauseIO,
			ops: initOps(0x48)[:2],
		},
		{name: "bad address", addr: 0x18, err: "want 0x48..0x4b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus := &i2ctest.Playback{Ops: tt.ops, DontPanic: true}
			d, err := New(bus, tt.addr, tt.opts)
			if tt.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tt.opts == nil && d.Name() != "tmp102-0x48" {
					t.Errorf("Name = %q", d.Name())
				}
				if d.Quantity() != drivers.Temperature {
					t.Errorf("Quantity = %q", d.Quantity())
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
