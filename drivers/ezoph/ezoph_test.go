package ezoph

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/i2c/i2ctest"

	"github.com/outpost-iot/outpost/drivers"
)

const addr = DefaultAddr

// I²C traffic as in the datasheet's I²C chapter: a command is a plain write,
// the reply a separate read of status + ASCII + NUL (we read 31 bytes; the
// chip pads with NUL).
func send(cmd string) i2ctest.IO { return i2ctest.IO{Addr: addr, W: []byte(cmd)} }

func reply(status byte, text string) i2ctest.IO {
	r := make([]byte, replyLen)
	r[0] = status
	copy(r[1:], text)
	return i2ctest.IO{Addr: addr, R: r}
}

func exchange(cmd string, status byte, text string) []i2ctest.IO {
	return []i2ctest.IO{send(cmd), reply(status, text)}
}

var info = exchange("i", StatusOK, "?i,pH,2.16")

var noWait = &Waits{Retries: 2}

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

func join(ops ...[]i2ctest.IO) []i2ctest.IO {
	var all []i2ctest.IO
	for _, o := range ops {
		all = append(all, o...)
	}
	return all
}

func TestSense(t *testing.T) {
	tests := []struct {
		name  string
		ops   []i2ctest.IO
		want  float64
		cause string
	}{
		{"reading", exchange("R", StatusOK, "7.012"), 7.012, ""},
		{"still processing, then ready", join(
			[]i2ctest.IO{send("R"), reply(StatusProcessing, "")},
			[]i2ctest.IO{reply(StatusProcessing, ""), reply(StatusOK, "5.501")}), 5.501, ""},
		{"still processing for too long", join(
			[]i2ctest.IO{send("R"), reply(StatusProcessing, "")},
			[]i2ctest.IO{reply(StatusProcessing, ""), reply(StatusProcessing, "")}), 0, drivers.CauseTimeout},
		{"syntax error", exchange("R", StatusSyntax, ""), 0, drivers.CauseDeviceError},
		{"no data", exchange("R", StatusNoData, ""), 0, drivers.CauseDeviceError},
		{"unknown status", exchange("R", 7, ""), 0, drivers.CauseDeviceError},
		{"not a number", exchange("R", StatusOK, "*OV"), 0, drivers.CauseDeviceError},
		{"NaN", exchange("R", StatusOK, "NaN"), 0, drivers.CauseDeviceError},
		{"out of range", exchange("R", StatusOK, "14.5"), 0, drivers.CauseOutOfRange},
		{"garbled", exchange("R", StatusOK, "7.0\x8012"), 0, drivers.CauseDeviceError},
		{"no terminator", exchange("R", StatusOK, strings.Repeat("7", replyLen-1)), 0, drivers.CauseDeviceError},
		{"bus error on write", nil, 0, drivers.CauseIO},
		{"bus error on read", []i2ctest.IO{send("R")}, 0, drivers.CauseIO},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus := &i2ctest.Playback{Ops: join(info, tt.ops), DontPanic: true}
			d, err := New(bus, addr, &Opts{Waits: noWait})
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
		ops   []i2ctest.IO
		err   string
		cause string
	}{
		{name: "EZO-pH", addr: addr, ops: info},
		{name: "EZO-EC", addr: addr, ops: exchange("i", StatusOK, "?i,EC,2.10"), err: "EZO-EC, not an EZO-pH"},
		{name: "something else", addr: addr, ops: exchange("i", StatusOK, "hello"), err: "unexpected info reply"},
		{name: "syntax error", addr: addr, ops: exchange("i", StatusSyntax, ""), err: "ezoph: probe 0x63", cause: drivers.CauseDeviceError},
		{name: "nothing there", addr: addr, err: "ezoph: probe 0x63", cause: drivers.CauseIO},
		{name: "bad address", addr: 0x80, err: "want 0x01..0x7f"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus := &i2ctest.Playback{Ops: tt.ops, DontPanic: true}
			d, err := New(bus, tt.addr, &Opts{Waits: noWait})
			if tt.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if d.Firmware() != "2.16" || d.Name() != "ezo-ph-0x63" || d.Quantity() != drivers.PH {
					t.Errorf("Firmware/Name/Quantity = %q %q %q", d.Firmware(), d.Name(), d.Quantity())
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

func TestCalibration(t *testing.T) {
	bus := &i2ctest.Playback{Ops: join(info,
		exchange("Cal,clear", StatusOK, ""),
		exchange("Cal,mid,7.00", StatusOK, ""),
		exchange("Cal,low,4.00", StatusOK, ""),
		exchange("Cal,high,10.00", StatusOK, ""),
		exchange("Cal,?", StatusOK, "?CAL,3"),
		exchange("Cal,high,9.18", StatusSyntax, ""),
		exchange("Cal,?", StatusOK, "?CAL,x"),
	)}
	d, err := New(bus, addr, &Opts{Waits: noWait})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i, step := range []func() error{
		func() error { return d.ClearCalibration(ctx) },
		func() error { return d.CalibrateMid(ctx, 7) },
		func() error { return d.CalibrateLow(ctx, 4) },
		func() error { return d.CalibrateHigh(ctx, 10) },
	} {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if n, err := d.CalibrationPoints(ctx); err != nil || n != 3 {
		t.Fatalf("CalibrationPoints = %d, %v", n, err)
	}
	if err := d.CalibrateHigh(ctx, 9.18); cause(err) != drivers.CauseDeviceError {
		t.Fatalf("CalibrateHigh with a syntax error = %v", err)
	}
	if _, err := d.CalibrationPoints(ctx); cause(err) != drivers.CauseDeviceError {
		t.Fatalf("CalibrationPoints(garbage) = %v", err)
	}
	if err := d.CalibrateLow(ctx, 15); err == nil {
		t.Fatal("CalibrateLow(15) succeeded")
	}
	if err := bus.Close(); err != nil {
		t.Error(err)
	}
}

// TestTemperature: T is sent before R when it moved by 0.1 °C or more, not
// when the temperature fails, and again after a failed read.
func TestTemperature(t *testing.T) {
	temps := []struct {
		c   float64
		err error
	}{
		{21.04, nil},           // T,21.0
		{21.06, nil},           // rounds to 21.1: T,21.1
		{21.12, nil},           // 21.1: nothing
		{0, errors.New("crc")}, // nothing
		{21.1, nil},            // nothing; restored
		{21.1, nil},            // R fails
		{21.1, nil},            // T again after the failure
		{200, nil},             // implausible: nothing
		{-3.25, nil},           // T,-3.3 (half rounds away from zero)
		{-3.2, nil},            // a change of one tenth: T,-3.2
		{-3.3, nil},            // and back: T,-3.3
	}
	bus := &i2ctest.Playback{Ops: join(info,
		exchange("T,21.0", StatusOK, ""), exchange("R", StatusOK, "6.100"),
		exchange("T,21.1", StatusOK, ""), exchange("R", StatusOK, "6.101"),
		exchange("R", StatusOK, "6.102"),
		exchange("R", StatusOK, "6.103"),
		exchange("R", StatusOK, "6.104"),
		exchange("R", StatusNoData, ""),
		exchange("T,21.1", StatusOK, ""), exchange("R", StatusOK, "6.106"),
		exchange("R", StatusOK, "6.107"),
		exchange("T,-3.3", StatusOK, ""), exchange("R", StatusOK, "6.108"),
		exchange("T,-3.2", StatusOK, ""), exchange("R", StatusOK, "6.109"),
		exchange("T,-3.3", StatusOK, ""), exchange("R", StatusOK, "6.110"),
	)}
	var logs bytes.Buffer
	i := 0
	d, err := New(bus, addr, &Opts{
		Waits:       noWait,
		Temperature: func() (float64, error) { return temps[i].c, temps[i].err },
		Logger:      slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	for i = range temps {
		v, err := d.Sense(context.Background())
		if i == 5 {
			if cause(err) != drivers.CauseDeviceError {
				t.Fatalf("step 5: Sense = %v, %v; want device_error", v, err)
			}
			continue
		}
		if want := 6.1 + float64(i)/1000; err != nil || math.Abs(v-want) > 1e-9 {
			t.Fatalf("step %d: Sense = %v, %v; want %v", i, v, err, want)
		}
	}
	if n := strings.Count(logs.String(), "temperature unavailable"); n != 2 {
		t.Errorf("fallback logged %d times, want 2:\n%s", n, logs.String())
	}
	if err := bus.Close(); err != nil {
		t.Error(err)
	}
}

// TestWaits checks that the processing delay is honoured and that a context
// cut it short.
func TestWaits(t *testing.T) {
	bus := &i2ctest.Playback{Ops: join(info, exchange("R", StatusOK, "7.000"), []i2ctest.IO{send("R")}), DontPanic: true}
	d, err := New(bus, addr, &Opts{Waits: &Waits{Read: 30 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := d.Sense(context.Background()); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 30*time.Millisecond {
		t.Errorf("Sense took %v, less than the read delay", el)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if _, err := d.Sense(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Sense with a short deadline = %v", err)
	}
	if err := bus.Close(); err != nil {
		t.Error(err)
	}
}

func TestParseReply(t *testing.T) {
	tests := []struct {
		in      []byte
		want    string
		pending bool
		cause   string
	}{
		{[]byte("\x017.012\x00\x00"), "7.012", false, ""},
		{[]byte("\x01\x00"), "", false, ""},
		{[]byte("\x01?i,pH,2.16\x00junk\xff"), "?i,pH,2.16", false, ""},
		{[]byte{}, "", false, drivers.CauseIO},
		{[]byte{254, 0}, "", true, ""},
		{[]byte{2, 0}, "", false, drivers.CauseDeviceError},
		{[]byte{255, 255, 255}, "", false, drivers.CauseDeviceError},
		{[]byte{0, 0}, "", false, drivers.CauseDeviceError},
		{[]byte("\x017.0\n\x00"), "", false, drivers.CauseDeviceError},
		{[]byte("\x017.012"), "", false, drivers.CauseDeviceError},
	}
	for _, tt := range tests {
		got, err := ParseReply(tt.in)
		if errors.Is(err, errPending) != tt.pending {
			t.Errorf("ParseReply(%q) = %v, pending want %v", tt.in, err, tt.pending)
			continue
		}
		if tt.pending {
			continue
		}
		if c := cause(err); c != tt.cause || got != tt.want {
			t.Errorf("ParseReply(%q) = %q, %v; want %q, cause %q", tt.in, got, err, tt.want, tt.cause)
		}
	}
}

func FuzzParseReply(f *testing.F) {
	f.Add([]byte("\x017.012\x00"))
	f.Add([]byte("\x01?i,pH,2.16\x00"))
	f.Add([]byte("\x01?CAL,2\x00"))
	f.Add([]byte{254, 0})
	f.Add([]byte{255})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseReply(b)
		if err != nil {
			if !errors.Is(err, errPending) && cause(err) == "" {
				t.Fatalf("error is neither pending nor a fault: %v", err)
			}
			return
		}
		if len(b) == 0 || b[0] != StatusOK || len(s) >= len(b) {
			t.Fatalf("accepted %q as %q", b, s)
		}
		for _, c := range []byte(s) {
			if c < 0x20 || c > 0x7e {
				t.Fatalf("text %q has a non-printable byte", s)
			}
		}
		if v, err := ParseReading(s); err == nil && !(v >= 0 && v <= 14) {
			t.Fatalf("ParseReading(%q) = %v", s, v)
		}
		_, _ = ParseInfo(s)
	})
}
