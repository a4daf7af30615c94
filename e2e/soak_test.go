package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/outpost-iot/outpost/certs"
	"github.com/outpost-iot/outpost/internal/mqtttest"
	"github.com/outpost-iot/outpost/internal/protocol"
)

// BenchmarkGatewaySoak runs the real (non-race) gateway binary with 20
// simulated sensors at 10 Hz against the real hub and reports the issue's
// gateway figures: RSS, CPU and disk bytes per reading, reading-to-stored
// latency, and the catch-up rate after an outage while new readings stay
// current. Run it once: go test -run '^$' -bench GatewaySoak -benchtime 1x ./e2e
// (OUTPOST_SOAK_SECONDS and OUTPOST_SOAK_OUTAGE tune the phases).
func BenchmarkGatewaySoak(b *testing.B) {
	steady := envDuration("OUTPOST_SOAK_SECONDS", 30*time.Second)
	outage := envDuration("OUTPOST_SOAK_OUTAGE", 60*time.Second)
	dir := b.TempDir()
	bins := filepath.Join(dir, "bin")
	// Built as make cross builds what ships to a Pi: static, stripped.
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bins+"/", "../cmd/outpost-hub", "../cmd/outpost-gateway", "../cmd/outpostctl")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		b.Fatal(err)
	}
	old := binDir
	binDir = bins
	defer func() { binDir = old }()

	mqttAddr, httpAddr := freePort(b), freePort(b)
	h := startHub(b, filepath.Join(dir, "hub"), mqttAddr, httpAddr)
	px := newProxy(b, mqttAddr)

	// Observer: sees every log batch after the hub stored it.
	obsTok := strings.TrimSpace(h.ctl(b, "token", "issue", "--device", "observer", "--sub", "outpost/v1/d/+/log", "--ttl", "24h"))
	tc, _ := certs.ClientTLS(filepath.Join(h.dir, "pki", "ca.crt"))
	var mu sync.Mutex
	type arrival struct {
		t, at int64
	}
	var arrivals []arrival
	obs, err := mqtttest.Dial(context.Background(), mqttAddr, "observer", obsTok, mqtttest.Options{TLS: tc, OnPublish: func(p *paho.Publish) {
		now := time.Now().UnixMilli()
		var bt protocol.Batch
		if json.Unmarshal(p.Payload, &bt) != nil {
			return
		}
		mu.Lock()
		for _, r := range bt.Records {
			if r.Kind == protocol.KindReading {
				arrivals = append(arrivals, arrival{r.Time, now})
			}
		}
		mu.Unlock()
	}})
	if err != nil {
		b.Fatal(err)
	}
	defer obs.Disconnect(&paho.Disconnect{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err = obs.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "outpost/v1/d/+/log", QoS: 0}}})
	cancel()
	if err != nil {
		b.Fatal(err)
	}

	g := newGateway(b, h, "soak", px.addr())
	var sb strings.Builder
	fmt.Fprintf(&sb, "device_id: soak\ndata_dir: %s\nhub: {address: %s, ca: %s, token_file: %s}\nclock: {source: system}\nsensors:\n",
		filepath.Join(g.dir, "data"), px.addr(), filepath.Join(h.dir, "pki", "ca.crt"), filepath.Join(g.dir, "token"))
	for i := 0; i < 20; i++ {
		fmt.Fprintf(&sb, "  - {name: temp-%02d, type: sim, quantity: temperature, interval: 100ms, sim: {seed: %d, base: 20, noise: 0.3}}\n", i, i+1)
	}
	sb.WriteString("rules:\n  lateness: 2s\n  rules:\n" +
		"    - {name: temperature-low, sensors: temp-*, raise: \"< 10\", clear: \"> 10.5\"}\n" +
		"    - {name: temperature-jump, sensors: temp-*, kind: rate, rate: {per: reading, direction: any}, raise: \"> 5\"}\n" +
		"    - {name: temperature-avg, sensors: temp-*, window: {type: tumbling, size: 1m}, aggregate: avg, raise: \"> 30\", clear: \"< 29\"}\n")
	if err := os.WriteFile(g.cfg, []byte(sb.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	g.start(b)
	time.Sleep(5 * time.Second) // warm up: connection, first commits
	// Measure the worker (the supervisor's child), where the work happens.
	tree := processTree(g.p.cmd.Process.Pid)
	pid := tree[len(tree)-1]
	b.ResetTimer()

	// Steady state.
	mu.Lock()
	arrivals = arrivals[:0]
	mu.Unlock()
	s0 := procStats(b, pid)
	time.Sleep(steady)
	s1 := procStats(b, pid)
	mu.Lock()
	steadyArr := append([]arrival(nil), arrivals...)
	arrivals = arrivals[:0]
	mu.Unlock()
	n := float64(len(steadyArr))
	if n == 0 {
		b.Fatal("no readings arrived")
	}
	lat := make([]float64, len(steadyArr))
	for i, a := range steadyArr {
		lat[i] = float64(a.at - a.t)
	}
	b.ReportMetric(n/steady.Seconds(), "readings/s")
	b.ReportMetric(float64(s1.rssKB)/1024, "RSS_MiB")
	b.ReportMetric(float64(s1.hwmKB)/1024, "peakRSS_MiB")
	b.ReportMetric(float64(s1.cpuUS-s0.cpuUS)/n, "CPU_µs/reading")
	b.ReportMetric(float64(s1.writeBytes-s0.writeBytes)/n, "diskB/reading")
	b.ReportMetric(pct(lat, 50), "p50_ms")
	b.ReportMetric(pct(lat, 99), "p99_ms")

	// Outage, then catch-up while new readings keep flowing.
	px.cut()
	time.Sleep(outage)
	restored := time.Now().UnixMilli()
	px.restore()
	deadline := time.Now().Add(outage*3 + 60*time.Second)
	var backlog, fresh []arrival
	for time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		mu.Lock()
		backlog, fresh = backlog[:0], fresh[:0]
		for _, a := range arrivals {
			if a.t < restored {
				backlog = append(backlog, a)
			} else {
				fresh = append(fresh, a)
			}
		}
		mu.Unlock()
		expect := int(outage.Seconds() * 200 * 0.95)
		if len(backlog) >= expect {
			break
		}
	}
	if len(backlog) == 0 {
		b.Fatal("no backlog arrived after the outage")
	}
	last := int64(0)
	for _, a := range backlog {
		last = max(last, a.at)
	}
	drain := float64(last-restored) / 1000
	b.ReportMetric(float64(len(backlog))/drain, "catchup_readings/s")
	fl := make([]float64, 0, len(fresh))
	for _, a := range fresh {
		if a.at <= last {
			fl = append(fl, float64(a.at-a.t))
		}
	}
	if len(fl) > 0 {
		b.ReportMetric(pct(fl, 99), "new_p99_ms_during_catchup")
	}
	g.p.stop(b)
}

