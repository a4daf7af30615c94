// Package phprobe reads an analog pH probe (electrode plus amplifier board,
// such as DFRobot's Gravity pH V2) through an ADS1115 ADC on I²C, using
// periph's devices/v3/ads1x15, and converts the voltage to pH with a
// Calibration.
//
// Calibration: 1, 2 or 3 points in buffers 4.00 / 7.00 / 10.00 (any buffers
// 1..13 work). One point fixes the offset with the theoretical slope; two fix
// a line; three fix separate acid and base slopes joined at the middle
// buffer. Validate rejects a slope outside 80–105 % of the Nernst slope or an
// offset beyond ±60 mV at pH 7. A Calibration is JSON (Save, LoadCalibration).
//
// Temperature compensation: the slope scales with absolute temperature
// (59.16 mV/pH at 25 °C). Opts.Temperature supplies the solution's
// temperature, normally from a temperature sensor in the same tank. Rule: if
// Opts.Temperature is nil, or it fails, or it returns a value outside
// 0..100 °C, Sense compensates at 25 °C and still returns a reading; the
// switch to and back from the fallback is logged. The error this causes is
// small, |pH − 7| × ΔT / 298 (0.05 pH at pH 5.5 for 10 K), well under the
// probe's own accuracy, so losing the pH reading would cost more.
//
// Faults: a saturated ADC, a negative input, an electrode potential beyond
// ±500 mV (open or broken probe, unplugged board) or a pH outside 0..14 is
// CauseOutOfRange; I²C errors are CauseMissing (NACK) or CauseIO. Sense with no
// calibration returns ErrNotCalibrated, which is a setup error, not a fault.
//
// ADS1115 notes (periph's driver): it has no conversion-ready polling, so a
// read sleeps one conversion period (1/DataRate); it does not probe at
// construction, so New does (see Probe); Dev uses single-shot reads only,
// never ReadContinuous, whose Halt can deadlock.
//
// Datasheets: https://www.ti.com/lit/ds/symlink/ads1115.pdf,
// https://wiki.dfrobot.com/Gravity__Analog_pH_Sensor_Meter_Kit_V2_SKU_SEN0161-V2
package phprobe
