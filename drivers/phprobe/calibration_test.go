package phprobe

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// probe simulates an electrode behind a front end: offset e0 (V at pH 7) and
// acid/base slopes in percent of Nernst, at temperature tempC.
type probe struct {
	fe               FrontEnd
	e0               float64
	acidPct, basePct float64
}

func (p probe) volts(ph, tempC float64) float64 {
	pct := p.acidPct
	if ph > 7 {
		pct = p.basePct
	}
	e := p.e0 - pct/100*NernstSlope(tempC)*(ph-7)
	return p.fe.ZeroV + p.fe.Gain*e
}

func (p probe) point(ph, tempC float64) Point {
	return Point{PH: ph, Voltage: p.volts(ph, tempC), TempC: tempC}
}

func TestNernstSlope(t *testing.T) {
	for _, tt := range []struct{ c, want float64 }{
		{25, 0.05916},
		{0, 0.054199},
		{37, 0.061541},
		{100, 0.074042},
	} {
		if got := NernstSlope(tt.c); math.Abs(got-tt.want) > 1e-6 {
			t.Errorf("NernstSlope(%g) = %.6f, want %.6f", tt.c, got, tt.want)
		}
	}
}

func TestPH(t *testing.T) {
	ideal := probe{fe: DFRobotV2, acidPct: 100, basePct: 100}
	aged := probe{fe: DFRobotV2, e0: 0.012, acidPct: 95, basePct: 95}
	asym := probe{fe: DFRobotV2, e0: -0.008, acidPct: 97, basePct: 90}
	inverted := probe{fe: FrontEnd{ZeroV: 2.5, Gain: -3}, e0: 0.005, acidPct: 98, basePct: 98}
	tests := []struct {
		name   string
		p      probe
		points []Point
		ph, t  float64 // the solution
		tol    float64
	}{
		{"ideal, 1 point", ideal, []Point{ideal.point(7, 25)}, 5.5, 25, 1e-9},
		{"offset, 1 point at 7", aged, []Point{aged.point(7, 25)}, 7, 25, 1e-9},
		{"offset+slope, 1 point: slope error remains", aged, []Point{aged.point(7, 25)}, 4, 25, 0.2},
		{"1 point at pH 4", probe{fe: DFRobotV2, e0: 0.01, acidPct: 100, basePct: 100}, []Point{{PH: 4, Voltage: probe{fe: DFRobotV2, e0: 0.01, acidPct: 100, basePct: 100}.volts(4, 25), TempC: 25}}, 8.2, 25, 1e-9},
		{"2 points 4/7", aged, []Point{aged.point(4, 25), aged.point(7, 25)}, 5.5, 25, 1e-9},
		{"2 points 7/10, reading acid", aged, []Point{aged.point(7, 25), aged.point(10, 25)}, 3, 25, 1e-9},
		{"2 points at different temperatures", aged, []Point{aged.point(4, 18), aged.point(7, 31)}, 6, 22, 1e-9},
		{"2 points, compensated at 40 °C", aged, []Point{aged.point(4, 25), aged.point(7, 25)}, 4.5, 40, 1e-9},
		{"3 points, acid side", asym, []Point{asym.point(4, 25), asym.point(7, 25), asym.point(10, 25)}, 5.2, 25, 1e-9},
		{"3 points, base side", asym, []Point{asym.point(10, 25), asym.point(4, 25), asym.point(7, 25)}, 9.1, 25, 1e-9},
		{"3 points, base side at 10 °C", asym, []Point{asym.point(4, 25), asym.point(7, 25), asym.point(10, 25)}, 8.5, 10, 1e-9},
		{"inverting front end", inverted, []Point{inverted.point(4, 25), inverted.point(7, 25)}, 5.6, 25, 1e-9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Calibration{FrontEnd: tt.p.fe, Points: tt.points}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			v := tt.p.volts(tt.ph, tt.t)
			got, err := c.PH(v, tt.t)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(got-tt.ph) > tt.tol {
				t.Fatalf("PH(%.4f V, %g °C) = %.4f, want %.4f ± %g", v, tt.t, got, tt.ph, tt.tol)
			}
			back, err := c.Voltage(got, tt.t)
			if err != nil || math.Abs(back-v) > 1e-9 {
				t.Fatalf("Voltage(%.4f) = %.6f, %v; want %.6f", got, back, err, v)
			}
		})
	}
}

