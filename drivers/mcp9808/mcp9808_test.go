package mcp9808

import (
	"context"
	"errors"
	"strings"
	"testing"

	"periph.io/x/conn/v3/i2c/i2ctest"

	"github.com/outpost-iot/outpost/drivers"
)

// initOps is the traffic of New (datasheet section 5, periph's mcp9808.New):
// our probe reads the manufacturer and device IDs, periph writes the
// resolution register and clears the configuration register (continuous
// conversion).
func initOps(addr uint16, res byte) []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: addr, W: []byte{0x06}, R: []byte{0x00, 0x54}}, // manufacturer ID
		{Addr: addr, W: []byte{0x07}, R: []byte{0x04, 0x00}}, // device ID, revision
		{Addr: addr, W: []byte{0x08, res}},                   // resolution
		{Addr: addr, W: []byte{0x01, 0x00, 0x00}},            // configuration: continuous
	}
}

// ambient is a read of the ambient temperature register (register 5).
func ambient(msb, lsb byte) i2ctest.IO {
	return i2ctest.IO{Addr: 0x18, W: []byte{0x05}, R: []byte{msb, lsb}}
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
		{"25.0625", []i2ctest.IO{ambient(0x01, 0x91)}, 25.0625, ""},
		{"alert flags ignored", []i2ctest.IO{ambient(0xc1, 0x91)}, 25.0625, ""},
		{"-10", []i2ctest.IO{ambient(0x1f, 0x60)}, -10, ""},
		{"-40", []i2ctest.IO{ambient(0x1d, 0x80)}, -40, ""},
		{"below -40", []i2ctest.IO{ambient(0x1d, 0x70)}, 0, drivers.CauseOutOfRange},
		{"above 125", []i2ctest.IO{ambient(0x07, 0xe0)}, 0, drivers.CauseOutOfRange},
		{"bus error", nil, 0, drivers.CauseIO},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus := &i2ctest.Playback{Ops: append(initOps(0x18, 0x03), tt.read...), DontPanic: true}
			d, err := New(bus, 0x18, nil)
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
		{name: "default", addr: 0x18, ops: initOps(0x18, 0x03)},
		{name: "0.5 °C at 0x1f", addr: 0x1f, opts: &Opts{Resolution: Res0_5}, ops: initOps(0x1f, 0x00)},
		{name: "0.25 °C", addr: 0x18, opts: &Opts{Resolution: Res0_25}, ops: initOps(0x18, 0x01)},
		{name: "0.125 °C", addr: 0x18, opts: &Opts{Resolution: Res0_125}, ops: initOps(0x18, 0x02)},
		{name: "nothing there", addr: 0x18, err: "mcp9808: probe 0x18", cause: drivers.CauseIO},
		{
			name: "a DS2482 answers", addr: 0x18, err: "not an MCP9808",
			ops: []i2ctest.IO{
				{Addr: 0x18, W: []byte{0x06}, R: []byte{0x18, 0x18}},
				{Addr: 0x18, W: []byte{0x07}, R: []byte{0x18, 0x18}},
			},
		},
		{name: "resolution write fails", addr: 0x18, ops: initOps(0x18, 0x03)[:2], err: "mcp9808: configure", cause: drivers.CauseIO},
		{name: "bad address", addr: 0x48, err: "want 0x18..0x1f"},
		{name: "bad resolution", addr: 0x18, opts: &Opts{Resolution: 7}, err: "unknown resolution"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus := &i2ctest.Playback{Ops: tt.ops, DontPanic: true}
			d, err := New(bus, tt.addr, tt.opts)
			if tt.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tt.opts == nil && d.Name() != "mcp9808-0x18" {
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