type stats struct {
	rssKB, hwmKB, cpuUS, writeBytes int64
}

func procStats(b *testing.B, pid int) stats {
	var s stats
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(st), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "VmRSS:" {
			s.rssKB, _ = strconv.ParseInt(f[1], 10, 64)
		}
		if len(f) >= 2 && f[0] == "VmHWM:" {
			s.hwmKB, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	sc, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	fs := strings.Fields(string(sc)[strings.LastIndexByte(string(sc), ')')+2:])
	ut, _ := strconv.ParseInt(fs[11], 10, 64)
	stt, _ := strconv.ParseInt(fs[12], 10, 64)
	s.cpuUS = (ut + stt) * 10000 // USER_HZ = 100
	io, _ := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	// Bytes sent to the disk: write_bytes less the dirty page cache that
	// was dropped before writeback (the outbox journal, emptied each commit).
	for _, l := range strings.Split(string(io), "\n") {
		if v, ok := strings.CutPrefix(l, "write_bytes: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			s.writeBytes += n
		}
		if v, ok := strings.CutPrefix(l, "cancelled_write_bytes: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			s.writeBytes -= n
		}
	}
	return s
}

func pct(v []float64, p float64) float64 {
	sort.Float64s(v)
	i := int(float64(len(v)-1) * p / 100)
	return v[i]
}

func envDuration(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}
