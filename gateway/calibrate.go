package gateway

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"time"

	"periph.io/x/conn/v3/i2c"

	"github.com/outpost-iot/outpost/drivers/catalog"
	"github.com/outpost-iot/outpost/drivers/ezoph"
	"github.com/outpost-iot/outpost/drivers/phprobe"
)

// CalibrateRequest is one pH calibration step.
type CalibrateRequest struct {
	Sensor  string  // configured sensor name
	Buffer  float64 // buffer pH: 4.00, 7.00 or 10.00 (others allowed within the probe's range)
	TempC   float64 // buffer temperature; NaN: 25 °C
	Clear   bool    // drop existing points first
	Samples int     // voltage samples to average (ADS1115); default 16
}

// CalibratePH takes a calibration point for a pH sensor of cfg: for an
// ADS1115 probe it measures the voltage (averaged, checked for stability)
// and saves the point to the sensor's calibration file; for an EZO-pH it
// sends the matching calibration command to the chip.
func CalibratePH(ctx context.Context, cfg Config, bus func(name string) (i2c.Bus, error), r CalibrateRequest) (string, error) {
	var spec catalog.Spec
	found := false
	for _, s := range cfg.Sensors {
		if s.Name == r.Sensor {
			spec, found = s.WithDefaults(), true
		}
	}
	if !found {
		return "", fmt.Errorf("calibrate: no sensor %q in the configuration", r.Sensor)
	}
	if math.IsNaN(r.TempC) {
		r.TempC = phprobe.RefTempC
	}
	if r.Buffer < 1 || r.Buffer > 13 {
		return "", fmt.Errorf("calibrate: buffer pH %.2f out of range 1..13", r.Buffer)
	}
	b, err := bus(spec.Bus)
	if err != nil {
		return "", fmt.Errorf("calibrate: %w", err)
	}
	switch spec.Type {
	case catalog.ADS1115PH:
		return calibrateADS(ctx, spec, b, r)
	case catalog.EZOPH:
		return calibrateEZO(ctx, spec, b, r)
	default:
		return "", fmt.Errorf("calibrate: sensor %q is a %s, not a pH sensor (ads1115-ph or ezo-ph)", r.Sensor, spec.Type)
	}
}

func calibrateADS(ctx context.Context, spec catalog.Spec, b i2c.Bus, r CalibrateRequest) (string, error) {
	if spec.Calibration == "" {
		return "", fmt.Errorf("calibrate: sensor %q has no calibration file (set sensors[].calibration)", spec.Name)
	}
	cal, err := phprobe.LoadCalibration(spec.Calibration)
	if errors.Is(err, fs.ErrNotExist) {
		cal, err = phprobe.DefaultOpts.Calibration, nil
	}
	if err != nil {
		return "", fmt.Errorf("calibrate: %w", err)
	}
	opts := phprobe.DefaultOpts
	opts.Name, opts.Input = spec.Name, spec.Input
	opts.Calibration = phprobe.Calibration{FrontEnd: cal.FrontEnd}
	dev, err := phprobe.New(b, uint16(spec.Addr), &opts)
	if err != nil {
		return "", fmt.Errorf("calibrate: %w", err)
	}
	n := r.Samples
	if n <= 0 {
		n = 16
	}
	var sum, sumSq float64
	for i := 0; i < n; i++ {
		v, err := dev.ReadVoltage(ctx)
		if err != nil {
			return "", fmt.Errorf("calibrate: read voltage: %w", err)
		}
		sum += v
		sumSq += v * v
	}
	mean := sum / float64(n)
	sd := math.Sqrt(math.Max(0, sumSq/float64(n)-mean*mean))
	if sd > 0.005 {
		return "", fmt.Errorf("calibrate: reading not stable (σ = %.1f mV over %d samples): let the probe settle in the buffer and try again", sd*1000, n)
	}
	if r.Clear {
		cal.Reset()
	}
	if err := cal.AddPoint(r.Buffer, mean, r.TempC); err != nil {
		return "", err
	}
	if err := cal.Validate(); err != nil {
		return "", fmt.Errorf("calibrate: the point makes an implausible calibration (file unchanged): %w", err)
	}
	if err := cal.Save(spec.Calibration); err != nil {
		return "", fmt.Errorf("calibrate: %w", err)
	}
	msg := fmt.Sprintf("%s: pH %.2f at %.1f °C = %.4f V (σ %.1f mV); %d point(s) in %s", spec.Name, r.Buffer, r.TempC, mean, sd*1000, len(cal.Points), spec.Calibration)
	if acid, base, off, err := cal.Slopes(); err == nil {
		msg += fmt.Sprintf("\nslope acid %.1f %% base %.1f %% of Nernst, offset %.1f mV", acid, base, off)
	}
	return msg, nil
}

func calibrateEZO(ctx context.Context, spec catalog.Spec, b i2c.Bus, r CalibrateRequest) (string, error) {
	dev, err := ezoph.New(b, uint16(spec.Addr), &ezoph.Opts{Name: spec.Name})
	if err != nil {
		return "", fmt.Errorf("calibrate: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if r.Clear {
		if err := dev.ClearCalibration(ctx); err != nil {
			return "", fmt.Errorf("calibrate: %w", err)
		}
	}
	if err := dev.SetTemperature(ctx, r.TempC); err != nil {
		return "", fmt.Errorf("calibrate: %w", err)
	}
	switch {
	case math.Abs(r.Buffer-7) < 0.5:
		err = dev.CalibrateMid(ctx, r.Buffer) // the EZO clears other points at a mid calibration
	case r.Buffer < 7:
		err = dev.CalibrateLow(ctx, r.Buffer)
	default:
		err = dev.CalibrateHigh(ctx, r.Buffer)
	}
	if err != nil {
		return "", fmt.Errorf("calibrate: %w", err)
	}
	pts, err := dev.CalibrationPoints(ctx)
	if err != nil {
		return "", fmt.Errorf("calibrate: %w", err)
	}
	return fmt.Sprintf("%s: calibrated at pH %.2f; the EZO-pH holds %d point(s) (calibrate mid 7.00 first: it clears the others)", spec.Name, r.Buffer, pts), nil
}
