// Package ds18b20 adapts periph's devices/v3/ds18b20 to drivers.Sensor for
// DS18B20 probes on any periph onewire.Bus: a DS2482 I²C bridge (periph's
// ds248x, which can power parasite probes with its strong pull-up) or the
// kernel's netlink master.
//
// What it adds to periph's driver:
//
//   - Resolution stays constant. periph's ds18b20.New writes the probe's EEPROM
//     when the requested resolution differs from the stored one, so New here
//     does too: pick one resolution per probe and keep it (the EEPROM has
//     about 50k write cycles).
//   - Exactly 85.000 °C is rejected as drivers.CausePowerOn. periph's guard
//     compares against 85 K and never fires.
//   - Errors become faults: a scratchpad CRC mismatch is CauseCRC; no presence
//     pulse, or a scratchpad of all 0xff, is CauseMissing; other 1-Wire or
//     bridge errors are CauseIO.
//   - Sense waits for the conversion honouring its context (periph's Sense
//     sleeps unconditionally), then reads the scratchpad through periph.
//
// ROM ids are printed as the kernel names them (28-0316a2797aff: family,
// dash, 48-bit serial); ParseROM also accepts the 64-bit address in hex.
//
// Datasheet: https://www.analog.com/media/en/technical-documentation/data-sheets/DS18B20.pdf
package ds18b20
