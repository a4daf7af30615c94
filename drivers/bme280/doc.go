// Package bme280 adapts periph's devices/v3/bmxx80 (Bosch BME280: temperature,
// humidity and pressure over I²C) to drivers.Sensor.
//
// One chip measures three quantities, while a drivers.Sensor has one. New
// returns a Dev for opts.Quantity; Dev.As returns another Sensor for another
// quantity of the same chip, sharing its handle and lock. Every Sense runs one
// forced-mode measurement (a few ms at 1x oversampling) and returns its
// quantity, so the chip sleeps between readings and does not warm itself.
//
// BMP280 (no humidity) and BMP180 chips are accepted for temperature and
// pressure; asking one for humidity is an error at New or As. Values outside
// the BME280's operating range (-40..85 °C, 0..100 %RH, 300..1100 hPa) are
// CauseOutOfRange; I²C errors are CauseMissing (NACK) or CauseIO.
//
// Datasheet: https://www.bosch-sensortec.com/media/boschsensortec/downloads/datasheets/bst-bme280-ds002.pdf
package bme280
