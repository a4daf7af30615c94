package gateway

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/outpost-iot/outpost/certs"
	"github.com/outpost-iot/outpost/drivers/catalog"
	"github.com/outpost-iot/outpost/gateway/rules"
	"github.com/outpost-iot/outpost/hub"
	"github.com/outpost-iot/outpost/hub/token"
	"github.com/outpost-iot/outpost/internal/mqtttest"
	"github.com/outpost-iot/outpost/internal/protocol"
)

func startHub(t *testing.T, mut ...func(*hub.Config)) (*hub.Hub, hub.Addresses) {
	t.Helper()
	cfg := hub.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.MQTT.Listen, cfg.HTTP.Listen = "127.0.0.1:0", "127.0.0.1:0"
	for _, m := range mut {
		m(&cfg)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	h, err := hub.New(context.Background(), cfg, log, "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = h.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return h, h.Addrs()
}

func gatewayConfig(t *testing.T, a hub.Addresses, id, tok string) Config {
	t.Helper()
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokFile, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.DeviceID, cfg.DataDir = id, filepath.Join(dir, "data")
	cfg.Hub = HubConfig{Address: a.MQTT, CA: a.CAFile, TokenFile: tokFile, KeepAlive: 5 * time.Second, Heartbeat: time.Second, BatchSize: 100, BacklogRate: 2000}
	cfg.Outbox.FlushInterval = 100 * time.Millisecond
	cfg.Clock.Source = "system"
	cfg.Sensors = []catalog.Spec{{Name: "temp-a", Type: catalog.Sim, Quantity: "temperature", Interval: 100 * time.Millisecond, Sim: &catalog.SimSpec{Seed: 1}}}
	return cfg
}

func runGateway(t *testing.T, cfg Config) (*Gateway, func()) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	g, err := New(context.Background(), cfg, log, "1.0.0-test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("gateway Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return g, stop
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s", within, what)
}

// The token is refreshed over MQTT before it expires, saved to the token
// file, and the connection outlives the original token.
func TestTokenRefreshKeepsTheConnection(t *testing.T) {
	h, a := startHub(t)
	pub, sub := protocol.GatewayGrants("gw-r")
	tok, orig, err := h.Issue(context.Background(), token.Request{Device: "gw-r", Pub: pub, Sub: sub, TTL: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cfg := gatewayConfig(t, a, "gw-r", tok)
	g, _ := runGateway(t, cfg)
	waitFor(t, 10*time.Second, "token file replaced", func() bool {
		b, _ := os.ReadFile(cfg.Hub.TokenFile)
		return strings.TrimSpace(string(b)) != tok
	})
	// The live connection now runs on the fresh token: revoking the original
	// cuts nothing (the hub would cut it at the original expiry otherwise).
	if _, n, err := h.Revoke(context.Background(), orig.ID); err != nil || n != 0 {
		t.Fatalf("revoking the replaced token cut %d connections (%v)", n, err)
	}
	time.Sleep(500 * time.Millisecond)
	d, err := h.Store().Device(context.Background(), "gw-r")
	if err != nil || d.State != "online" || d.Reason != "connected" {
		t.Fatalf("device after the original token's expiry: %+v, %v", d, err)
	}
	if g.up.Stats().Connects != 1 {
		t.Fatalf("reconnected %d times: the refresh should not need a reconnect", g.up.Stats().Connects)
	}
}

// Garbage from the hub on the device's own topics is logged and ignored:
// the gateway keeps delivering.
func TestMalformedMessagesFromHubAreHarmless(t *testing.T) {
	h, a := startHub(t)
	pub, sub := protocol.GatewayGrants("gw-m")
	tok, _, err := h.Issue(context.Background(), token.Request{Device: "gw-m", Pub: pub, Sub: sub, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	g, _ := runGateway(t, gatewayConfig(t, a, "gw-m", tok))
	waitFor(t, 10*time.Second, "connected", func() bool { return g.up.Stats().Connected })

	evilTok, _, err := h.Issue(context.Background(), token.Request{Device: "evil", Pub: []string{"outpost/v1/d/gw-m/in/#"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	tc, _ := certs.ClientTLS(a.CAFile)
	c, err := mqtttest.Dial(context.Background(), a.MQTT, "evil", evilTok, mqtttest.Options{TLS: tc})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, m := range []struct{ topic, payload string }{
		{"outpost/v1/d/gw-m/in/token", "not json"},
		{"outpost/v1/d/gw-m/in/token", `{"v":1,"token":"x.y.z","exp":1}`}, // no matching request
		{"outpost/v1/d/gw-m/in/ota", "\x00\xff garbage"},
		{"outpost/v1/d/gw-m/in/whatever", strings.Repeat("A", 100000)},
	} {
		if _, err := c.Publish(ctx, &paho.Publish{Topic: m.topic, QoS: 1, Payload: []byte(m.payload)}); err != nil {
			t.Fatal(err)
		}
	}
	before := g.up.Stats().Published
	waitFor(t, 10*time.Second, "delivery goes on", func() bool { return g.up.Stats().Published > before+10 })
	if b, _ := os.ReadFile(g.cfg.Hub.TokenFile); strings.Contains(string(b), "x.y.z") {
		t.Fatal("an unsolicited token response replaced the device token")
	}
	if st := g.up.Stats(); !st.Connected || st.Connects != 1 {
		t.Fatalf("uplink after garbage: %+v", st)
	}
}

func TestFixClockTurnsBootTimeIntoWallTime(t *testing.T) {
	g := &Gateway{clock: &Clock{source: "ntp", boot: "b1", start: time.Now(), bootMono: time.Hour, synced: func() bool { return true }}}
	r := protocol.Record{Seq: 1, Kind: protocol.KindReading, Clock: protocol.ClockMono, Boot: "b1",
		MonoMS: (time.Hour - 10*time.Second).Milliseconds(), Sensor: "t"}
	g.fixClock(&r)
	if r.Clock != "" || r.Boot != "" {
		t.Fatalf("record not converted: %+v", r)
	}
	if d := time.Since(time.UnixMilli(r.Time)); d < 9*time.Second || d > 12*time.Second {
		t.Fatalf("converted time is %v ago, want ≈10 s", d)
	}
	other := protocol.Record{Seq: 2, Kind: protocol.KindReading, Clock: protocol.ClockMono, Boot: "old-boot", MonoMS: 5, Sensor: "t"}
	g.fixClock(&other)
	if other.Clock != protocol.ClockMono || other.Time != 0 {
		t.Fatal("a record of another boot got a wall time it cannot know")
	}
	unsynced := &Gateway{clock: &Clock{source: "ntp", boot: "b1", start: time.Now(), synced: func() bool { return false }}}
	r2 := protocol.Record{Clock: protocol.ClockMono, Boot: "b1", MonoMS: 5}
	unsynced.fixClock(&r2)
	if r2.Clock != protocol.ClockMono {
		t.Fatal("converted while the clock is not synchronised")
	}
	if at, wall := unsynced.clock.Now(); wall || at.Before(MonoEpoch) {
		t.Fatalf("unsynced Now = %v, %v", at, wall)
	}
}

func TestGPIOActionFollowsAlerts(t *testing.T) {
	pin := &gpiotest.Pin{N: "GPIO_TEST_RELAY", Num: 900}
	if err := gpioreg.Register(pin); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gpioreg.Unregister(pin.N) }) // -count=N registers it again
	a, err := newActions([]Action{{Rule: "low", GPIO: "GPIO_TEST_RELAY"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	level := func() gpio.Level { return pin.Read() }
	if level() != gpio.Low {
		t.Fatal("relay must start off")
	}
	a.apply(rules.Event{Rule: "low", Sensor: "t1", State: rules.Raised})
	a.apply(rules.Event{Rule: "low", Sensor: "t2", State: rules.Raised})
	a.apply(rules.Event{Rule: "other", Sensor: "t1", State: rules.Cleared})
	if level() != gpio.High {
		t.Fatal("relay off while alerts are active")
	}
	a.apply(rules.Event{Rule: "low", Sensor: "t1", State: rules.Cleared})
	if level() != gpio.High {
		t.Fatal("relay off while t2's alert is still active")
	}
	a.apply(rules.Event{Rule: "low", Sensor: "t2", State: rules.Cleared})
	if level() != gpio.Low {
		t.Fatal("relay still on after every alert cleared")
	}
	if _, err := newActions([]Action{{GPIO: "NO_SUCH_PIN"}}, true); err == nil {
		t.Fatal("unknown pin accepted")
	}
}
