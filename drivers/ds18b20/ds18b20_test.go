package ds18b20

import (
	"context"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/onewire"
	"periph.io/x/conn/v3/onewire/onewiretest"

	"github.com/outpost-iot/outpost/drivers"
)

// addr is the probe used in periph's own ds18b20 tests (a real ROM, CRC 0x74).
const addr onewire.Address = 0x740000070e41ac28

// Resolution bits 9..12 in the configuration register (datasheet p.9, fig. 10).
var cfgReg = map[int]byte{9: 0x1f, 10: 0x3f, 11: 0x5f, 12: 0x7f}

// match is Match ROM (0x55) + the address + cmd (datasheet p.11).
func match(cmd ...byte) []byte {
	w := make([]byte, 9, 9+len(cmd))
	w[0] = 0x55
	binary.LittleEndian.PutUint64(w[1:], uint64(addr))
	return append(w, cmd...)
}

// spad is a 9-byte scratchpad (datasheet p.8, fig. 9) for a raw temperature in
// 1/16 °C, with TH=75, TL=70, the given resolution and a correct CRC.
func spad(raw int16, bits int) []byte {
	b := []byte{byte(raw), byte(uint16(raw) >> 8), 0x4b, 0x46, cfgReg[bits], 0xff, 0x0c, 0x10, 0}
	b[8] = onewire.CalcCRC(b[:8])
	return b
}

func readSpad(b []byte) onewiretest.IO { return onewiretest.IO{W: match(0xbe), R: b} }

var convert = onewiretest.IO{W: match(0x44), Pull: onewire.StrongPullup}

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

