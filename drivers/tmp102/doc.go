// Package tmp102 adapts periph's devices/v3/tmp102 (TI TMP102 digital
// temperature sensor, I²C, 0.0625 °C resolution, ±0.5 °C) to drivers.Sensor.
//
// New probes the chip before handing it to periph: the configuration
// register's read-only converter-resolution bits must read 11 and its four
// low bits 0, which tells a TMP102 from an ADS1115 sharing address 0x48.
// The chip converts continuously (4 Hz by default), so Sense is one register
// read. I²C errors become *drivers.Fault: a NACK is CauseMissing, others
// CauseIO; a value outside the -55..150 °C operating range is CauseOutOfRange.
//
// Datasheet: https://www.ti.com/lit/ds/symlink/tmp102.pdf
package tmp102
