package ezoph

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"periph.io/x/conn/v3/i2c"

	"github.com/outpost-iot/outpost/drivers"
	"github.com/outpost-iot/outpost/drivers/internal/hw"
	"github.com/outpost-iot/outpost/internal/wait"
)

// DefaultAddr is the EZO-pH's factory I²C address (99).
const DefaultAddr uint16 = 0x63

// Status codes, the first byte of every reply.
const (
	StatusOK         = 1
	StatusSyntax     = 2
	StatusProcessing = 254
	StatusNoData     = 255
)

// replyLen is how many bytes a read asks for: status + text + NUL. The
// longest pH reply ("?Slope,99.7,100.3,-0.89") fits; Atlas's own Raspberry Pi
// code reads 31.
const replyLen = 31

// Waits are the processing delays and the retry policy.
type Waits struct {
	Read  time.Duration // after "R"
	Cal   time.Duration // after "Cal,mid|low|high,n"
	Cmd   time.Duration // after "i", "T,n", "Cal,clear", "Cal,?"
	Retry time.Duration // between reads while the chip answers 254
	// Retries is how many more reads follow a 254 before CauseTimeout.
	Retries int
}

// DefaultWaits are the datasheet's delays, with 3 retries 100 ms apart.
var DefaultWaits = Waits{Read: 900 * time.Millisecond, Cal: 900 * time.Millisecond, Cmd: 300 * time.Millisecond, Retry: 100 * time.Millisecond, Retries: 3}

// Opts configures a Dev.
type Opts struct {
	// Name is the sensor's name; default "ezo-ph-0x63".
	Name string
	// Waits overrides DefaultWaits (tests use &Waits{} for no waiting).
	Waits *Waits
	// Temperature returns the solution temperature in °C for compensation;
	// nil leaves compensation to the chip's stored value.
	Temperature func() (float64, error)
	// Logger receives temperature-compensation transitions; nil discards.
	Logger *slog.Logger
}

// DefaultOpts are the recommended options.
var DefaultOpts = Opts{}

// Dev is an EZO-pH circuit.
type Dev struct {
	c     i2c.Dev
	name  string
	w     Waits
	temp  func() (float64, error)
	log   *slog.Logger
	fw    string
	mu    sync.Mutex
	sentT float64 // last temperature the chip accepted; NaN: none
	tFail bool
}

var _ drivers.Sensor = (*Dev)(nil)

