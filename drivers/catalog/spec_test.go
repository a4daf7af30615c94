package catalog

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/outpost-iot/outpost/drivers"
)

func decode(t testing.TB, y string) []Spec {
	t.Helper()
	var specs []Spec
	if err := yaml.Unmarshal([]byte(y), &specs); err != nil {
		t.Fatalf("decode: %v\n%s", err, y)
	}
	return specs
}

// full is a valid configuration using every type.
const full = `
- {name: tank-temp, type: w1-ds18b20, rom: 28-0316a2797aff, interval: 30s}
- {name: tank-ph, type: ads1115-ph, addr: 0x48, input: 0, calibration: /var/lib/outpost/ph.json, temp_sensor: tank-temp}
- {name: tank-mv, type: ads1115-ph, addr: "0x48", input: 1, quantity: voltage}
- {name: sump-ph, type: ezo-ph, temp_sensor: air-temp}
- {name: air-temp, type: bme280, addr: 0x76}
- {name: air-hum, type: bme280, addr: 118, quantity: humidity}
- {name: air-pres, type: bme280, quantity: pressure}
- {name: box, type: tmp102, addr: 0x49}
- {name: board, type: mcp9808, addr: 0x1a}
- {name: pipe-1, type: ds2482-ds18b20, rom: 28-0000070e41ac, resolution: 10}
- {name: pipe-2, type: ds2482-ds18b20, rom: "0xfc0000013199a928", resolution: 9, interval: 1s}
- {name: bus3-tmp, type: tmp102, bus: "3"}
- {name: demo-temp, type: sim, sim: {preset: demo-temperature, seed: 7}}
- name: demo-ph
  type: sim
  quantity: ph
  sim:
    preset: demo-ph
    noise: 0.01
    steps: [{at: 5s, size: 1}, {at: 50s, size: -1}]
- {name: hum-sim, type: sim, quantity: humidity, sim: {base: 55, spike_prob: 0.01, spike_size: 10, dropout_prob: 0.02, stuck_prob: 0.01, stuck_for: 1m, drift_per_hour: 0.5}}
`

