// Package mcp9808 adapts periph's devices/v3/mcp9808 (Microchip MCP9808
// digital temperature sensor, I²C, ±0.25 °C typical) to drivers.Sensor.
//
// New probes the manufacturer ID (0x0054) and device ID (0x04) registers
// before handing the chip to periph, which tells an MCP9808 from a DS2482
// sharing address 0x18. periph's driver drops the underlying I²C error on
// reads, so a failed Sense is CauseIO with periph's message; a value outside
// the -40..125 °C operating range is CauseOutOfRange.
//
// Datasheet: https://ww1.microchip.com/downloads/en/DeviceDoc/25095A.pdf
package mcp9808
