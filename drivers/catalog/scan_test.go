package catalog

import (
	"fmt"
	"strings"
	"testing"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2ctest"
	"periph.io/x/conn/v3/onewire"
	"periph.io/x/conn/v3/onewire/onewiretest"
)

// TestScan replays a bus holding an MCP9808 (0x18), a DS2482 with one probe
// (0x19), an ADS1115 (0x48), a TMP102 (0x49), an unknown chip (0x4a), an
// EZO-pH (0x63) and a BME280 (0x76). Addresses with nothing there get no
// recorded answer: the playback refuses those transactions, as a NACK would.
func TestScan(t *testing.T) {
	bus := &i2ctest.Playback{DontPanic: true, Ops: join(
		[]i2ctest.IO{
			{Addr: 0x18, W: []byte{0x06}, R: []byte{0x00, 0x54}},
			{Addr: 0x18, W: []byte{0x07}, R: []byte{0x04, 0x00}},
			{Addr: 0x19, W: []byte{0xf0}},
			{Addr: 0x19, W: []byte{0xe1, 0xf0}, R: []byte{0x18}},
			adsProbe(0x48),
			{Addr: 0x49, W: []byte{0x03}, R: []byte{0x50, 0x00}},
			{Addr: 0x49, W: []byte{0x01}, R: []byte{0x60, 0xa0}},
			{Addr: 0x49, W: []byte{0x01}, R: []byte{0x60, 0xa0}},
			{Addr: 0x4a, W: []byte{0x03}, R: []byte{0x12, 0x30}},
			{Addr: 0x4a, W: []byte{0x01}, R: []byte{0x00, 0x00}},
			{Addr: 0x4a, W: []byte{0x01}, R: []byte{0x00, 0x00}},
		},
		ezo("i", "?i,pH,2.16"),
		[]i2ctest.IO{{Addr: 0x76, W: []byte{0xd0}, R: []byte{0x60}}},
	)}
	probes := []onewire.Address{rom, 0x0000000000000010} // a DS18B20 and a DS18S20
	var b [8]byte
	for i, a := range probes {
		for j := range b {
			b[j] = byte(a >> (8 * j))
		}
		probes[i] = onewire.Address(onewire.CalcCRC(b[:7]))<<56 | a&0x00ffffffffffffff
	}
	ow := &onewiretest.Playback{Devices: probes, Ops: []onewiretest.IO{{W: []byte{0xf0}}, {W: []byte{0xf0}}}}
	env := Env{
		I2CBuses: []string{"1", "7"},
		I2C: func(name string) (i2c.Bus, error) {
			if name != "1" {
				return nil, fmt.Errorf("open /dev/i2c-%s: no such file or directory", name)
			}
			return bus, nil
		},
		OneWire: func(string, uint16) (onewire.Bus, error) { return ow, nil },
		W1Root:  w1Root(t),
		Tune:    fast,
	}
	found, err := Scan(env)
	if err == nil || !strings.Contains(err.Error(), "scan bus 7") {
		t.Errorf("Scan error = %v, want bus 7 to fail", err)
	}
	want := []string{
		"i2c-1 0x18 MCP9808 (type mcp9808)",
		"i2c-1 0x19 DS2482",
		"i2c-1 0x19 DS18B20 28-0000070e41ac (type ds2482-ds18b20)",
		"i2c-1 0x48 ADS1115 (type ads1115-ph)",
		"i2c-1 0x49 TMP102 (type tmp102)",
		"i2c-1 0x4a unknown: neither an ADS1115 nor a TMP102",
		"i2c-1 0x63 EZO-pH (type ezo-ph): firmware 2.16",
		"i2c-1 0x76 BME280 (type bme280)",
		"w1 DS18B20 28-0316a2797aff (type w1-ds18b20)",
	}
	var got []string
	for _, f := range found {
		got = append(got, f.String())
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Scan found:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err := bus.Close(); err != nil {
		t.Error(err)
	}
	if err := ow.Close(); err != nil {
		t.Error(err)
	}

	// The suggested Specs are a valid configuration.
	var specs []Spec
	for _, f := range found {
		if s, ok := f.Spec(); ok {
			specs = append(specs, s)
		}
	}
	if len(specs) != 7 {
		t.Errorf("%d suggested specs, want 7", len(specs))
	}
	if err := Validate(specs); err != nil {
		t.Errorf("suggested specs are invalid:\n%v", err)
	}
}

func TestScanNothing(t *testing.T) {
	found, err := Scan(Env{
		I2C:    func(string) (i2c.Bus, error) { return &i2ctest.Playback{DontPanic: true}, nil },
		W1Root: t.TempDir() + "/none",
		Tune:   fast,
	})
	if err != nil || len(found) != 0 {
		t.Fatalf("Scan(empty) = %v, %v", found, err)
	}
	if _, err := Scan(Env{W1Root: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "no I²C bus opener") {
		t.Fatalf("Scan without I2C = %v", err)
	}
}

func TestFoundSpec(t *testing.T) {
	tests := []struct {
		f    Found
		name string
		ok   bool
	}{
		{Found{Bus: "1", Addr: 0x48, Chip: "ADS1115", Type: ADS1115PH}, "ads1115-1-48-a0", true},
		{Found{Bus: "1", Addr: 0x77, Chip: "BMP280", Type: BME280}, "bme280-1-77", true},
		{Found{Bus: BusW1, Chip: "DS18B20", Type: W1DS18B20, ROM: "28-0316a2797aff"}, "ds18b20-0316a2797aff", true},
		{Found{Bus: "1", Addr: 0x18, Chip: "DS2482"}, "", false},
	}
	for _, tt := range tests {
		s, ok := tt.f.Spec()
		if ok != tt.ok || s.Name != tt.name {
			t.Errorf("%v.Spec() = %q, %v; want %q, %v", tt.f, s.Name, ok, tt.name, tt.ok)
		}
	}
}