func TestValidateFull(t *testing.T) {
	specs := decode(t, full)
	if err := Validate(specs); err != nil {
		t.Fatalf("Validate:\n%v", err)
	}
	s := specs[1].WithDefaults()
	if s.Bus != "1" || s.Addr != 0x48 || s.Quantity != drivers.PH || s.Interval != DefaultInterval {
		t.Errorf("defaults: %+v", s)
	}
	if s := specs[5]; s.Addr != 0x76 {
		t.Errorf("decimal addr: %v", s.Addr)
	}
	if s := specs[0]; s.Interval != 30*time.Second {
		t.Errorf("interval: %v", s.Interval)
	}
	if s := specs[12].WithDefaults(); s.Quantity != drivers.Temperature {
		t.Errorf("sim preset quantity: %v", s.Quantity)
	}
	if s := specs[9].WithDefaults(); s.Resolution != 10 || s.Addr != 0x18 {
		t.Errorf("ds2482: %+v", s)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // "key: substring", in order; nil → valid
	}{
		{"empty list", `[]`, nil},
		{"missing name and type", `[{}]`, []string{"sensors[0].name: missing", "sensors[0].type: missing"}},
		{"bad name", `[{name: "tank temp", type: tmp102}]`, []string{`sensors[0].name: "tank temp": character ' ' at 4`}},
		{"name starting with -", `[{name: -x, type: tmp102}]`, []string{`sensors[0].name: "-x"`}},
		{"long name", `[{name: ` + strings.Repeat("a", 65) + `, type: tmp102}]`, []string{`sensors[0].name: "aaaaaaaaaaaaaaaaaaaa"… is 65 bytes, at most 64`}},
		{"unknown type", `[{name: a, type: dht22}]`, []string{`sensors[0].type: "dht22" is not a sensor type; want one of w1-ds18b20 | ds2482-ds18b20`}},
		{"8-bit address", `[{name: a, type: tmp102}, {name: b, type: ezo-ph}, {name: c, type: ezo-ph, addr: 0x90}]`, []string{"sensors[2].addr: 0x90 is not a 7-bit address"}},
		{"reserved address", `[{name: a, type: ezo-ph, addr: 0x03}]`, []string{"sensors[0].addr: 0x03 is a reserved I²C address"}},
		{"wrong address for the chip", `[{name: a, type: tmp102, addr: 0x40}]`, []string{"sensors[0].addr: 0x40: a tmp102 answers at 0x48, 0x49, 0x4a, 0x4b"}},
		{"ds2482 at 0x1a", `[{name: a, type: ds2482-ds18b20, addr: 0x1a, rom: 28-0000070e41ac}]`, []string{"sensors[0].addr: 0x1a: a ds2482-ds18b20 answers at 0x18, 0x19"}},
		{"ADS1115 and TMP102 clash", `[{name: a, type: ads1115-ph, quantity: voltage}, {name: b, type: tmp102}]`,
			[]string{"sensors[1].addr: 0x48 on bus 1 is also used by sensors[0] (ads1115-ph); ADS1115 and TMP102 both default to 0x48"}},
		{"DS2482 and MCP9808 clash", `[{name: a, type: mcp9808}, {name: b, type: ds2482-ds18b20, rom: 28-0000070e41ac}]`,
			[]string{"sensors[1].addr: 0x18 on bus 1 is also used by sensors[0] (mcp9808); DS2482 and MCP9808 both default to 0x18"}},
		{"same address on different buses", `[{name: a, type: ads1115-ph, quantity: voltage}, {name: b, type: tmp102, bus: "0"}]`, nil},
		{"two TMP102 at one address", `[{name: a, type: tmp102}, {name: b, type: tmp102}]`, []string{"sensors[1].addr: 0x48 on bus 1 is also used by sensors[0] (tmp102)"}},
		{"BME280 read twice", `[{name: a, type: bme280}, {name: b, type: bme280, quantity: humidity}, {name: c, type: bme280, quantity: temperature}]`,
			[]string{"sensors[2].addr: 0x76 quantity temperature on bus 1 is already read by sensors[0]"}},
		{"ADS1115 input read twice", `[{name: a, type: ads1115-ph, quantity: voltage, input: 2}, {name: b, type: ads1115-ph, quantity: voltage, input: 2}]`,
			[]string{"sensors[1].addr: 0x48 input 2 as voltage on bus 1 is already read by sensors[0]"}},
		{"DS18B20 behind a DS2482 twice", `[{name: a, type: ds2482-ds18b20, rom: 28-0000070e41ac}, {name: b, type: ds2482-ds18b20, rom: "740000070e41ac28"}]`,
			[]string{"sensors[1].addr: 0x18 rom 28-0000070e41ac on bus 1 is already read by sensors[0]"}},
		{"w1 probe twice", `[{name: a, type: w1-ds18b20, rom: 28-0316a2797aff}, {name: b, type: w1-ds18b20, rom: 28-0316a2797aff}]`,
			[]string{"sensors[1].rom: 28-0316a2797aff is already read by sensors[0]"}},
		{"duplicate names", `[{name: a, type: sim}, {name: a, type: sim}]`, []string{`sensors[1].name: "a" is already the name of sensors[0]`}},
		{"w1 without rom, with addr and bus", `[{name: a, type: w1-ds18b20, addr: 0x48, bus: "1"}]`,
			[]string{"sensors[0].bus: not used by type w1-ds18b20", "sensors[0].addr: not used by type w1-ds18b20", "sensors[0].rom: missing"}},
		{"bad roms", `[{name: a, type: w1-ds18b20, rom: 28-XYZ}, {name: b, type: ds2482-ds18b20, rom: 28-0316a2797afg}, {name: c, type: ds2482-ds18b20, rom: 10-000802b4f1a2}]`,
			[]string{`sensors[0].rom: "28-XYZ" is not a DS18B20 ROM id`, `sensors[1].rom: ROM id "28-0316a2797afg" is not hex`, `sensors[2].rom: "10-000802b4f1a2" is family 0x10`}},
		{"rom on a tmp102", `[{name: a, type: tmp102, rom: 28-0316a2797aff}]`, []string{"sensors[0].rom: not used by type tmp102"}},
		{"wrong quantity", `[{name: a, type: tmp102, quantity: ph}, {name: b, type: bme280, quantity: voltage}]`,
			[]string{`sensors[0].quantity: "ph": a tmp102 measures temperature`, `sensors[1].quantity: "voltage": a bme280 measures temperature, humidity, pressure`}},
		{"intervals", `[{name: a, type: ezo-ph, interval: 500ms}, {name: b, type: ds2482-ds18b20, rom: 28-0000070e41ac, interval: 700ms}, {name: c, type: sim, interval: -1s}]`,
			[]string{"sensors[0].interval: 500ms is shorter than a ezo-ph reading takes (1s)", "sensors[1].interval: 700ms is shorter than a ds2482-ds18b20 reading takes (752ms)", "sensors[2].interval: -1s is negative"}},
		{"resolution and input where they do not belong", `[{name: a, type: tmp102, resolution: 9, input: 1}, {name: b, type: ds2482-ds18b20, rom: 28-0000070e41ac, resolution: 13}, {name: c, type: ads1115-ph, addr: 0x49, quantity: voltage, input: 4}]`,
			[]string{"sensors[0].resolution: not used by type tmp102", "sensors[0].input: not used by type tmp102", "sensors[1].resolution: 13 bits, want 9..12", "sensors[2].input: 4, want 0..3"}},
		{"pH without calibration", `[{name: a, type: ads1115-ph}]`, []string{"sensors[0].calibration: missing"}},
		{"calibration on an EZO", `[{name: a, type: ezo-ph, calibration: x.json}]`, []string{"sensors[0].calibration: not used by type ezo-ph"}},
		{"temp_sensor problems", `[{name: t, type: tmp102, temp_sensor: t}, {name: p, type: ezo-ph, temp_sensor: nope}, {name: q, type: ads1115-ph, addr: 0x4b, quantity: voltage, temp_sensor: t}, {name: r, type: ezo-ph, addr: 0x64, temp_sensor: r}, {name: s, type: ezo-ph, addr: 0x65, temp_sensor: p}]`,
			[]string{
				"sensors[0].temp_sensor: only a pH sensor", "sensors[0].temp_sensor: a sensor cannot compensate itself",
				`sensors[1].temp_sensor: no sensor is named "nope"`,
				"sensors[2].temp_sensor: only a pH sensor",
				"sensors[3].temp_sensor: a sensor cannot compensate itself",
				`sensors[4].temp_sensor: "p" measures ph, not temperature`,
			}},
		{"sim problems", `[{name: a, type: sim, quantity: ph, sim: {preset: demo-temperature, spike_prob: 2, dropout_prob: -1, stuck_prob: 1.5, noise: -1, stuck_for: -1s, steps: [{at: -1s, size: 1}]}}, {name: b, type: sim, sim: {preset: storm}}, {name: c, type: tmp102, sim: {seed: 1}}]`,
			[]string{
				"sensors[0].sim.preset: demo-temperature gives temperature, but quantity is ph",
				"sensors[0].sim.spike_prob: 2, want a probability 0..1", "sensors[0].sim.dropout_prob: -1", "sensors[0].sim.stuck_prob: 1.5",
				"sensors[0].sim.noise: -1, want ≥ 0", "sensors[0].sim.stuck_for: -1s is negative", "sensors[0].sim.steps[0].at: -1s is negative",
				`sensors[1].sim.preset: "storm" unknown`,
				"sensors[2].sim: not used by type tmp102",
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(decode(t, tt.yaml))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate:\n%v", err)
				}
				return
			}
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("Validate = %v, want Problems", err)
			}
			if len(ps) != len(tt.want) {
				t.Errorf("%d problems, want %d:\n%v", len(ps), len(tt.want), err)
			}
			text := err.Error()
			last := -1
			for _, w := range tt.want {
				i := strings.Index(text, w)
				if i < 0 {
					t.Errorf("no %q in:\n%s", w, text)
					continue
				}
				if i < last {
					t.Errorf("%q out of order in:\n%s", w, text)
				}
				last = i
			}
		})
	}
}

