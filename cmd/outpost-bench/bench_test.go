package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/certs"
)

func TestParseStatCPU(t *testing.T) {
	// comm may contain spaces and parentheses.
	stat := "4242 (outpost hub (x)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 100 1000 200 18446744073709551615\n"
	d, err := parseStatCPU([]byte(stat))
	if err != nil || d != 3250*time.Millisecond {
		t.Fatalf("parseStatCPU = %v, %v; want 3.25s (utime 250 + stime 75 ticks)", d, err)
	}
	if _, err := parseStatCPU([]byte("4242 (x) S 1 2")); err == nil {
		t.Fatal("short stat accepted")
	}
	// Our own process: a real file, a plausible value.
	if d, err := cpuTime(os.Getpid()); err != nil || d < 0 {
		t.Fatalf("cpuTime(self) = %v, %v", d, err)
	}
}

func TestParseVmRSS(t *testing.T) {
	n, err := parseVmRSS([]byte("Name:\thub\nVmPeak:\t  9999 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n"))
	if err != nil || n != 20480<<10 {
		t.Fatalf("parseVmRSS = %d, %v", n, err)
	}
	if _, err := parseVmRSS([]byte("Name:\tx\n")); err == nil {
		t.Fatal("status without VmRSS accepted")
	}
	if n, err := rssBytes(os.Getpid()); err != nil || n <= 0 {
		t.Fatalf("rssBytes(self) = %d, %v", n, err)
	}
}

func TestParseMetric(t *testing.T) {
	body := "# HELP outpost_store_records_total Log records newly stored.\n# TYPE outpost_store_records_total counter\n" +
		"outpost_store_records_total 12345\noutpost_store_records_totally 1\n" + `outpost_mqtt_acl_denied_total{action="publish"} 2` + "\n"
	if v, err := parseMetric(strings.NewReader(body), "outpost_store_records_total"); err != nil || v != 12345 {
		t.Fatalf("parseMetric = %v, %v", v, err)
	}
	if _, err := parseMetric(strings.NewReader(body), "outpost_nothing"); err == nil {
		t.Fatal("missing metric found")
	}
}

func TestParseIngest(t *testing.T) {
	out := `goos: linux
BenchmarkIngest/devices=1-2         	   20000	    302711 ns/op	      3303 rows/s	         1.000 rows/commit
BenchmarkIngest/devices=10-2        	   20000	     90953 ns/op	     10994 rows/s	         7.200 rows/commit
BenchmarkIngest/devices=100         	   20000	    102172 ns/op	      9787 rows/s	        36.00 rows/commit
PASS
`
	rows, err := parseIngest(out)
	if err != nil || len(rows) != 3 {
		t.Fatalf("parseIngest = %+v, %v", rows, err)
	}
	if rows[1].name != "Ingest/devices=10" || rows[1].rowsPerSec != 10994 || rows[1].rowsPerCommit != 7.2 || rows[2].name != "Ingest/devices=100" {
		t.Fatalf("rows = %+v", rows)
	}
	if _, err := parseIngest("BenchmarkIngest/devices=1-2  20000  302711 ns/op\n"); err == nil {
		t.Fatal("a line without rows/s accepted")
	}
}

func TestReadSSE(t *testing.T) {
	stream := ": outpost events\n\nevent: presence\ndata: {\"device\":\"a\"}\n\n: ping\n\ndata: x\ndata: y\n\nevent: half"
	var got []sseEvent
	if err := readSSE(strings.NewReader(stream), func(e sseEvent) { got = append(got, e) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].typ != "presence" || got[0].data != `{"device":"a"}` || got[1].typ != "message" || got[1].data != "x\ny" {
		t.Fatalf("events = %+v", got)
	}
}

func TestMedian(t *testing.T) {
	cases := []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}}
	for _, c := range cases {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	in := []float64{3, 1, 2}
	median(in)
	if in[0] != 3 {
		t.Fatal("median reordered its input")
	}
}

func TestMosquittoConfig(t *testing.T) {
	p := certs.PathsIn("/tmp/pki")
	c := mosquittoConfig(18883, p)
	for _, want := range []string{"listener 18883 127.0.0.1\n", "cafile /tmp/pki/ca.crt\n", "certfile " + p.ServerCert + "\n",
		"keyfile " + p.ServerKey + "\n", "allow_anonymous true\n", "persistence false\n"} {
		if !strings.Contains(c, want) {
			t.Errorf("config lacks %q:\n%s", want, c)
		}
	}
}

func TestParseFlags(t *testing.T) {
	if b, err := parseBrokers("mosquitto, hub,hub"); err != nil || strings.Join(b, ",") != "mosquitto,hub" {
		t.Fatalf("parseBrokers = %v, %v", b, err)
	}
	if b, err := parseBrokers("mochi,hub"); err != nil || strings.Join(b, ",") != "mochi,hub" {
		t.Fatalf("parseBrokers = %v, %v", b, err)
	}
	if _, err := parseBrokers("emqx"); err == nil {
		t.Fatal("unknown broker accepted")
	}
	if c, err := parseCases("qos0,qos1"); err != nil || len(c) != 2 || c[0].qos != 0 || c[1].subQoS != 1 {
		t.Fatalf("parseCases = %+v, %v", c, err)
	}
	if _, err := parseCases("qos2"); err == nil {
		t.Fatal("unknown case accepted")
	}
	if n, err := parseInts("5000, 10000"); err != nil || len(n) != 2 || n[1] != 10000 {
		t.Fatalf("parseInts = %v, %v", n, err)
	}
	if _, err := parseInts("0"); err == nil {
		t.Fatal("0 connections accepted")
	}
}

func TestTable(t *testing.T) {
	tb := table{head: []string{"a", "b"}}
	tb.add("1", "2")
	if got := tb.String(); got != "| a | b |\n|---|---|\n| 1 | 2 |\n" {
		t.Fatalf("table = %q", got)
	}
}
