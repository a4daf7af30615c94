package catalog

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/onewire"
	"periph.io/x/conn/v3/onewire/onewiretest"
	"periph.io/x/conn/v3/physic"

	"github.com/outpost-iot/outpost/drivers"
	"github.com/outpost-iot/outpost/drivers/ezoph"
	"github.com/outpost-iot/outpost/drivers/phprobe"
)

// Recorded traffic, per chip (see each driver's tests for the derivation).

func tmp102Init(a uint16) []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: a, W: []byte{0x01}, R: []byte{0x60, 0xa0}},
		{Addr: a, W: []byte{0x01}, R: []byte{0x60, 0xa0}},
		{Addr: a, W: []byte{0x01, 0x60, 0xa0}},
	}
}

func tmp102Read(a uint16, c float64) i2ctest.IO {
	n := int16(c * 16)
	return i2ctest.IO{Addr: a, W: []byte{0x00}, R: []byte{byte(uint16(n) >> 4), byte(uint16(n) << 4)}}
}

var (
	bmeCalib  = []byte{0x10, 0x6e, 0x6c, 0x66, 0x32, 0x0, 0x5d, 0x95, 0xb8, 0xd5, 0xd0, 0xb, 0x77, 0x1e, 0x9d, 0xff, 0xf9, 0xff, 0xac, 0x26, 0xa, 0xd8, 0xbd, 0x10, 0x0, 0x4b}
	bmeCalibH = []byte{0x6e, 0x1, 0x0, 0x13, 0x5, 0x0, 0x1e}
	bmeSample = []byte{0x4a, 0x52, 0xc0, 0x80, 0x96, 0xc0, 0x7a, 0x76} // 23.72 °C, 65.3056 %RH, 1009.43 hPa
)

func bmeInit(a uint16) []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: a, W: []byte{0xd0}, R: []byte{0x60}},
		{Addr: a, W: []byte{0x88}, R: bmeCalib},
		{Addr: a, W: []byte{0xe1}, R: bmeCalibH},
		{Addr: a, W: []byte{0xf4, 0x24, 0xf2, 0x01, 0xf5, 0xa0, 0xf4, 0x24}},
	}
}

func bmeMeasure(a uint16) []i2ctest.IO {
	return []i2ctest.IO{
		{Addr: a, W: []byte{0xf4, 0x25}},
		{Addr: a, W: []byte{0xf3}, R: []byte{0x00}},
		{Addr: a, W: []byte{0xf7}, R: bmeSample},
	}
}

func adsProbe(a uint16) i2ctest.IO {
	return i2ctest.IO{Addr: a, W: []byte{0x03}, R: []byte{0x7f, 0xff}}
}

// adsRead is a single-shot conversion on A0 at 860 SPS, ±4.096 V.
func adsRead(a uint16, v float64) []i2ctest.IO {
	r := int16(math.Round(v * 8000))
	return []i2ctest.IO{
		{Addr: a, W: []byte{0x01, 0xc3, 0xe3}},
		{Addr: a, W: []byte{0x00}, R: []byte{byte(uint16(r) >> 8), byte(r)}},
	}
}

func ezo(cmd string, text string) []i2ctest.IO {
	r := make([]byte, 31)
	r[0] = 1
	copy(r[1:], text)
	return []i2ctest.IO{{Addr: 0x63, W: []byte(cmd)}, {Addr: 0x63, R: r}}
}

const rom onewire.Address = 0x740000070e41ac28 // "28-0000070e41ac"

func owMatch(cmd byte) []byte {
	w := make([]byte, 9, 10)
	w[0] = 0x55
	binary.LittleEndian.PutUint64(w[1:], uint64(rom))
	return append(w, cmd)
}

// owSpad reads a 9-bit scratchpad with temperature c; crc false corrupts it.
func owSpad(c float64, crc bool) onewiretest.IO {
	n := int16(c * 16)
	b := []byte{byte(n), byte(uint16(n) >> 8), 0x4b, 0x46, 0x1f, 0xff, 0x0c, 0x10, 0}
	b[8] = onewire.CalcCRC(b[:8])
	if !crc {
		b[8] ^= 0xff
	}
	return onewiretest.IO{W: owMatch(0xbe), R: b}
}