// TestCompensationMatters checks that the temperature actually changes the
// result the way Nernst says, so compensation cannot silently be a no-op.
func TestCompensationMatters(t *testing.T) {
	p := probe{fe: DFRobotV2, acidPct: 100, basePct: 100}
	c := Calibration{FrontEnd: DFRobotV2, Points: []Point{p.point(4, 25), p.point(7, 25)}}
	v := p.volts(4, 50) // pH 4 at 50 °C
	at50, _ := c.PH(v, 50)
	at25, _ := c.PH(v, 25)
	if math.Abs(at50-4) > 1e-9 {
		t.Errorf("compensated pH = %.4f, want 4", at50)
	}
	// Uncompensated: 7 − 3 × 323.15/298.15 = 3.748.
	if math.Abs(at25-3.7485) > 1e-3 {
		t.Errorf("uncompensated pH = %.4f, want 3.7485", at25)
	}
}

func TestSlopes(t *testing.T) {
	p := probe{fe: DFRobotV2, e0: -0.008, acidPct: 97, basePct: 90}
	c := Calibration{FrontEnd: DFRobotV2, Points: []Point{p.point(4, 20), p.point(7, 20), p.point(10, 20)}}
	acid, base, off, err := c.Slopes()
	if err != nil || math.Abs(acid-97) > 1e-9 || math.Abs(base-90) > 1e-9 || math.Abs(off+8) > 1e-9 {
		t.Fatalf("Slopes = %.3f %.3f %.3f %v; want 97 90 -8", acid, base, off, err)
	}
}

func TestValidate(t *testing.T) {
	good := probe{fe: DFRobotV2, e0: 0.01, acidPct: 95, basePct: 95}
	tests := []struct {
		name string
		c    Calibration
		want []string // substrings, all must appear; none → valid
	}{
		{"1 point", Calibration{FrontEnd: DFRobotV2, Points: []Point{good.point(7, 25)}}, nil},
		{"3 points", Calibration{FrontEnd: DFRobotV2, Points: []Point{good.point(4, 25), good.point(7, 25), good.point(10, 25)}}, nil},
		{"80 % is fine", Calibration{FrontEnd: DFRobotV2, Points: []Point{probe{fe: DFRobotV2, e0: 0.01, acidPct: 80.01}.point(4, 25), good.point(7, 25)}}, nil},
		{"no points", Calibration{FrontEnd: DFRobotV2}, []string{"no points"}},
		{"no gain", Calibration{Points: []Point{good.point(7, 25)}}, []string{"gain 0"}},
		{"NaN zero", Calibration{FrontEnd: FrontEnd{ZeroV: math.NaN(), Gain: 1}, Points: []Point{good.point(7, 25)}}, []string{"zero_v NaN"}},
		{"4 points", Calibration{FrontEnd: DFRobotV2, Points: []Point{good.point(2, 25), good.point(4, 25), good.point(7, 25), good.point(10, 25)}}, []string{"4 points"}},
		{"every point problem", Calibration{FrontEnd: DFRobotV2, Points: []Point{{PH: 0.5, Voltage: 1, TempC: 25}, {PH: 7, Voltage: math.Inf(1), TempC: 25}, {PH: 10, Voltage: 1, TempC: 80}}},
			[]string{"points[0]: buffer pH 0.5", "points[1]: voltage +Inf", "points[2]: buffer temperature 80"}},
		{"buffers too close", Calibration{FrontEnd: DFRobotV2, Points: []Point{good.point(7, 25), good.point(7.5, 25)}}, []string{"closer than 1"}},
		{"weak slope", Calibration{FrontEnd: DFRobotV2, Points: []Point{probe{fe: DFRobotV2, e0: 0.01, acidPct: 75}.point(4, 25), good.point(7, 25)}}, []string{"slope 75.0 % of theoretical"}},
		{"steep slope", Calibration{FrontEnd: DFRobotV2, Points: []Point{probe{fe: DFRobotV2, acidPct: 110, basePct: 110}.point(4, 25), probe{fe: DFRobotV2, acidPct: 110, basePct: 110}.point(10, 25)}}, []string{"slope 110.0 %"}},
		{"swapped buffers", Calibration{FrontEnd: DFRobotV2, Points: []Point{{PH: 4, Voltage: good.volts(10, 25), TempC: 25}, {PH: 10, Voltage: good.volts(4, 25), TempC: 25}}}, []string{"wrong sign"}},
		{"base side bad only", Calibration{FrontEnd: DFRobotV2, Points: []Point{good.point(4, 25), good.point(7, 25), probe{fe: DFRobotV2, e0: 0.01, basePct: 60}.point(10, 25)}}, []string{"base slope 60.0 %"}},
		{"offset", Calibration{FrontEnd: DFRobotV2, Points: []Point{probe{fe: DFRobotV2, e0: 0.08, acidPct: 100}.point(7, 25)}}, []string{"offset +80.0 mV"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %q, want it to mention %q", err, w)
				}
			}
			if _, err := tt.c.PH(1.5, 25); err == nil {
				t.Error("PH accepted an invalid calibration")
			}
		})
	}
}

