// Package sim is a simulated sensor for demos and tests. It is seeded (the
// same seed and the same sensing times give the same values) and takes time
// as an input: Opts.Clock for Sense, or an explicit time with SenseAt.
//
// A value is Base + DriftPerHour × hours since Start + the sizes of the Steps
// whose offset has passed + gaussian noise (sd Noise) + an occasional spike
// (±SpikeSize with probability SpikeProb). With probability DropoutProb a
// reading is a drivers.CauseMissing fault; with probability StuckProb the
// value freezes for StuckFor. Every reading draws the same random numbers
// whatever happens, so changing one probability does not reshuffle the rest.
//
// DemoTemperature and DemoPH are presets for the demo: a temperature that goes
// below 10 °C and back, and a pH that goes above 5.5 and back, both within
// the first minute.
package sim
