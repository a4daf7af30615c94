// Package hw holds small helpers shared by the chip drivers: turning bus
// errors into sensor faults and waiting in a way that honours a context.
package hw

import (
	"context"
	"errors"
	"strings"

	"github.com/outpost-iot/outpost/drivers"
)

// nackTexts are the messages a NACK produces through Linux i2c-dev. periph's
// sysfs driver formats the errno with %v, so the text is all that survives.
var nackTexts = []string{
	"no such device or address", // ENXIO (most adapters)
	"remote i/o error",          // EREMOTEIO (bcm2835 on a Raspberry Pi)
	"nack",                      // FTDI and others
}

// IsNACK reports whether err looks like the addressed chip did not acknowledge.
func IsNACK(err error) bool {
	if err == nil {
		return false
	}
	s := strings.ToLower(err.Error())
	for _, t := range nackTexts {
		if strings.Contains(s, t) {
			return true
		}
	}
	return false
}

// I2CFault turns an I2C error into a sensor fault: a NACK is CauseMissing,
// anything else CauseIO. A *drivers.Fault already in err's chain is kept, and
// a context error is returned unchanged (cancellation is not a sensor fault).
// what says what failed, prefixed with the chip name ("tmp102: read temperature").
func I2CFault(err error, what string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var f *drivers.Fault
	if errors.As(err, &f) {
		return err
	}
	cause := drivers.CauseIO
	if IsNACK(err) {
		cause = drivers.CauseMissing
	}
	return &drivers.Fault{Cause: cause, Detail: what, Err: err}
}

// CheckRange returns a CauseOutOfRange fault when v is outside [lo, hi] or
// not a number; chip and unit only go into the message.
func CheckRange(chip string, v, lo, hi float64, unit string) error {
	if v >= lo && v <= hi { // false for NaN
		return nil
	}
	return drivers.NewFault(drivers.CauseOutOfRange, nil, "%s: %g %s outside %g..%g", chip, v, unit, lo, hi)
}
