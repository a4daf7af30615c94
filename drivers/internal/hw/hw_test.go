package hw

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/outpost-iot/outpost/drivers"
)

func TestI2CFault(t *testing.T) {
	own := &drivers.Fault{Cause: drivers.CauseCRC}
	tests := []struct {
		err   error
		cause string // "" → not a fault
	}{
		{errors.New("sysfs-i2c: remote I/O error"), drivers.CauseMissing},          // bcm2835 NACK
		{errors.New("sysfs-i2c: no such device or address"), drivers.CauseMissing}, // ENXIO
		{fmt.Errorf("bme280: %v", "sysfs-i2c: Remote I/O error"), drivers.CauseMissing},
		{errors.New("ftdi: i2c: NACK"), drivers.CauseMissing},
		{errors.New("sysfs-i2c: connection timed out"), drivers.CauseIO},
		{errors.New("i2ctest: unexpected Tx()"), drivers.CauseIO},
		{fmt.Errorf("wrapped: %w", own), drivers.CauseCRC},
		{context.Canceled, ""},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), ""},
	}
	for _, tt := range tests {
		err := I2CFault(tt.err, "chip: read")
		var f *drivers.Fault
		got := ""
		if errors.As(err, &f) {
			got = f.Cause
		}
		if got != tt.cause {
			t.Errorf("I2CFault(%v) cause %q, want %q", tt.err, got, tt.cause)
		}
		if !errors.Is(err, tt.err) {
			t.Errorf("I2CFault(%v) lost the original error", tt.err)
		}
	}
	if I2CFault(nil, "x") != nil {
		t.Error("I2CFault(nil) is not nil")
	}
}

func TestCheckRange(t *testing.T) {
	for _, tt := range []struct {
		v  float64
		ok bool
	}{{-40, true}, {125, true}, {0, true}, {-40.1, false}, {125.1, false}} {
		err := CheckRange("chip", tt.v, -40, 125, "°C")
		if (err == nil) != tt.ok {
			t.Errorf("CheckRange(%v) = %v", tt.v, err)
		}
		var f *drivers.Fault
		if err != nil && (!errors.As(err, &f) || f.Cause != drivers.CauseOutOfRange) {
			t.Errorf("CheckRange(%v) = %v, want out_of_range", tt.v, err)
		}
	}
	if CheckRange("chip", math.NaN(), 0, 1, "") == nil {
		t.Error("NaN accepted")
	}
}
