// Package catalog turns the gateway's sensor configuration into drivers:
// Spec is one configured sensor (decodable from YAML), Validate checks a list
// of them and names every problem by its key path, Open builds one
// drivers.Sensor per Spec on the buses an Env provides, and Scan probes the
// I²C and 1-Wire buses for the chips the drivers know (`outpost-gateway scan`).
//
// Open separates configuration errors from hardware: an invalid Spec or an
// unreadable calibration file fails Open, but a chip that is missing or
// broken does not. Its Sensor reports a *drivers.Fault on every Sense and
// tries to open the chip again each time, so a probe plugged in later starts
// reading without a restart. A Sensor also reopens its chip after an I/O or
// missing fault, which re-applies configuration a chip lost in a brown-out
// and clears the DS2482's sticky error state.
//
// Sensors sharing a chip (several ADS1115 inputs, the three BME280
// quantities, the probes behind one DS2482) take turns: one Sense at a time
// per chip. Behind a DS2482 that also protects parasite-powered probes, whose
// conversion needs the strong pull-up undisturbed.
package catalog
