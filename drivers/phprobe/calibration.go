package phprobe

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"sort"

	"github.com/outpost-iot/outpost/internal/fsx"
)

// Standard buffers.
const (
	BufferLow  = 4.00
	BufferMid  = 7.00
	BufferHigh = 10.00
)

// Electrode physics and sanity limits.
const (
	// NernstSlope25 is the theoretical electrode slope at 25 °C, V per pH.
	NernstSlope25 = 0.05916
	// RefTempC is the reference temperature of stored slopes.
	RefTempC = 25.0
	// MinSlopePct and MaxSlopePct bound a healthy probe's slope, in percent
	// of theoretical. Below 80 % a probe is worn or dirty.
	MinSlopePct = 80.0
	MaxSlopePct = 105.0
	// MaxOffset bounds the electrode potential at pH 7, in volts (≈ 1 pH).
	// It includes the front end's bias error, so it is loose on purpose:
	// it catches a wrong buffer, gain or zero, not a slightly aged probe.
	MaxOffset = 0.060
	// MinBufferGap is the smallest pH difference between two points.
	MinBufferGap = 1.0
)

const zeroK = 273.15

// NernstSlope returns the theoretical electrode slope at tempC, in volts per
// pH: 59.16 mV at 25 °C, proportional to absolute temperature.
func NernstSlope(tempC float64) float64 {
	return NernstSlope25 * (tempC + zeroK) / (RefTempC + zeroK)
}

// tempFactor scales a 25 °C slope to tempC.
func tempFactor(tempC float64) float64 { return (tempC + zeroK) / (RefTempC + zeroK) }

// FrontEnd describes the analog board between the electrode and the ADC:
// Vout = ZeroV + Gain × E, where E is the electrode potential (positive in
// acid). DFRobot's Gravity pH V2 is {ZeroV: 1.5, Gain: 3}; a board whose
// output falls as the electrode potential rises has a negative Gain.
type FrontEnd struct {
	ZeroV float64 `json:"zero_v"` // output for 0 mV at the electrode, V
	Gain  float64 `json:"gain"`   // V out per V of electrode potential
}

// Front ends of common boards.
var (
	DFRobotV2 = FrontEnd{ZeroV: 1.5, Gain: 3}
)

// Point is one calibration point: the ADC voltage measured with the probe
// in a buffer of pH PH at TempC.
type Point struct {
	PH      float64 `json:"ph"`
	Voltage float64 `json:"voltage"`
	TempC   float64 `json:"temp_c"`
}

// Calibration maps a front-end voltage to pH. It is serialisable as JSON.
//
// The electrode is modelled as E = E0 − S(T)·(pH − 7) with S(T) proportional
// to absolute temperature (Nernst) and E0 independent of it. One point gives
// E0 with the theoretical slope; two give a line; three (low, mid, high) give
// one slope for the acid side and one for the base side, joined at the mid
// point, the way Atlas Scientific and DFRobot meters do it. Slopes are kept
// at 25 °C, so points taken at different temperatures combine correctly.
type Calibration struct {
	FrontEnd
	Points []Point `json:"points"`
}

// line is one segment of the model: E0 (V at pH 7) and the 25 °C slope (V/pH).
type line struct{ e0, s25 float64 }

func (l line) pH(e, tempC float64) float64 { return 7 - (e-l.e0)/(l.s25*tempFactor(tempC)) }

func (l line) e(ph, tempC float64) float64 { return l.e0 - l.s25*tempFactor(tempC)*(ph-7) }

// fit builds the line through two electrode points.
func fit(a, b Point, ea, eb float64) line {
	xa, xb := tempFactor(a.TempC)*(a.PH-7), tempFactor(b.TempC)*(b.PH-7)
	s := -(ea - eb) / (xa - xb)
	return line{e0: ea + s*xa, s25: s}
}

// model is the fitted calibration: one line, or acid and base lines split at
// splitPH.
type model struct {
	acid, base line
	splitPH    float64
}

func (c *Calibration) electrode(v float64) float64 { return (v - c.ZeroV) / c.Gain }

// model fits the points, which must be checked already.
func (c *Calibration) model() model {
	p := c.sorted()
	switch len(p) {
	case 1:
		e := c.electrode(p[0].Voltage)
		l := line{s25: NernstSlope25}
		l.e0 = e + l.s25*tempFactor(p[0].TempC)*(p[0].PH-7)
		return model{acid: l, base: l, splitPH: 7}
	case 2:
		l := fit(p[0], p[1], c.electrode(p[0].Voltage), c.electrode(p[1].Voltage))
		return model{acid: l, base: l, splitPH: 7}
	default:
		e0, e1, e2 := c.electrode(p[0].Voltage), c.electrode(p[1].Voltage), c.electrode(p[2].Voltage)
		return model{acid: fit(p[0], p[1], e0, e1), base: fit(p[1], p[2], e1, e2), splitPH: p[1].PH}
	}
}

func (m model) pH(e, tempC float64) float64 {
	if ph := m.acid.pH(e, tempC); ph <= m.splitPH {
		return ph
	}
	return m.base.pH(e, tempC)
}