var owConvert = onewiretest.IO{W: owMatch(0x44), Pull: onewire.StrongPullup}

// The pH probe of the tests: DFRobot front end, +5 mV offset, 96 % slope.
func phVolts(ph float64) float64 {
	return 1.5 + 3*(0.005-0.96*phprobe.NernstSlope(25)*(ph-7))
}

func writeCalibration(t *testing.T) string {
	t.Helper()
	c := phprobe.Calibration{FrontEnd: phprobe.DFRobotV2}
	for _, b := range []float64{4, 7} {
		if err := c.AddPoint(b, phVolts(b), 25); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "ph.json")
	if err := c.Save(path); err != nil {
		t.Fatal(err)
	}
	return path
}

func w1Root(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "28-0316a2797aff")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	body := "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
	if err := os.WriteFile(filepath.Join(dir, "w1_slave"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// fast shortens the drivers' waits for tests.
func fast(_ Spec, opts any) {
	switch o := opts.(type) {
	case *ezoph.Opts:
		o.Waits = &ezoph.Waits{}
	case *phprobe.Opts:
		o.DataRate = 860 * physic.Hertz
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

func TestOpen(t *testing.T) {
	cal := writeCalibration(t)
	specs := decode(t, fmt.Sprintf(`
- {name: water, type: tmp102}
- {name: ph, type: ads1115-ph, addr: 0x49, calibration: %q, temp_sensor: water}
- {name: air, type: bme280}
- {name: air-hum, type: bme280, quantity: humidity}
- {name: sump, type: ezo-ph, temp_sensor: water}
- {name: pipe, type: ds2482-ds18b20, rom: 28-0000070e41ac, resolution: 9}
- {name: tank, type: w1-ds18b20, rom: 28-0316a2797aff}
- {name: demo, type: sim, sim: {preset: demo-temperature, seed: 1}}
`, cal))
	bus := &i2ctest.Playback{Ops: join(
		// Open, in order.
		tmp102Init(0x48),
		[]i2ctest.IO{adsProbe(0x49)},
		bmeInit(0x76),
		bmeInit(0x76),
		ezo("i", "?i,pH,2.16"),
		// Sense, in order.
		[]i2ctest.IO{tmp102Read(0x48, 21.5)},
		[]i2ctest.IO{tmp102Read(0x48, 25)}, adsRead(0x49, phVolts(6.5)),
		bmeMeasure(0x76),
		bmeMeasure(0x76),
		[]i2ctest.IO{tmp102Read(0x48, 18)}, ezo("T,18.0", ""), ezo("R", "6.800"),
	)}
	ow := &onewiretest.Playback{Ops: []onewiretest.IO{owSpad(0, true), owConvert, owSpad(19.5, true)}}
	var bridges []string
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	env := Env{
		I2C: func(name string) (i2c.Bus, error) {
			if name != "1" {
				return nil, fmt.Errorf("no bus %s", name)
			}
			return bus, nil
		},
		OneWire: func(b string, a uint16) (onewire.Bus, error) {
			bridges = append(bridges, fmt.Sprintf("%s/%#x", b, a))
			return ow, nil
		},
		W1Root: w1Root(t),
		Clock:  func() time.Time { return now },
		Tune:   fast,
	}
	sensors, err := Open(specs, env)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name string
		q    drivers.Quantity
		v    float64
		tol  float64
	}{
		{"water", drivers.Temperature, 21.5, 0},
		{"ph", drivers.PH, 6.5, 0.005},
		{"air", drivers.Temperature, 23.72, 1e-9},
		{"air-hum", drivers.Humidity, 65.3056, 1e-9},
		{"sump", drivers.PH, 6.8, 0},
		{"pipe", drivers.Temperature, 19.5, 0},
		{"tank", drivers.Temperature, 23.125, 0},
		{"demo", drivers.Temperature, 14, 0.3},
	}
	if len(sensors) != len(want) {
		t.Fatalf("%d sensors, want %d", len(sensors), len(want))
	}
	ctx := context.Background()
	for i, w := range want {
		s := sensors[i]
		if s.Name() != w.name || s.Quantity() != w.q {
			t.Errorf("sensor %d: %q %q, want %q %q", i, s.Name(), s.Quantity(), w.name, w.q)
		}
		v, err := s.Sense(ctx)
		if err != nil || math.Abs(v-w.v) > w.tol {
			t.Errorf("%s: Sense = %v, %v; want %v", w.name, v, err, w.v)
		}
	}
	if err := bus.Close(); err != nil {
		t.Error(err)
	}
	if err := ow.Close(); err != nil {
		t.Error(err)
	}
	if len(bridges) != 1 || bridges[0] != "1/0x18" {
		t.Errorf("bridges opened: %v", bridges)
	}
}

// TestOpenLate: a chip that is missing at Open is a fault until it appears;
// after an I/O fault the chip is probed and configured again.
func TestOpenLate(t *testing.T) {
	bus := &i2ctest.Playback{DontPanic: true}
	var logs bytes.Buffer
	env := Env{
		I2C:    func(string) (i2c.Bus, error) { return bus, nil },
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	}
	sensors, err := Open([]Spec{{Name: "water", Type: TMP102}}, env)
	if err != nil {
		t.Fatal(err)
	}
	s := sensors[0]
	ctx := context.Background()
	for range 2 {
		if _, err := s.Sense(ctx); cause(err) != drivers.CauseIO {
			t.Fatalf("Sense with no chip = %v, want an io fault", err)
		}
	}
	// Plugged in.
	bus.Ops = join(tmp102Init(0x48), []i2ctest.IO{tmp102Read(0x48, 20)})
	if v, err := s.Sense(ctx); err != nil || v != 20 {
		t.Fatalf("Sense after plugging in = %v, %v", v, err)
	}
	// A bus error, then the chip is back (after a brown-out: configure again).
	if _, err := s.Sense(ctx); cause(err) != drivers.CauseIO {
		t.Fatalf("Sense on a bus error = %v", err)
	}
	bus.Ops = append(bus.Ops, join(tmp102Init(0x48), []i2ctest.IO{tmp102Read(0x48, 20.5)})...)
	if v, err := s.Sense(ctx); err != nil || v != 20.5 {
		t.Fatalf("Sense after the error = %v, %v", v, err)
	}
	if err := bus.Close(); err != nil {
		t.Error(err)
	}
	l := logs.String()
	if strings.Count(l, "not available") != 1 || strings.Count(l, "available again") != 1 {
		t.Errorf("logs:\n%s", l)
	}
}

// TestOpenBridge: an error from the DS2482 itself (not from the 1-Wire bus)
// makes the next Sense open a new bridge; a 1-Wire CRC error or a power-on
// value does not, and the probe is not reopened for them either.
func TestOpenBridge(t *testing.T) {
	buses := []*onewiretest.Playback{
		{Ops: []onewiretest.IO{owSpad(0, true)}, DontPanic: true}, // then fails
		{Ops: []onewiretest.IO{owSpad(0, true), owConvert, owSpad(21, false), owConvert, owSpad(85, true), owConvert, owSpad(21, true)}},
	}
	n := 0
	env := Env{
		OneWire: func(string, uint16) (onewire.Bus, error) {
			n++
			return buses[n-1], nil
		},
	}
	sensors, err := Open([]Spec{{Name: "pipe", Type: DS2482DS18B20, ROM: "28-0000070e41ac", Resolution: 9}}, env)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	steps := []struct {
		v       float64
		cause   string
		bridges int
	}{
		{0, drivers.CauseIO, 1},
		{0, drivers.CauseCRC, 2},
		{0, drivers.CausePowerOn, 2},
		{21, "", 2},
	}
	for i, st := range steps {
		v, err := sensors[0].Sense(ctx)
		if cause(err) != st.cause || v != st.v || n != st.bridges {
			t.Fatalf("step %d: Sense = %v, %v with %d bridges; want %v, %q with %d", i, v, err, n, st.v, st.cause, st.bridges)
		}
	}
	if err := buses[1].Close(); err != nil {
		t.Error(err)
	}
}

func TestOpenTempSource(t *testing.T) {
	bus := &i2ctest.Playback{Ops: join(ezo("i", "?i,pH,2.16"), tmp102Init(0x48), ezo("T,40.0", ""), ezo("R", "7.100"))}
	var asked string
	env := Env{
		I2C:  func(string) (i2c.Bus, error) { return bus, nil },
		Tune: fast,
		TempSource: func(s drivers.Sensor) func() (float64, error) {
			asked = s.Name()
			return func() (float64, error) { return 40, nil }
		},
	}
	sensors, err := Open([]Spec{{Name: "ph", Type: EZOPH, TempSensor: "water"}, {Name: "water", Type: TMP102}}, env)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sensors[0].Sense(context.Background()); err != nil {
		t.Fatal(err)
	}
	if asked != "water" {
		t.Errorf("TempSource asked for %q", asked)
	}
	if err := bus.Close(); err != nil {
		t.Error(err)
	}
}

func TestOpenShared(t *testing.T) {
	sensors, err := Open(decode(t, `
- {name: a, type: ads1115-ph, quantity: voltage, input: 0}
- {name: b, type: ads1115-ph, quantity: voltage, input: 1}
- {name: c, type: tmp102, addr: 0x49}
- {name: d, type: sim}
`), Env{I2C: func(string) (i2c.Bus, error) { return &i2ctest.Playback{DontPanic: true}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	m := func(i int) *managed { return sensors[i].(*managed) }
	if m(0).lock == nil || m(0).lock != m(1).lock {
		t.Error("two inputs of one ADS1115 do not share a lock")
	}
	if m(2).lock == m(0).lock {
		t.Error("chips at different addresses share a lock")
	}
	if m(3).lock != nil {
		t.Error("a sim sensor has a chip lock")
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"zero_v":1.5,"gain":3,"points":[{"ph":7,"voltage":2.5,"temp_c":25}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	specs := []Spec{
		{Name: "a", Type: ADS1115PH, Calibration: filepath.Join(dir, "missing.json")},
		{Name: "b", Type: ADS1115PH, Addr: 0x49, Calibration: bad},
		{Name: "c", Type: TMP102, Addr: 0x90},
	}
	err := Check(specs)
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != 3 {
		t.Fatalf("Check = %v", err)
	}
	for i, w := range []string{"sensors[2].addr: 0x90", "sensors[0].calibration: phprobe: load calibration: open", "sensors[1].calibration: phprobe: calibration: offset"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("problem %d: no %q in\n%v", i, w, err)
		}
	}
	if _, err := Open(specs, Env{}); !errors.As(err, &ps) {
		t.Errorf("Open = %v, want the same Problems", err)
	}
	if _, err := Open([]Spec{{Name: "t", Type: TMP102}}, Env{}); err == nil || !strings.Contains(err.Error(), "sensors[0].type: tmp102 needs an I²C bus") {
		t.Errorf("Open without I2C = %v", err)
	}
}

func join[T any](ops ...[]T) []T {
	var all []T
	for _, o := range ops {
		all = append(all, o...)
	}
	return all
}

// TestOpenConcurrent reads sim sensors from several goroutines (run with -race).
func TestOpenConcurrent(t *testing.T) {
	sensors, err := Open(decode(t, `
- {name: t, type: sim, sim: {preset: demo-temperature, dropout_prob: 0.1}}
- {name: p, type: sim, quantity: ph, sim: {stuck_prob: 0.2, stuck_for: 1s}}
`), Env{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if _, err := sensors[g%2].Sense(context.Background()); err != nil && cause(err) != drivers.CauseMissing {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
}

// TestOpenSimDropouts: a sim's dropouts do not restart its script.
func TestOpenSimDropouts(t *testing.T) {
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	start := now
	sensors, err := Open(decode(t, `[{name: t, type: sim, sim: {preset: demo-temperature, dropout_prob: 0.3}}]`),
		Env{Clock: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	drops, cold, warm := 0, 0, 0
	for s := 0; s <= 60; s++ {
		now = start.Add(time.Duration(s) * time.Second)
		v, err := sensors[0].Sense(context.Background())
		if err != nil {
			drops++
			continue
		}
		if c := s >= 10 && s < 35; c != (v < 10) {
			t.Fatalf("at %d s: %.2f °C", s, v)
		} else if c {
			cold++
		} else {
			warm++
		}
	}
	if drops < 5 || cold < 10 || warm < 10 {
		t.Fatalf("%d dropouts, %d cold and %d warm readings", drops, cold, warm)
	}
}
