// Package ezoph drives an Atlas Scientific EZO-pH circuit in I²C mode over
// periph's conn/v3/i2c. The chip does the maths (calibration, temperature
// compensation) and answers ASCII.
//
// Protocol (datasheet, I²C mode): write the command as ASCII ("R",
// "Cal,mid,7.00", "T,25.0", "i"), wait its processing delay, then read: the
// first byte is a status (1 success, 2 syntax error, 254 still processing,
// 255 no data), then ASCII text ending in NUL. Delays: R and Cal,mid/low/high
// 900 ms; i, T, Cal,clear and Cal,? 300 ms.
//
// Faults: status 2 or 255, a garbled reply or a reading that is not a number
// is CauseDeviceError; status 254 is retried a few times and then becomes
// CauseTimeout; a reading outside 0..14 is CauseOutOfRange; I²C errors are
// CauseMissing (NACK) or CauseIO.
//
// Temperature compensation: with Opts.Temperature set, Sense sends "T,<°C>"
// before "R" whenever the temperature moved by 0.1 °C or more since the last
// one the chip accepted (and again after any failure, in case the chip reset).
// If Opts.Temperature fails, nothing is sent and the chip keeps compensating
// at the last temperature it got (25 °C after power-up); the switch is logged.
//
// Datasheet: https://files.atlas-scientific.com/pH_EZO_Datasheet.pdf
package ezoph
