package protocol

import (
	"encoding/json"
	"math"
	"testing"
)

func TestAppendRecordJSONTakesGatewayReadings(t *testing.T) {
	v1, v2, v3 := 21.5, -3e-7, 1e21
	for _, r := range []Record{
		{Seq: 1, Kind: KindReading, Time: 1_700_000_000_000, Sensor: "tank-1", Value: &v1, Unit: "°C"},
		{Seq: 2, Kind: KindReading, Clock: ClockMono, Boot: "b0", MonoMS: 5, Sensor: "ph", Value: &v2},
		{Seq: 3, Kind: KindReading, Time: 9, Sensor: "x", Value: &v3, Unit: "pH"},
	} {
		got, ok := AppendRecordJSON(nil, &r)
		want, _ := json.Marshal(&r)
		if !ok || string(got) != string(want) {
			t.Fatalf("AppendRecordJSON = %s, %v; json.Marshal = %s", got, ok, want)
		}
	}
	for _, r := range []Record{
		{Seq: 1, Kind: KindAlert, Alert: &Alert{Rule: "r"}},
		{Seq: 1, Kind: KindReading, Sensor: "a<b"},
		{Seq: 1, Kind: KindReading, Sensor: "a\u2028"},
		{Seq: 1, Kind: KindReading, Sensor: "\xff"},
	} {
		if b, ok := AppendRecordJSON([]byte("x"), &r); ok || string(b) != "x" {
			t.Errorf("took %+v (%s); it must leave it to json.Marshal", r, b)
		}
	}
}

// FuzzAppendRecordJSON: whatever the fast encoder takes, it encodes as
// json.Marshal does.
func FuzzAppendRecordJSON(f *testing.F) {
	f.Add(uint64(1), "reading", int64(5), "", "", int64(0), "tank", 21.5, true, "°C")
	f.Add(uint64(9), "fault", int64(-1), "mono", "b", int64(3), "a&b", 1e-7, true, "")
	f.Add(uint64(0), "", int64(0), "x\"", "", int64(0), "", math.Inf(1), false, "\u2029")
	f.Fuzz(func(t *testing.T, seq uint64, kind string, tm int64, clock, boot string, mono int64, sensor string, v float64, hasV bool, unit string) {
		r := Record{Seq: seq, Kind: kind, Time: tm, Clock: clock, Boot: boot, MonoMS: mono, Sensor: sensor, Unit: unit}
		if hasV {
			r.Value = &v
		}
		got, ok := AppendRecordJSON(nil, &r)
		if !ok {
			return
		}
		want, err := json.Marshal(&r)
		if err != nil || string(got) != string(want) {
			t.Fatalf("AppendRecordJSON = %s; json.Marshal = %s, %v", got, want, err)
		}
	})
}

// BenchmarkAppendRecordJSON encodes a reading as the hub stores it: the
// fast encoder against json.Marshal.
func BenchmarkAppendRecordJSON(b *testing.B) {
	v := 21.5
	r := Record{Seq: 123456, Kind: KindReading, Time: 1_700_000_000_000, Sensor: "tank-1-temperature", Value: &v, Unit: "°C"}
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf, _ = AppendRecordJSON(buf[:0], &r)
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(&r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
