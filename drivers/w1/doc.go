// Package w1 reads DS18B20 temperature probes through the Linux kernel's
// 1-Wire subsystem (sysfs), the way a Raspberry Pi exposes them with
// dtoverlay=w1-gpio: one directory per probe under /sys/bus/w1/devices,
// named after its ROM id (28-0316a2797aff), holding w1_slave and, on newer
// kernels, temperature.
//
// The kernel does the conversion while the file is read (about 750 ms at the
// probe's default 12 bits), so Sense blocks for that long; the context is
// checked before the read starts, not during it.
//
// Reading w1_slave gives the scratchpad and the kernel's CRC verdict, so faults
// can be told apart: CRC NO is CauseCRC, t=85000 (the power-on value) is
// CausePowerOn, an all-0x00 or all-0xff scratchpad or a vanished directory is
// CauseMissing, and a value outside the DS18B20's -55..125 °C is
// CauseOutOfRange. The temperature file is used when w1_slave is absent (or on
// request); it carries no CRC verdict.
//
// Datasheet: https://www.analog.com/media/en/technical-documentation/data-sheets/DS18B20.pdf
// Kernel: https://docs.kernel.org/w1/slaves/w1_therm.html
package w1
