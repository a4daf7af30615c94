// Package drivers defines the contract between the gateway and its sensors.
// One package per chip or board lives below it; each adapts a periph.io driver
// (or talks to the chip over periph's conn interfaces) and returns values in
// canonical units. A sensor never owns its bus.
package drivers

import (
	"context"
	"errors"
	"fmt"
)

// Quantity is what a sensor measures. Values are always in the canonical unit.
type Quantity string

const (
	Temperature Quantity = "temperature" // degrees Celsius, unit "C"
	PH          Quantity = "ph"          // pH, unit "pH"
	Humidity    Quantity = "humidity"    // relative humidity %, unit "%RH"
	Pressure    Quantity = "pressure"    // hectopascal, unit "hPa"
	Voltage     Quantity = "voltage"     // volts, unit "V"
)

// Unit returns the canonical unit string of q.
func (q Quantity) Unit() string {
	switch q {
	case Temperature:
		return "C"
	case PH:
		return "pH"
	case Humidity:
		return "%RH"
	case Pressure:
		return "hPa"
	case Voltage:
		return "V"
	}
	return ""
}

// Sensor is one measured quantity of one physical device. Sense blocks for the
// conversion (it honours ctx where the chip allows) and returns the value in
// q.Unit(). A failure that is a property of the sensor (not of our code) is
// returned as a *Fault, so the gateway records it as a sensor fault, never as
// a reading.
type Sensor interface {
	Name() string
	Quantity() Quantity
	Sense(ctx context.Context) (float64, error)
}

// Fault causes. They are part of the wire protocol (protocol.Fault.Cause).
const (
	CauseCRC         = "crc"            // checksum mismatch on the bus
	CausePowerOn     = "power_on_value" // DS18B20 85 °C reset value
	CauseMissing     = "missing"        // device did not answer / not present
	CauseOutOfRange  = "out_of_range"   // value or voltage outside the physical range
	CauseDeviceError = "device_error"   // the chip reported an error status
	CauseTimeout     = "timeout"
	CauseIO          = "io" // other bus I/O error
)

// Fault is a sensor fault with its cause.
type Fault struct {
	Cause  string
	Detail string
	Err    error
}

func (f *Fault) Error() string {
	s := f.Cause
	if f.Detail != "" {
		s += ": " + f.Detail
	}
	if f.Err != nil {
		s += ": " + f.Err.Error()
	}
	return s
}

func (f *Fault) Unwrap() error { return f.Err }

// NewFault returns a *Fault with a formatted detail.
func NewFault(cause string, err error, format string, args ...any) *Fault {
	return &Fault{Cause: cause, Detail: fmt.Sprintf(format, args...), Err: err}
}

// AsFault returns the *Fault in err's chain, or a CauseIO fault wrapping err.
func AsFault(err error) *Fault {
	var f *Fault
	if errors.As(err, &f) {
		return f
	}
	return &Fault{Cause: CauseIO, Err: err}
}
