package protocol

import (
	"encoding/json"
	"reflect"
	"testing"
)

// The fast path must take what gateways send (else it is dead code that
// the differential fuzz below cannot catch).
func TestDecodeBatchFastTakesGatewayBatches(t *testing.T) {
	v1, v2 := 21.5, -0.25e-3
	for _, bt := range []Batch{
		{V: 1, Records: []Record{{Seq: 1, Kind: KindReading, Time: 1_700_000_000_000, Sensor: "tank-1", Value: &v1, Unit: "°C"}}},
		{V: 1, Records: []Record{
			{Seq: 7, Kind: KindReading, Clock: ClockMono, Boot: "b0a1", MonoMS: 12, Sensor: "ph", Value: &v2},
			{Seq: 9, Kind: KindReading, Time: 5, Sensor: "ph", Value: &v1, Unit: "pH"},
		}},
	} {
		b, err := json.Marshal(bt)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := decodeBatchFast(b)
		if !ok {
			t.Fatalf("fast path refused a gateway batch: %s", b)
		}
		if !reflect.DeepEqual(got, bt) {
			t.Fatalf("fast path decoded\n%s\nas %+v, want %+v", b, got, bt)
		}
	}
	for _, s := range []string{
		`{"v":1,"records":[{"seq":1,"kind":"alert","t":5,"alert":{"rule":"r","state":"raised","value":1}}]}`,
		`{"v":1,"records":[{"seq":1,"kind":"reading","t":5,"sensor":"a\u0062","value":1}]}`,
		`{"v":1,"records":[{"seq":1,"seq":2,"kind":"reading","t":5,"sensor":"a","value":1}]}`,
		`{"v":1,"records":[{"Seq":1,"kind":"reading","t":5,"sensor":"a","value":1}]}`,
		`{"v":1,"records":[{"seq":-1,"kind":"reading","t":5,"sensor":"a","value":1}]}`,
		`{"v":1,"records":[{"seq":1.5,"kind":"reading","t":5,"sensor":"a","value":1}]}`,
		`{"v":1,"records":[{"seq":1,"kind":"reading","t":5,"sensor":"a","value":1e999}]}`,
		`{"v":1,"records":[{"seq":1,"kind":"reading","t":5,"sensor":"a","value":null}]}`,
		`{"v":1,"records":null}`,
		`{"v":1,"records":[]} x`,
		"{\"v\":1,\"records\":[{\"seq\":1,\"kind\":\"reading\",\"t\":5,\"sensor\":\"\xff\",\"value\":1}]}",
	} {
		if _, ok := decodeBatchFast([]byte(s)); ok {
			t.Errorf("fast path took %s; it must leave it to encoding/json", s)
		}
	}
}

// FuzzDecodeBatchFast: whatever the fast path accepts, encoding/json
// decodes to the same Batch.
func FuzzDecodeBatchFast(f *testing.F) {
	f.Add([]byte(`{"v":1,"records":[{"seq":1,"kind":"reading","t":5,"sensor":"a","value":1,"unit":"°C"}]}`))
	f.Add([]byte(` { "v" : 1 , "records" : [ { "seq" : 18446744073709551615 , "t" : -0 , "value" : -0.5E+3 } ] } `))
	f.Add([]byte(`{"records":[{"clock":"mono","boot":"x","mono":4,"sensor":"a","kind":"reading","seq":3,"value":0}],"v":2}`))
	f.Add([]byte(`{"v":1,"records":[{"seq":01,"value":1.}]}`))
	f.Add([]byte(`{"v":9223372036854775808,"records":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := decodeBatchFast(b)
		if !ok {
			return
		}
		var want Batch
		if err := decode(b, &want, "log batch"); err != nil {
			t.Fatalf("fast path accepted what encoding/json refuses (%v): %q", err, b)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("fast path decoded %q as\n%+v\nencoding/json as\n%+v", b, got, want)
		}
	})
}

// BenchmarkDecodeBatch decodes a one-reading batch as a gateway sends it:
// fast path (DecodeBatch) against encoding/json alone.
func BenchmarkDecodeBatch(b *testing.B) {
	p := []byte(`{"v":1,"records":[{"seq":123456,"kind":"reading","t":1700000000000,"sensor":"tank-1-temperature","value":21.5,"unit":"°C"}]}`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodeBatch(p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var bt Batch
			if err := decode(p, &bt, "log batch"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