// New probes the circuit at addr with "i" and checks that it is an EZO-pH.
// A circuit that does not answer is a wrapped *drivers.Fault; another EZO
// type (EC, DO, ORP…) is a plain error.
func New(bus i2c.Bus, addr uint16, opts *Opts) (*Dev, error) {
	if opts == nil {
		opts = &DefaultOpts
	}
	if addr < 0x01 || addr > 0x7f {
		return nil, fmt.Errorf("ezoph: address %#02x, want 0x01..0x7f", addr)
	}
	d := &Dev{c: i2c.Dev{Bus: bus, Addr: addr}, name: opts.Name, w: DefaultWaits, temp: opts.Temperature, log: opts.Logger, sentT: math.NaN()}
	if opts.Waits != nil {
		d.w = *opts.Waits
	}
	if d.name == "" {
		d.name = fmt.Sprintf("ezo-ph-%#02x", addr)
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	fw, err := d.Info(context.Background())
	if err != nil {
		return nil, err
	}
	d.fw = fw
	return d, nil
}

// Name implements drivers.Sensor.
func (d *Dev) Name() string { return d.name }

// Quantity implements drivers.Sensor.
func (d *Dev) Quantity() drivers.Quantity { return drivers.PH }

// Firmware returns the version the circuit reported at New.
func (d *Dev) Firmware() string { return d.fw }

func (d *Dev) String() string { return fmt.Sprintf("ezo-ph(%#02x)", d.c.Addr) }

// Info sends "i" and returns the firmware version; the reply must be
// "?i,pH,<version>".
func (d *Dev) Info(ctx context.Context) (string, error) {
	r, err := d.Command(ctx, "i", d.w.Cmd)
	if err != nil {
		return "", fmt.Errorf("ezoph: probe %#02x: %w", d.c.Addr, err)
	}
	return ParseInfo(r)
}

// ParseInfo checks an "i" reply ("?i,pH,2.16") and returns the version.
func ParseInfo(r string) (string, error) {
	f := strings.Split(r, ",")
	if len(f) != 3 || !strings.EqualFold(f[0], "?i") {
		return "", fmt.Errorf("ezoph: unexpected info reply %q (not an EZO circuit?)", r)
	}
	if !strings.EqualFold(f[1], "pH") {
		return "", fmt.Errorf("ezoph: the circuit is an EZO-%s, not an EZO-pH", f[1])
	}
	return f[2], nil
}

// Sense sends the temperature if needed, then "R", and returns pH.
func (d *Dev) Sense(ctx context.Context) (float64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var t float64
	var terr error
	if d.temp != nil {
		t, terr = d.temp()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.temp != nil {
		if err := d.compensate(ctx, t, terr); err != nil {
			return 0, err
		}
	}
	r, err := d.command(ctx, "R", d.w.Read)
	if err != nil {
		d.sentT = math.NaN() // the chip may have reset: send T again next time
		return 0, err
	}
	return ParseReading(r)
}

// compensate sends "T,t" when t moved by 0.1 °C or more; d.mu is held.
func (d *Dev) compensate(ctx context.Context, t float64, terr error) error {
	if terr == nil && !(t >= -10 && t <= 130) {
		terr = fmt.Errorf("%g °C is implausible", t)
	}
	if terr != nil {
		if !d.tFail {
			d.log.Warn("EZO-pH temperature unavailable; the chip keeps its last compensation", "sensor", d.name, "err", terr)
			d.tFail = true
		}
		return nil
	}
	if d.tFail {
		d.log.Info("EZO-pH temperature compensation restored", "sensor", d.name, "temp_c", t)
		d.tFail = false
	}
	t = math.Round(t*10) / 10 // the chip takes tenths; equal tenths compare exactly
	if t == d.sentT {
		return nil
	}
	if _, err := d.command(ctx, "T,"+strconv.FormatFloat(t, 'f', 1, 64), d.w.Cmd); err != nil {
		d.sentT = math.NaN()
		return err
	}
	d.sentT = t
	return nil
}

// ParseReading parses an "R" reply ("7.012").
func ParseReading(r string) (float64, error) {
	v, err := strconv.ParseFloat(r, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, drivers.NewFault(drivers.CauseDeviceError, nil, "ezoph: reading %q is not a number", r)
	}
	if v < 0 || v > 14 {
		return 0, drivers.NewFault(drivers.CauseOutOfRange, nil, "ezoph: pH %g outside 0..14", v)
	}
	return v, nil
}

// CalibrateMid calibrates the mid point (normally pH 7.00). The chip clears
// the low and high points when it gets a mid point: do mid first.
func (d *Dev) CalibrateMid(ctx context.Context, ph float64) error {
	return d.calibrate(ctx, "mid", ph)
}

// CalibrateLow calibrates the low point (normally pH 4.00).
func (d *Dev) CalibrateLow(ctx context.Context, ph float64) error {
	return d.calibrate(ctx, "low", ph)
}

// CalibrateHigh calibrates the high point (normally pH 10.00).
func (d *Dev) CalibrateHigh(ctx context.Context, ph float64) error {
	return d.calibrate(ctx, "high", ph)
}

func (d *Dev) calibrate(ctx context.Context, point string, ph float64) error {
	if !(ph > 0 && ph < 14) {
		return fmt.Errorf("ezoph: calibration buffer pH %g outside 0..14", ph)
	}
	_, err := d.Command(ctx, "Cal,"+point+","+strconv.FormatFloat(ph, 'f', 2, 64), d.w.Cal)
	return err
}

// ClearCalibration removes every calibration point.
func (d *Dev) ClearCalibration(ctx context.Context) error {
	_, err := d.Command(ctx, "Cal,clear", d.w.Cmd)
	return err
}

// CalibrationPoints asks how many points the chip is calibrated with (0..3).
func (d *Dev) CalibrationPoints(ctx context.Context) (int, error) {
	r, err := d.Command(ctx, "Cal,?", d.w.Cmd)
	if err != nil {
		return 0, err
	}
	n, ok := strings.CutPrefix(strings.ToUpper(r), "?CAL,")
	v, aerr := strconv.Atoi(n)
	if !ok || aerr != nil || v < 0 || v > 3 {
		return 0, drivers.NewFault(drivers.CauseDeviceError, nil, "ezoph: unexpected reply %q to Cal,?", r)
	}
	return v, nil
}

// SetTemperature sets the compensation temperature in °C ("T,n").
func (d *Dev) SetTemperature(ctx context.Context, c float64) error {
	if !(c >= -10 && c <= 130) {
		return fmt.Errorf("ezoph: temperature %g °C is implausible", c)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	t := math.Round(c*10) / 10
	if _, err := d.command(ctx, "T,"+strconv.FormatFloat(t, 'f', 1, 64), d.w.Cmd); err != nil {
		d.sentT = math.NaN()
		return err
	}
	d.sentT = t
	return nil
}

// Command sends cmd, waits wait, reads the reply (retrying while the chip
// is still processing) and returns its text.
func (d *Dev) Command(ctx context.Context, cmd string, wait time.Duration) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.command(ctx, cmd, wait)
}

var errPending = errors.New("still processing")

func (d *Dev) command(ctx context.Context, cmd string, delay time.Duration) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if err := d.c.Tx([]byte(cmd), nil); err != nil {
		return "", hw.I2CFault(err, "ezoph: send "+cmd)
	}
	if err := wait.Sleep(ctx, delay); err != nil {
		return "", err
	}
	for try := 0; ; try++ {
		var b [replyLen]byte
		if err := d.c.Tx(nil, b[:]); err != nil {
			return "", hw.I2CFault(err, "ezoph: read reply to "+cmd)
		}
		r, err := ParseReply(b[:])
		if !errors.Is(err, errPending) {
			if err != nil {
				return "", fmt.Errorf("ezoph: %s: %w", cmd, err)
			}
			return r, nil
		}
		if try >= d.w.Retries {
			return "", drivers.NewFault(drivers.CauseTimeout, nil, "ezoph: %s: still processing after %d reads", cmd, try+1)
		}
		if err := wait.Sleep(ctx, d.w.Retry); err != nil {
			return "", err
		}
	}
}

// ParseReply decodes a raw reply: status byte, then ASCII up to the first
// NUL. It returns the text for status 1, an error wrapping errPending for
// 254, and a *drivers.Fault otherwise.
func ParseReply(b []byte) (string, error) {
	if len(b) == 0 {
		return "", drivers.NewFault(drivers.CauseIO, nil, "empty reply")
	}
	switch b[0] {
	case StatusOK:
	case StatusSyntax:
		return "", drivers.NewFault(drivers.CauseDeviceError, nil, "syntax error (status 2)")
	case StatusProcessing:
		return "", errPending
	case StatusNoData:
		return "", drivers.NewFault(drivers.CauseDeviceError, nil, "no data (status 255)")
	default:
		return "", drivers.NewFault(drivers.CauseDeviceError, nil, "unknown status %d", b[0])
	}
	text := b[1:]
	end := -1
	for i, c := range text {
		if c == 0 {
			end = i
			break
		}
		if c < 0x20 || c > 0x7e {
			return "", drivers.NewFault(drivers.CauseDeviceError, nil, "garbled reply: byte %#02x at %d", c, i+1)
		}
	}
	if end < 0 {
		return "", drivers.NewFault(drivers.CauseDeviceError, nil, "reply has no NUL terminator")
	}
	return string(text[:end]), nil
}