func (c *Calibration) sorted() []Point {
	p := append([]Point(nil), c.Points...)
	sort.Slice(p, func(i, j int) bool { return p[i].PH < p[j].PH })
	return p
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func checkPoint(p Point) error {
	switch {
	case !finite(p.PH) || p.PH < 1 || p.PH > 13:
		return fmt.Errorf("buffer pH %g outside 1..13", p.PH)
	case !finite(p.Voltage):
		return fmt.Errorf("voltage %g is not a number", p.Voltage)
	case !finite(p.TempC) || p.TempC < 0 || p.TempC > 60:
		return fmt.Errorf("buffer temperature %g °C outside 0..60", p.TempC)
	}
	return nil
}

// Validate checks the calibration and returns every problem: the front end,
// 1 to 3 points at least MinBufferGap pH apart, each fitted slope within
// MinSlopePct..MaxSlopePct of theoretical and each offset within MaxOffset.
func (c *Calibration) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("phprobe: calibration: "+format, args...))
	}
	if !finite(c.Gain) || c.Gain == 0 {
		bad("front-end gain %g must be a non-zero number", c.Gain)
	}
	if !finite(c.ZeroV) {
		bad("front-end zero_v %g is not a number", c.ZeroV)
	}
	switch n := len(c.Points); {
	case n == 0:
		bad("no points (calibrate in pH %.2f first)", BufferMid)
	case n > 3:
		bad("%d points, at most 3", n)
	}
	for i, p := range c.Points {
		if err := checkPoint(p); err != nil {
			bad("points[%d]: %v", i, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	p := c.sorted()
	for i := 1; i < len(p); i++ {
		if p[i].PH-p[i-1].PH < MinBufferGap {
			bad("buffers pH %g and %g are closer than %g", p[i-1].PH, p[i].PH, MinBufferGap)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	m := c.model()
	check := func(side string, l line) {
		pct := 100 * l.s25 / NernstSlope25
		switch {
		case pct <= 0:
			bad("%sslope %.1f mV/pH has the wrong sign (check the front end's gain sign and which buffer is which)", side, 1000*l.s25)
		case pct < MinSlopePct || pct > MaxSlopePct:
			bad("%sslope %.1f %% of theoretical, want %g..%g %% (worn or dirty probe, or a wrong buffer)", side, pct, MinSlopePct, MaxSlopePct)
		}
		if math.Abs(l.e0) > MaxOffset {
			bad("%soffset %+.1f mV at pH 7, want within ±%.0f mV (wrong buffer, or wrong zero_v/gain)", side, 1000*l.e0, 1000*MaxOffset)
		}
	}
	if len(p) == 3 {
		check("acid ", m.acid)
		check("base ", m.base)
	} else {
		check("", m.acid)
	}
	return errors.Join(errs...)
}

// AddPoint records the voltage measured in a buffer of pH buffer at tempC.
// A point for the same buffer (within 0.5 pH) is replaced; a fourth buffer
// is refused. It checks the point itself; call Validate for the whole.
func (c *Calibration) AddPoint(buffer, voltage, tempC float64) error {
	p := Point{PH: buffer, Voltage: voltage, TempC: tempC}
	if err := checkPoint(p); err != nil {
		return fmt.Errorf("phprobe: calibration point: %w", err)
	}
	for i := range c.Points {
		if math.Abs(c.Points[i].PH-buffer) < 0.5 {
			c.Points[i] = p
			return nil
		}
	}
	if len(c.Points) >= 3 {
		return fmt.Errorf("phprobe: calibration already has 3 points; Reset it to start over")
	}
	c.Points = append(c.Points, p)
	c.Points = c.sorted()
	return nil
}

// Reset removes every point, keeping the front end.
func (c *Calibration) Reset() { c.Points = nil }

// PH converts a front-end voltage measured at tempC to pH. The calibration
// must be valid.
func (c *Calibration) PH(voltage, tempC float64) (float64, error) {
	if err := c.Validate(); err != nil {
		return 0, err
	}
	return c.model().pH(c.electrode(voltage), tempC), nil
}

// Voltage is the inverse of PH: the front-end voltage a probe following
// this calibration gives in a solution of pH ph at tempC.
func (c *Calibration) Voltage(ph, tempC float64) (float64, error) {
	if err := c.Validate(); err != nil {
		return 0, err
	}
	m := c.model()
	l := m.base
	if ph <= m.splitPH {
		l = m.acid
	}
	return c.ZeroV + c.Gain*l.e(ph, tempC), nil
}

// Slopes reports the probe's health the way meters show it: acid and base
// slopes in percent of theoretical (equal unless 3 points) and the offset at
// pH 7 in millivolts (of the acid line).
func (c *Calibration) Slopes() (acidPct, basePct, offsetMV float64, err error) {
	if err := c.Validate(); err != nil {
		return 0, 0, 0, err
	}
	m := c.model()
	return 100 * m.acid.s25 / NernstSlope25, 100 * m.base.s25 / NernstSlope25, 1000 * m.acid.e0, nil
}

// LoadCalibration reads a JSON calibration file and validates it. Unknown
// fields are an error.
func LoadCalibration(path string) (Calibration, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Calibration{}, fmt.Errorf("phprobe: load calibration: %w", err)
	}
	c, err := ParseCalibration(b)
	if err != nil {
		return Calibration{}, fmt.Errorf("%w (in %s)", err, path)
	}
	return c, nil
}

// ParseCalibration decodes a JSON calibration and validates it.
func ParseCalibration(b []byte) (Calibration, error) {
	var c Calibration
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Calibration{}, fmt.Errorf("phprobe: decode calibration: %w", err)
	}
	if err := c.Validate(); err != nil {
		return Calibration{}, err
	}
	return c, nil
}

// Save validates c and writes it to path as JSON, atomically (temporary file,
// sync, rename), so a power cut leaves the old or the new file.
func (c *Calibration) Save(path string) error {
	if err := c.Validate(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("phprobe: save calibration: %w", err)
	}
	if err := fsx.WriteFileAtomic(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("phprobe: save calibration: %w", err)
	}
	return nil
}