func TestNew(t *testing.T) {
	tests := []struct {
		name  string
		res   int
		addr  onewire.Address
		ops   []onewiretest.IO
		err   string // substring of the error; "" for success
		cause string
	}{
		{name: "same resolution: no EEPROM write", res: 9, addr: addr, ops: []onewiretest.IO{readSpad(spad(0x0191, 9))}},
		{name: "default 12 bits", addr: addr, ops: []onewiretest.IO{readSpad(spad(0x0191, 12))}},
		{
			name: "different resolution: write scratchpad + copy to EEPROM", res: 10, addr: addr,
			ops: []onewiretest.IO{
				readSpad(spad(0x0191, 12)),
				{W: match(0x4e, 0, 0, cfgReg[10])},           // Write Scratchpad TH TL config
				{W: match(0x48), Pull: onewire.StrongPullup}, // Copy Scratchpad
			},
		},
		{name: "no presence: all 0xff", res: 9, addr: addr, ops: []onewiretest.IO{readSpad([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})}, err: "ds18b20: open 28-0000070e41ac", cause: drivers.CauseMissing},
		{name: "bad CRC", res: 9, addr: addr, ops: []onewiretest.IO{readSpad(append(spad(0x0191, 9)[:8], 0))}, err: "ds18b20: open", cause: drivers.CauseCRC},
		{name: "bus error", res: 9, addr: addr, err: "ds18b20: open", cause: drivers.CauseIO},
		{name: "bad resolution", res: 13, addr: addr, err: "resolution 13"},
		{name: "DS18S20 family", res: 9, addr: 0x10, err: "not a DS18B20"},
		{name: "bad ROM CRC", res: 9, addr: addr ^ 0xff00000000000000, err: "bad ROM CRC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus := &onewiretest.Playback{Ops: tt.ops, DontPanic: true}
			d, err := New(bus, tt.addr, &Opts{Resolution: tt.res})
			if tt.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if d.Name() != "ds18b20-28-0000070e41ac" || d.Quantity() != drivers.Temperature || d.Addr() != addr {
					t.Errorf("Name/Quantity/Addr = %q %q %#x", d.Name(), d.Quantity(), d.Addr())
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

func TestSense(t *testing.T) {
	ones := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	tests := []struct {
		name  string
		ops   []onewiretest.IO // after New
		want  float64
		cause string
	}{
		{"25.0625", []onewiretest.IO{convert, readSpad(spad(0x0191, 9))}, 25.0625, ""},
		{"-10.125", []onewiretest.IO{convert, readSpad(spad(-162, 9))}, -10.125, ""},
		{"-55", []onewiretest.IO{convert, readSpad(spad(-55*16, 9))}, -55, ""},
		{"125", []onewiretest.IO{convert, readSpad(spad(125*16, 9))}, 125, ""},
		{"85.0625 is real", []onewiretest.IO{convert, readSpad(spad(85*16+1, 9))}, 85.0625, ""},
		{"85 power-on", []onewiretest.IO{convert, readSpad(spad(85*16, 9))}, 0, drivers.CausePowerOn},
		{"bad CRC", []onewiretest.IO{convert, readSpad(append(spad(0x0191, 9)[:8], 0x00))}, 0, drivers.CauseCRC},
		{"gone: all 0xff", []onewiretest.IO{convert, readSpad(ones)}, 0, drivers.CauseMissing},
		{"out of range", []onewiretest.IO{convert, readSpad(spad(-60*16, 9))}, 0, drivers.CauseOutOfRange},
		{"bus error on convert", nil, 0, drivers.CauseIO},
		{"bus error on read", []onewiretest.IO{convert}, 0, drivers.CauseIO},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus := &onewiretest.Playback{Ops: append([]onewiretest.IO{readSpad(spad(0, 9))}, tt.ops...), DontPanic: true}
			d, err := New(bus, addr, &Opts{Resolution: 9, Name: "tank"})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			got, err := d.Sense(context.Background())
			if c := cause(err); c != tt.cause {
				t.Fatalf("Sense: cause %q, want %q (%v)", c, tt.cause, err)
			}
			if err == nil && got != tt.want {
				t.Fatalf("Sense = %v, want %v", got, tt.want)
			}
			if len(tt.ops) == 2 && time.Since(start) < ConversionTime(9) {
				t.Errorf("Sense returned after %v, before the conversion time", time.Since(start))
			}
			if err := bus.Close(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestSenseContext(t *testing.T) {
	bus := &onewiretest.Playback{Ops: []onewiretest.IO{readSpad(spad(0, 12)), convert}, DontPanic: true}
	d, err := New(bus, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := d.Sense(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Sense = %v, want deadline exceeded", err)
	}
	if el := time.Since(start); el > ConversionTime(12)/2 {
		t.Errorf("Sense ignored the deadline: took %v", el)
	}
	if _, err := d.Sense(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Sense(done ctx) = %v", err)
	}
	if err := bus.Close(); err != nil {
		t.Error(err)
	}
}

func TestScan(t *testing.T) {
	devs := []onewire.Address{addr, 0xfc0000013199a928, 0xf100000131856328, 0x0000000000000010}
	// Fix up the CRC byte of the made-up ones.
	for i, a := range devs {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], uint64(a))
		devs[i] = onewire.Address(onewire.CalcCRC(b[:7]))<<56 | a&0x00ffffffffffffff
	}
	ops := make([]onewiretest.IO, len(devs)) // one Search ROM (0xf0) per device found
	for i := range ops {
		ops[i] = onewiretest.IO{W: []byte{0xf0}}
	}
	bus := &onewiretest.Playback{Ops: ops, Devices: devs}
	got, err := Scan(bus)
	if err != nil {
		t.Fatal(err)
	}
	want := []onewire.Address{devs[0], devs[2], devs[1]} // sorted, family 0x10 dropped
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Scan = %#x, want %#x", got, want)
	}
	if err := bus.Close(); err != nil {
		t.Error(err)
	}

	empty := &onewiretest.Playback{Ops: []onewiretest.IO{{W: []byte{0xf0}}}, DontPanic: true}
	if got, err := Scan(empty); err == nil || len(got) != 0 {
		t.Fatalf("Scan(empty bus) = %v, %v; want an error", got, err)
	}
}

func TestROM(t *testing.T) {
	if s := FormatROM(addr); s != "28-0000070e41ac" {
		t.Fatalf("FormatROM = %q", s)
	}
	tests := []struct {
		in   string
		want onewire.Address
		err  bool
	}{
		{"28-0000070e41ac", addr, false},
		{"0x740000070e41ac28", addr, false},
		{"740000070e41ac28", addr, false},
		{"750000070e41ac28", 0, true}, // CRC
		{"28-0000070e41a", 0, true},
		{"28-0000070e41ag", 0, true},
		{"2-80000070e41ac", 0, true},
		{"", 0, true},
		{"0x", 0, true},
		{"0x1740000070e41ac28", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseROM(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseROM(%q) = %#x, %v; want %#x, err %v", tt.in, got, err, tt.want, tt.err)
		}
	}
	// Round trip through the kernel form.
	for _, a := range []onewire.Address{addr, 0xfc0000013199a928} {
		b, err := ParseROM(FormatROM(a))
		if err != nil || b != a {
			t.Errorf("ParseROM(FormatROM(%#x)) = %#x, %v", a, b, err)
		}
	}
}