func TestAddPoint(t *testing.T) {
	p := probe{fe: DFRobotV2, e0: 0.01, acidPct: 95, basePct: 92}
	c := Calibration{FrontEnd: DFRobotV2}
	steps := []struct {
		buffer, v, temp float64
		err             bool
		wantPH          []float64
	}{
		{BufferMid, p.volts(7, 25) + 0.1, 25, false, []float64{7}},
		{BufferHigh, p.volts(10, 25), 25, false, []float64{7, 10}},
		{BufferMid, p.volts(7, 25), 25, false, []float64{7, 10}}, // replaces
		{BufferLow, p.volts(4, 25), 25, false, []float64{4, 7, 10}},
		{2, 1.0, 25, true, []float64{4, 7, 10}},
		{4.01, p.volts(4, 25), 25, false, []float64{4.01, 7, 10}}, // NIST-ish 4.01 replaces 4.00
		{BufferLow, math.NaN(), 25, true, []float64{4.01, 7, 10}},
		{BufferLow, 1.0, -3, true, []float64{4.01, 7, 10}},
	}
	for i, s := range steps {
		err := c.AddPoint(s.buffer, s.v, s.temp)
		if (err != nil) != s.err {
			t.Fatalf("step %d: AddPoint error %v, want error %v", i, err, s.err)
		}
		var got []float64
		for _, pt := range c.Points {
			got = append(got, pt.PH)
		}
		if len(got) != len(s.wantPH) {
			t.Fatalf("step %d: points %v, want %v", i, got, s.wantPH)
		}
		for j := range got {
			if got[j] != s.wantPH[j] {
				t.Fatalf("step %d: points %v, want %v", i, got, s.wantPH)
			}
		}
	}
	if c.Points[1].Voltage != p.volts(7, 25) {
		t.Error("the second mid point did not replace the first")
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.Reset()
	if len(c.Points) != 0 || c.FrontEnd != DFRobotV2 {
		t.Fatalf("Reset left %+v", c)
	}
}

func TestSaveLoad(t *testing.T) {
	p := probe{fe: DFRobotV2, e0: 0.004, acidPct: 96, basePct: 93}
	c := Calibration{FrontEnd: DFRobotV2, Points: []Point{p.point(4, 21.5), p.point(7, 21.5), p.point(10, 22)}}
	dir := t.TempDir()
	path := filepath.Join(dir, "ph.json")
	if err := c.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := LoadCalibration(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.FrontEnd != c.FrontEnd || len(got.Points) != 3 || got.Points[2] != c.Points[2] {
		t.Fatalf("round trip: %+v, want %+v", got, c)
	}
	b, _ := os.ReadFile(path)
	for _, key := range []string{`"zero_v": 1.5`, `"gain": 3`, `"points"`, `"ph": 4`, `"voltage"`, `"temp_c": 21.5`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("saved JSON lacks %s:\n%s", key, b)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("Save left %d files behind", len(ents))
	}

	bad := Calibration{FrontEnd: DFRobotV2}
	if err := bad.Save(filepath.Join(dir, "bad.json")); err == nil {
		t.Error("Save accepted an invalid calibration")
	}
	for name, body := range map[string]string{
		"unknown field": `{"zero_v":1.5,"gain":3,"points":[{"ph":7,"voltage":1.5,"temp_c":25}],"slope":1}`,
		"invalid":       `{"zero_v":1.5,"gain":3,"points":[]}`,
		"not json":      `zero_v: 1.5`,
	} {
		if _, err := ParseCalibration([]byte(body)); err == nil {
			t.Errorf("ParseCalibration(%s) succeeded", name)
		}
	}
	if _, err := LoadCalibration(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("LoadCalibration(missing) succeeded")
	}
}

// TestREADMEExample keeps the calibration file shown in README.md valid.
func TestREADMEExample(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, `{"zero_v"`)
	j := strings.Index(s[i:], "]}")
	if i < 0 || j < 0 {
		t.Fatal("README.md has no calibration example")
	}
	c, err := ParseCalibration([]byte(s[i : i+j+2]))
	if err != nil {
		t.Fatalf("README example: %v", err)
	}
	if ph, err := c.PH(1.515, 22.5); err != nil || math.Abs(ph-7) > 1e-9 {
		t.Fatalf("README example: pH at the mid voltage = %v, %v", ph, err)
	}
}