func TestSpecValidate(t *testing.T) {
	err := Spec{Name: "a", Type: TMP102, Addr: 0x90}.Validate()
	if err == nil || err.Error() != "addr: 0x90 is not a 7-bit address" {
		t.Fatalf("Spec.Validate = %v", err)
	}
	if err := (Spec{Name: "a", Type: Sim}).Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestParseSpecs(t *testing.T) {
	specs, err := ParseSpecs([]byte(full))
	if err != nil || len(specs) != 15 {
		t.Fatalf("ParseSpecs(full) = %d specs, %v", len(specs), err)
	}
	for name, y := range map[string]string{
		"unknown key":       `[{name: a, type: sim, colour: red}]`,
		"addr not a number": `[{name: a, type: tmp102, addr: forty}]`,
		"addr too big":      `[{name: a, type: tmp102, addr: 0x10000}]`,
		"addr a list":       `[{name: a, type: tmp102, addr: [1]}]`,
		"interval a number": `[{name: a, type: sim, interval: 10}]`,
		"not a list":        `{name: a}`,
		"invalid":           `[{name: a, type: tmp102, addr: 0x90}]`,
	} {
		if _, err := ParseSpecs([]byte(y)); err == nil {
			t.Errorf("ParseSpecs(%s) succeeded", name)
		}
	}
	if specs, err := ParseSpecs(nil); err != nil || len(specs) != 0 {
		t.Errorf("ParseSpecs(empty) = %v, %v", specs, err)
	}
	// Addresses round-trip as hex.
	b, err := yaml.Marshal(Spec{Name: "a", Type: TMP102, Addr: 0x49})
	if err != nil || !strings.Contains(string(b), "addr: \"0x49\"") {
		t.Errorf("Marshal = %s, %v", b, err)
	}
}

func FuzzParseSpecs(f *testing.F) {
	f.Add([]byte(full))
	f.Add([]byte(`[{name: a, type: tmp102, addr: 0x48}]`))
	f.Add([]byte(`[{name: a, type: sim, sim: {preset: demo-ph, steps: [{at: 1s, size: 2}]}}]`))
	f.Add([]byte(`- {name: x, type: ads1115-ph, input: 3, quantity: voltage, interval: 1h}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		specs, err := ParseSpecs(b)
		if err != nil {
			return
		}
		// What parses is valid, and stays valid with its defaults written out.
		for i := range specs {
			specs[i] = specs[i].WithDefaults()
		}
		if err := Validate(specs); err != nil {
			t.Fatalf("accepted specs fail with defaults applied: %v", err)
		}
		if _, err := yaml.Marshal(specs); err != nil {
			t.Fatalf("marshal: %v", err)
		}
	})
}

// TestREADMEExample keeps the configuration shown in README.md valid.
func TestREADMEExample(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var block []string
	in := false
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, "    sensors:"):
			in = true
		case in && !strings.HasPrefix(l, "    "):
			in = false
		}
		if in {
			block = append(block, strings.TrimPrefix(l, "    "))
		}
	}
	var cfg struct {
		Sensors []Spec `yaml:"sensors"`
	}
	if err := yaml.Unmarshal([]byte(strings.Join(block, "\n")), &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Sensors) != 9 {
		t.Fatalf("README example has %d sensors, want 9", len(cfg.Sensors))
	}
	if err := Validate(cfg.Sensors); err != nil {
		t.Fatalf("README example:\n%v", err)
	}
}
