package gateway

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"

	"github.com/outpost-iot/outpost/drivers/catalog"
	"github.com/outpost-iot/outpost/drivers/phprobe"
)

const adsAddr = 0x48

// adsOps is the recorded traffic of the ADS1115 probe check and n single-shot
// reads of A0 at ±4.096 V, 16 SPS (config 0xc323), returning volts.
func adsOps(volts ...float64) []i2ctest.IO {
	ops := []i2ctest.IO{{Addr: adsAddr, W: []byte{0x03}, R: []byte{0x7f, 0xff}}}
	for _, v := range volts {
		raw := int16(math.Round(v * 8000))
		ops = append(ops,
			i2ctest.IO{Addr: adsAddr, W: []byte{0x01, 0xc3, 0x23}},
			i2ctest.IO{Addr: adsAddr, W: []byte{0x00}, R: []byte{byte(uint16(raw) >> 8), byte(raw)}})
	}
	return ops
}

func calConfig(t *testing.T) (Config, string) {
	calFile := filepath.Join(t.TempDir(), "ph.json")
	cfg := DefaultConfig()
	cfg.Sensors = []catalog.Spec{
		{Name: "ph-tank", Type: catalog.ADS1115PH, Addr: adsAddr, Calibration: calFile},
		{Name: "temp", Type: catalog.Sim},
	}
	return cfg, calFile
}

func TestCalibrateADS1115(t *testing.T) {
	cfg, calFile := calConfig(t)
	run := func(ops []i2ctest.IO, r CalibrateRequest) (string, error) {
		pb := &i2ctest.Playback{Ops: ops, DontPanic: true}
		msg, err := CalibratePH(context.Background(), cfg, func(string) (i2c.Bus, error) { return pb, nil }, r)
		if err == nil {
			if perr := pb.Close(); perr != nil {
				t.Fatalf("bus traffic differs from the recording: %v", perr)
			}
		}
		return msg, err
	}
	// pH 7.00 at 1.500 V (DFRobot V2 front end: 0 mV electrode), 4 samples.
	msg, err := run(adsOps(1.5, 1.5, 1.5001, 1.4999), CalibrateRequest{Sensor: "ph-tank", Buffer: 7, TempC: math.NaN(), Samples: 4})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg, "1 point") {
		t.Fatalf("message %q", msg)
	}
	// pH 4.00: +177.5 mV at the electrode, ×3 gain.
	v4 := 1.5 + 3*phprobe.NernstSlope(25)*3
	if _, err := run(adsOps(v4, v4, v4, v4), CalibrateRequest{Sensor: "ph-tank", Buffer: 4, TempC: 25, Samples: 4}); err != nil {
		t.Fatal(err)
	}
	cal, err := phprobe.LoadCalibration(calFile)
	if err != nil || len(cal.Points) != 2 {
		t.Fatalf("calibration file: %+v, %v", cal, err)
	}
	if ph, err := cal.PH(v4, 25); err != nil || math.Abs(ph-4) > 0.01 {
		t.Fatalf("calibrated pH at the pH-4 voltage = %.3f, %v", ph, err)
	}
	before, _ := os.ReadFile(calFile)

	// An unsettled probe is refused and the file stays as it was.
	if _, err := run(adsOps(2.3, 2.5, 2.2, 2.6), CalibrateRequest{Sensor: "ph-tank", Buffer: 10, TempC: 25, Samples: 4}); err == nil || !strings.Contains(err.Error(), "not stable") {
		t.Fatalf("unstable reading: %v", err)
	}
	// A point that makes an implausible slope is refused too.
	if _, err := run(adsOps(1.51, 1.51, 1.51, 1.51), CalibrateRequest{Sensor: "ph-tank", Buffer: 10, TempC: 25, Samples: 4}); err == nil {
		t.Fatal("implausible calibration accepted")
	}
	after, _ := os.ReadFile(calFile)
	if string(before) != string(after) {
		t.Fatal("a refused point changed the calibration file")
	}
	if _, err := run(nil, CalibrateRequest{Sensor: "temp", Buffer: 7}); err == nil || !strings.Contains(err.Error(), "not a pH sensor") {
		t.Fatalf("non-pH sensor: %v", err)
	}
	if _, err := run(nil, CalibrateRequest{Sensor: "nope", Buffer: 7}); err == nil {
		t.Fatal("unknown sensor accepted")
	}
}
