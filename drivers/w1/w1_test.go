package w1

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"periph.io/x/conn/v3/onewire"

	"github.com/outpost-iot/outpost/drivers"
)

// slave builds a w1_slave file the way the kernel's w1_therm prints it, for a
// raw 12-bit temperature (1/16 °C), with a correct CRC unless crc is given.
func slave(raw int16, verdict string, crc ...byte) string {
	sp := []byte{byte(raw), byte(uint16(raw) >> 8), 0x4b, 0x46, 0x7f, 0xff, 0x0c, 0x10, 0}
	sp[8] = onewire.CalcCRC(sp[:8])
	if len(crc) > 0 {
		sp[8] = crc[0]
	}
	hex := fmt.Sprintf("% x", sp)
	return fmt.Sprintf("%s : crc=%02x %s\n%s t=%d\n", hex, sp[8], verdict, hex, int(raw)*1000/16)
}

func cause(err error) string {
	var f *drivers.Fault
	if errors.As(err, &f) {
		return f.Cause
	}
	if err != nil {
		return "not a fault: " + err.Error()
	}
	return ""
}

func TestParseSlave(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  int
		cause string
	}{
		{"kernel sample", "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n", 23125, ""},
		{"positive", slave(0x0191, "YES"), 25062, ""},
		{"half a degree", slave(0x0008, "YES"), 500, ""},
		{"negative", slave(-168, "YES"), -10500, ""},
		{"min", slave(-55*16, "YES"), -55000, ""},
		{"max", slave(125*16, "YES"), 125000, ""},
		{"no trailing newline", strings.TrimSuffix(slave(0x0191, "YES"), "\n"), 25062, ""},
		{"crc NO", slave(0x0191, "NO", 0x12), 0, drivers.CauseCRC},
		{"crc YES but wrong", slave(0x0191, "YES", 0x12), 0, drivers.CauseCRC},
		{"power-on 85", slave(85*16, "YES"), 0, drivers.CausePowerOn},
		{"above range", slave(128*16, "YES"), 0, drivers.CauseOutOfRange},
		{"below range", slave(-56*16, "YES"), 0, drivers.CauseOutOfRange},
		{"all zeros", "00 00 00 00 00 00 00 00 00 : crc=00 YES\n00 00 00 00 00 00 00 00 00 t=0\n", 0, drivers.CauseMissing},
		{"all ones", "ff ff ff ff ff ff ff ff ff : crc=c9 NO\nff ff ff ff ff ff ff ff ff t=-62\n", 0, drivers.CauseMissing},
		{"empty", "", 0, drivers.CauseIO},
		{"one line", "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n", 0, drivers.CauseIO},
		{"no crc", "72 01 4b 46 7f ff 0e 10 57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n", 0, drivers.CauseIO},
		{"no verdict", "72 01 4b 46 7f ff 0e 10 57 : crc=57\n72 01 4b 46 7f ff 0e 10 57 t=23125\n", 0, drivers.CauseIO},
		{"odd verdict", "72 01 4b 46 7f ff 0e 10 57 : crc=57 MAYBE\n72 01 4b 46 7f ff 0e 10 57 t=23125\n", 0, drivers.CauseIO},
		{"short scratchpad", "72 01 4b : crc=57 YES\n72 01 4b t=23125\n", 0, drivers.CauseIO},
		{"bad hex", "72 01 4b 46 7f ff 0e 10 zz : crc=57 YES\n72 t=23125\n", 0, drivers.CauseIO},
		{"no t=", "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57\n", 0, drivers.CauseIO},
		{"bad t", "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=2x\n", 0, drivers.CauseIO},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSlave([]byte(tt.in))
			if c := cause(err); c != tt.cause {
				t.Fatalf("ParseSlave: cause %q, want %q (err %v)", c, tt.cause, err)
			}
			if err == nil && got != tt.want {
				t.Fatalf("ParseSlave = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestParseTemperature(t *testing.T) {
	tests := []struct {
		in    string
		want  int
		cause string
	}{
		{"23125\n", 23125, ""},
		{"-1250", -1250, ""},
		{"85000\n", 0, drivers.CausePowerOn},
		{"-56000\n", 0, drivers.CauseOutOfRange},
		{"125001", 0, drivers.CauseOutOfRange},
		{"", 0, drivers.CauseIO},
		{"hot", 0, drivers.CauseIO},
	}
	for _, tt := range tests {
		got, err := ParseTemperature([]byte(tt.in))
		if c := cause(err); c != tt.cause {
			t.Errorf("ParseTemperature(%q): cause %q, want %q", tt.in, c, tt.cause)
		}
		if err == nil && got != tt.want {
			t.Errorf("ParseTemperature(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// fakeSysfs lays out a w1 devices directory: id → files.
func fakeSysfs(t *testing.T, devs map[string]map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for id, files := range devs {
		if err := os.Mkdir(filepath.Join(root, id), 0o755); err != nil {
			t.Fatal(err)
		}
		for name, body := range files {
			if err := os.WriteFile(filepath.Join(root, id, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

func TestScan(t *testing.T) {
	root := fakeSysfs(t, map[string]map[string]string{
		"28-0316a2797aff":     {FileSlave: slave(0x0191, "YES")},
		"28-00000a1b2c3d":     {FileTemperature: "21000\n"},
		"10-000802b4f1a2":     {}, // DS18S20: not ours
		"w1_bus_master1":      {},
		"28-0316A2797AFF":     {}, // the kernel prints lowercase; ignore others
		"28-0316a2797aff.bak": {},
	})
	got, err := Scan(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"28-00000a1b2c3d", "28-0316a2797aff"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Scan = %v, want %v", got, want)
	}
	if _, err := Scan(filepath.Join(root, "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Scan(missing root) = %v, want ErrNotExist", err)
	}
}

func TestDev(t *testing.T) {
	const (
		a = "28-0316a2797aff" // w1_slave
		b = "28-00000a1b2c3d" // temperature only
		c = "28-0000000000c0" // both, bad CRC in w1_slave
	)
	root := fakeSysfs(t, map[string]map[string]string{
		a: {FileSlave: slave(0x0191, "YES")},
		b: {FileTemperature: "-1250\n"},
		c: {FileSlave: slave(0x0191, "NO", 0), FileTemperature: "25062\n"},
	})
	ctx := context.Background()
	tests := []struct {
		id, file string
		want     float64
		cause    string
	}{
		{a, "", 25.062, ""},
		{b, "", -1.25, ""},
		{c, "", 0, drivers.CauseCRC},
		{c, FileTemperature, 25.062, ""},
		{b, FileSlave, 0, drivers.CauseIO},
	}
	for _, tt := range tests {
		t.Run(tt.id+"/"+tt.file, func(t *testing.T) {
			d, err := New(root, tt.id, &Opts{File: tt.file})
			if err != nil {
				t.Fatal(err)
			}
			got, err := d.Sense(ctx)
			if cs := cause(err); cs != tt.cause {
				t.Fatalf("Sense: cause %q, want %q (%v)", cs, tt.cause, err)
			}
			if err == nil && got != tt.want {
				t.Fatalf("Sense = %v, want %v", got, tt.want)
			}
		})
	}

	d, err := New(root, a, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.Name() != a || d.Quantity() != drivers.Temperature || d.ID() != a {
		t.Fatalf("Name/Quantity/ID = %q %q %q", d.Name(), d.Quantity(), d.ID())
	}
	// The probe is unplugged: the kernel removes its directory.
	if err := os.RemoveAll(filepath.Join(root, a)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Sense(ctx); cause(err) != drivers.CauseMissing {
		t.Fatalf("Sense after unplug = %v, want missing", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := d.Sense(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sense(cancelled) = %v", err)
	}
}

func TestNew(t *testing.T) {
	root := fakeSysfs(t, map[string]map[string]string{"28-0316a2797aff": {}})
	tests := []struct {
		id, file string
		missing  bool
	}{
		{"28-0316a2797aff", "", false},
		{"28-000000000001", "", true},
		{"10-0316a2797aff", "", false},
		{"28-0316a2797af", "", false},
		{"28-0316a2797aff", "w1_master", false},
	}
	for _, tt := range tests {
		d, err := New(root, tt.id, &Opts{File: tt.file, Name: "tank"})
		if tt.id == "28-0316a2797aff" && tt.file == "" {
			if err != nil || d.Name() != "tank" {
				t.Errorf("New(%q) = %v, %v", tt.id, d, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("New(%q, %q) succeeded", tt.id, tt.file)
			continue
		}
		if got := cause(err) == drivers.CauseMissing; got != tt.missing {
			t.Errorf("New(%q): missing fault = %v, want %v (%v)", tt.id, got, tt.missing, err)
		}
		if !strings.HasPrefix(err.Error(), "w1: ") {
			t.Errorf("New(%q): error %q lacks the w1: prefix", tt.id, err)
		}
	}
}

func FuzzParseSlave(f *testing.F) {
	f.Add([]byte(slave(0x0191, "YES")))
	f.Add([]byte(slave(85*16, "YES")))
	f.Add([]byte(slave(-168, "NO", 1)))
	f.Add([]byte("00 00 00 00 00 00 00 00 00 : crc=00 YES\n00 00 00 00 00 00 00 00 00 t=0\n"))
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseSlave(b)
		if err != nil {
			if cause(err) == "" || strings.HasPrefix(cause(err), "not a fault") {
				t.Fatalf("error is not a fault: %v", err)
			}
			return
		}
		if v < minMilliC || v > maxMilliC || v == powerOnMilliC {
			t.Fatalf("accepted %d", v)
		}
	})
}
