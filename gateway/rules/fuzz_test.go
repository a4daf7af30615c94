package rules

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzConfig: decoding and validating any YAML never panics; a config that
// validates always builds an engine that runs; every problem has a path.
func FuzzConfig(f *testing.F) {
	f.Add(classicYAML)
	for _, c := range fuzzConfigs {
		f.Add(c)
	}
	f.Add(`{rules: [{name: a, sensors: [t, "u*"], window: {type: hopping, size: 1m, step: 20s}, aggregate: max, raise: ">= 3", clear: "< 1", for: 1s, lateness: 1s, labels: {k: v}, message: "${value}"}]}`)
	f.Add(`{rules: [{name: "", sensors: "[", window: {type: count, count: -1}, raise: "<", clear: "> x"}]}`)
	f.Add("rules:\n  - name: a\n    sensors: t\n    raise: < 1\n    window: {type: tumbling, size: 1ns}\n    aggregate: count\n")
	f.Fuzz(func(t *testing.T, yml string) {
		cfg, err := ParseConfig([]byte(yml))
		if err != nil {
			var ce *ConfigError
			if errors.As(err, &ce) {
				if len(ce.Problems) == 0 {
					t.Fatal("ConfigError without problems")
				}
				for _, p := range ce.Problems {
					if p.Path == "" || p.Msg == "" {
						t.Fatalf("problem without path or message: %+v", p)
					}
				}
			}
			return
		}
		e, err := New(cfg)
		if err != nil {
			t.Fatalf("valid config, New: %v", err)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Validate is not repeatable: %v", err)
		}
		var evs []Event
		for i, s := range []string{"t", "temp-1", "ph-1", "x"} {
			for j := range 20 {
				evs = e.Observe(evs, Reading{Sensor: s, Value: float64(j%7) - 3, Time: t0.Add(time.Duration(i+j*5) * time.Second)})
			}
		}
		evs = e.Advance(evs, t0.Add(time.Hour))
		checkInvariants(t, e, evs)
	})
}

// FuzzEngine feeds random readings and Advance calls (times jumping forward
// and back) through each fuzz config and checks the invariants: a raised
// alert is not raised again before it clears, every clear follows a raise,
// transitions of an alert go forward in event time, each event is a valid
// protocol record, Active agrees with the transitions, and leaving out the
// Advance calls changes nothing.
func FuzzEngine(f *testing.F) {
	f.Add(uint8(0), []byte("\x00\x10\x20\x30\x01\x11\x21\x31\x02\x12\x22\x32"))
	f.Add(uint8(2), []byte(strings.Repeat("\x03\xff\x00\x40\x13\x01\x80\x05", 30)))
	f.Add(uint8(3), []byte(strings.Repeat("\x04\x40\x10\x00\x00\xc0\x01\x10", 30)))
	f.Fuzz(func(t *testing.T, cfg uint8, data []byte) {
		var ops []fuzzOp
		for len(data) >= 4 {
			b := data[:4]
			data = data[4:]
			o := fuzzOp{sensor: int(b[0]%5) - 1}
			// Values mostly near the thresholds, sometimes extreme.
			switch b[1] >> 6 {
			case 3:
				o.v = float64(int8(b[1])) * 1e6
			default:
				o.v = float64(b[1]&0x3f) / 2
			}
			// Time steps from -2.5 s to +10 s, sometimes a long silence.
			u := binary.LittleEndian.Uint16(b[2:])
			o.dt = (time.Duration(u%1250) - 250) * 10 * time.Millisecond
			if b[0]&0xf0 == 0xf0 {
				o.dt = time.Duration(b[3]) * time.Minute
			}
			ops = append(ops, o)
		}
		checkAdvanceInvariance(t, fuzzConfigs[int(cfg)%len(fuzzConfigs)], ops)
	})
}
