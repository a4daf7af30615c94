package hub

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/outpost-iot/outpost/certs"
	"github.com/outpost-iot/outpost/hub/api"
	"github.com/outpost-iot/outpost/hub/token"
	"github.com/outpost-iot/outpost/internal/mqtttest"
	"github.com/outpost-iot/outpost/internal/protocol"
)

type testHub struct {
	*Hub
	addrs Addresses
	tls   *tls.Config
	stop  func()
}

func startHub(t *testing.T, dir string, mut ...func(*Config)) *testHub {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.MQTT.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = "127.0.0.1:0"
	for _, m := range mut {
		m(&cfg)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	h, err := New(context.Background(), cfg, log, "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	a := h.Addrs()
	tc, err := certs.ClientTLS(a.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	th := &testHub{Hub: h, addrs: a, tls: tc}
	th.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("hub Run: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Error("hub did not stop within 15 s")
			}
		})
	}
	t.Cleanup(th.stop)
	waitFor(t, 5*time.Second, "hub serving", func() bool {
		resp, err := th.httpClient().Get(a.HTTPURL + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	return th
}

func (th *testHub) httpClient() *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: th.tls}, Timeout: 5 * time.Second}
}

func (th *testHub) api(t *testing.T, method, path string, body any, out any) int {
	t.Helper()
	var rd *strings.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	} else {
		rd = strings.NewReader("")
	}
	req, _ := http.NewRequest(method, th.addrs.HTTPURL+path, rd)
	req.Header.Set("Authorization", "Bearer "+th.AdminToken())
	resp, err := th.httpClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: decode: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

func (th *testHub) issue(t *testing.T, device string, ttl time.Duration) (string, *token.Claims) {
	t.Helper()
	pub, sub := protocol.GatewayGrants(device)
	raw, c, err := th.Issue(context.Background(), token.Request{Device: device, Pub: pub, Sub: append(sub, protocol.TopicFleetPresence), TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return raw, c
}

func (th *testHub) dial(t *testing.T, id, tok string, o mqtttest.Options) *mqtttest.Client {
	t.Helper()
	o.TLS = th.tls
	c, err := mqtttest.Dial(context.Background(), th.addrs.MQTT, id, tok, o)
	if err != nil {
		t.Fatalf("dial %s: %v", id, err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}); c.Conn.Close() })
	return c
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s", within, what)
	return 0
}

func batch(seqs ...uint64) []byte {
	b := protocol.Batch{V: 1}
	for _, s := range seqs {
		v := 20 + float64(s)/10
		b.Records = append(b.Records, protocol.Record{Seq: s, Kind: protocol.KindReading, Time: 1_700_000_000_000 + int64(s)*1000, Sensor: "tank", Value: &v, Unit: "C"})
	}
	out, _ := json.Marshal(b)
	return out
}

func publish(t *testing.T, c *mqtttest.Client, topic string, payload []byte) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload})
	if r != nil {
		return r.ReasonCode
	}
	if err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return 0
}

func TestPublishStoreAndACL(t *testing.T) {
	th := startHub(t, t.TempDir())
	tok, _ := th.issue(t, "gw-1", time.Hour)
	c := th.dial(t, "gw-1", tok, mqtttest.Options{KeepAlive: 30})
	logTopic := protocol.DeviceTopic("gw-1", protocol.SufLog)

	if rc := publish(t, c, logTopic, batch(1, 2, 3)); rc != 0 {
		t.Fatalf("PUBACK reason 0x%02x", rc)
	}
	// At-least-once redelivery: the same seqs again are acknowledged, not doubled.
	if rc := publish(t, c, logTopic, batch(2, 3, 4)); rc != 0 {
		t.Fatalf("PUBACK reason 0x%02x", rc)
	}
	seqs, err := th.Store().Seqs(context.Background(), "gw-1")
	if err != nil || fmt.Sprint(seqs) != "[1 2 3 4]" {
		t.Fatalf("stored seqs = %v, %v; want [1 2 3 4] (stored before PUBACK, once each)", seqs, err)
	}
	cases := []struct {
		name    string
		topic   string
		payload []byte
		want    byte
	}{
		{"other device's topic", protocol.DeviceTopic("gw-2", protocol.SufLog), batch(9), 0x87},
		{"topic outside grants", "outpost/v1/fleet/ota", []byte("x"), 0x87},
		{"malformed JSON", logTopic, []byte("{nope"), 0x99},
		{"seq zero", logTopic, []byte(`{"v":1,"records":[{"seq":0,"kind":"reading","t":1,"sensor":"a","value":1}]}`), 0x99},
		{"unknown field", logTopic, []byte(`{"v":1,"records":[],"x":1}`), 0x99},
		{"wrong version", logTopic, []byte(`{"v":2,"records":[{"seq":9,"kind":"reading","t":1,"sensor":"a","value":1}]}`), 0x99},
		{"bad status", protocol.DeviceTopic("gw-1", protocol.SufStatus), []byte(`{"v":1,"state":"sleepy"}`), 0x99},
	}
	for _, tc := range cases {
		if rc := publish(t, c, tc.topic, tc.payload); rc != tc.want {
			t.Errorf("%s: PUBACK 0x%02x, want 0x%02x", tc.name, rc, tc.want)
		}
	}
	seqs, _ = th.Store().Seqs(context.Background(), "gw-1")
	if fmt.Sprint(seqs) != "[1 2 3 4]" {
		t.Fatalf("rejected input changed the store: %v", seqs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "outpost/v1/d/gw-1/in/#", QoS: 1}, {Topic: "outpost/v1/d/gw-2/in/#", QoS: 1}, {Topic: "#", QoS: 0},
	}})
	if err != nil && sa == nil {
		t.Fatal(err)
	}
	if fmt.Sprint(sa.Reasons) != "[1 135 135]" {
		t.Fatalf("SUBACK reasons = %v, want [1 135 135]", sa.Reasons)
	}
	body := metricsText(t, th)
	for _, want := range []string{`outpost_mqtt_acl_denied_total{action="publish"} 2`, `outpost_mqtt_acl_denied_total{action="subscribe"} 2`, `outpost_mqtt_invalid_payloads_total{kind="log"} 4`, "outpost_store_records_total 4", "outpost_store_duplicates_total 2"} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func metricsText(t *testing.T, th *testHub) string {
	req, _ := http.NewRequest("GET", th.addrs.HTTPURL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+th.AdminToken())
	resp, err := th.httpClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestConnectRefusals(t *testing.T) {
	th := startHub(t, t.TempDir())
	good, _ := th.issue(t, "gw-1", time.Hour)
	revokedTok, rc := th.issue(t, "gw-1", time.Hour)
	if _, _, err := th.Revoke(context.Background(), rc.ID); err != nil {
		t.Fatal(err)
	}
	// A token from another hub (its own keyring) is unknown here.
	other, err := token.OpenKeyring(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	foreign, _, _ := token.Issue(other, token.Request{Device: "gw-1", Pub: []string{"x"}, TTL: time.Hour}, time.Now())
	expired, _, _ := token.Issue(th.ring, token.Request{Device: "gw-1", Pub: []string{"x"}, TTL: time.Minute}, time.Now().Add(-time.Hour))

	cases := []struct {
		name, id, tok string
		want          byte
	}{
		{"no token", "gw-1", "", 0x86},
		{"garbage", "gw-1", "garbage", 0x86},
		{"foreign key", "gw-1", foreign, 0x86},
		{"expired", "gw-1", expired, 0x87},
		{"client id mismatch", "gw-2", good, 0x87},
		{"revoked", "gw-1", revokedTok, 0x87},
		{"bad client id", "bad id", good, 0x85},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := mqtttest.Dial(context.Background(), th.addrs.MQTT, tc.id, tc.tok, mqtttest.Options{TLS: th.tls})
			if err == nil {
				c.Disconnect(&paho.Disconnect{})
				t.Fatal("connect accepted")
			}
			if c == nil || c.Connack == nil || c.Connack.ReasonCode != tc.want {
				t.Fatalf("err %v; want CONNACK 0x%02x", err, tc.want)
			}
		})
	}
	// Plain TCP to the TLS port gets nowhere.
	if _, err := mqtttest.Dial(context.Background(), th.addrs.MQTT, "gw-1", good, mqtttest.Options{Timeout: 2 * time.Second}); err == nil {
		t.Fatal("plaintext connect to the TLS listener succeeded")
	}
	// The good token still works.
	th.dial(t, "gw-1", good, mqtttest.Options{})
}

func TestRevocationCutsLiveConnection(t *testing.T) {
	th := startHub(t, t.TempDir())
	tok, c := th.issue(t, "gw-1", time.Hour)
	cl := th.dial(t, "gw-1", tok, mqtttest.Options{KeepAlive: 30})
	start := time.Now()
	var out struct {
		ConnectionsCut int `json:"connections_cut"`
	}
	if st := th.api(t, "DELETE", "/api/v1/tokens/"+c.ID, nil, &out); st != 200 || out.ConnectionsCut != 1 {
		t.Fatalf("revoke: status %d, cut %d", st, out.ConnectionsCut)
	}
	select {
	case <-cl.Done():
	case <-time.After(time.Second):
		t.Fatal("revoked connection still open after 1 s")
	}
	t.Logf("cut after %v", time.Since(start))
	waitFor(t, 2*time.Second, "offline/revoked", func() bool {
		d, err := th.Store().Device(context.Background(), "gw-1")
		return err == nil && d.State == "offline" && d.Reason == "revoked"
	})
	if _, err := mqtttest.Dial(context.Background(), th.addrs.MQTT, "gw-1", tok, mqtttest.Options{TLS: th.tls}); err == nil {
		t.Fatal("revoked token reconnected")
	}
}

func TestPresenceTransitions(t *testing.T) {
	th := startHub(t, t.TempDir())
	tok, _ := th.issue(t, "gw-1", time.Hour)
	state := func() (string, string) {
		d, err := th.Store().Device(context.Background(), "gw-1")
		if err != nil {
			return "", ""
		}
		return d.State, d.Reason
	}
	// Clean disconnect: reflected quickly.
	c := th.dial(t, "gw-1", tok, mqtttest.Options{KeepAlive: 30})
	waitFor(t, 2*time.Second, "online", func() bool { s, _ := state(); return s == "online" })
	_ = c.Disconnect(&paho.Disconnect{})
	d := waitFor(t, 2*time.Second, "offline clean", func() bool { s, r := state(); return s == "offline" && r == "clean_disconnect" })
	t.Logf("clean disconnect reflected after %v", d)

	// Connection dropped with a will: last_will.
	will := &paho.WillMessage{Topic: protocol.DeviceTopic("gw-1", protocol.SufStatus), QoS: 1, Retain: true, Payload: []byte(`{"v":1,"state":"offline","epoch":1}`)}
	c = th.dial(t, "gw-1", tok, mqtttest.Options{KeepAlive: 30, Will: will})
	waitFor(t, 2*time.Second, "online", func() bool { s, _ := state(); return s == "online" })
	c.Conn.Close()
	waitFor(t, 2*time.Second, "offline last_will", func() bool { s, r := state(); return s == "offline" && r == "last_will" })

	// Takeover: the old connection's end does not mark the new session offline.
	c1 := th.dial(t, "gw-1", tok, mqtttest.Options{KeepAlive: 30, Will: will})
	th.dial(t, "gw-1", tok, mqtttest.Options{KeepAlive: 30})
	<-c1.Done()
	time.Sleep(200 * time.Millisecond)
	if s, r := state(); s != "online" {
		t.Fatalf("after takeover state = %s/%s, want online", s, r)
	}
	var hist struct {
		Presence []struct {
			State, Reason string
			Epoch         uint64
		} `json:"presence"`
	}
	th.api(t, "GET", "/api/v1/devices/gw-1/presence", nil, &hist)
	if len(hist.Presence) < 6 || hist.Presence[0].State != "online" {
		t.Fatalf("history = %+v", hist.Presence)
	}
}

func TestKeepaliveTimeoutWithMosquittoPeer(t *testing.T) {
	if _, err := exec.LookPath("mosquitto_sub"); err != nil {
		t.Skip("mosquitto_sub not installed (scripts/deps.sh installs it)")
	}
	th := startHub(t, t.TempDir())
	tok, _ := th.issue(t, "plug-1", time.Hour)
	_, port, _ := strings.Cut(th.addrs.MQTT, "127.0.0.1:")
	// An outside client: Debian's mosquitto_sub with a 5 s keepalive (its minimum).
	cmd := exec.Command("mosquitto_sub", "-V", "5", "-h", "127.0.0.1", "-p", port, "--cafile", th.addrs.CAFile,
		"-i", "plug-1", "-u", "plug-1", "-P", tok, "-k", "5", "-t", "outpost/v1/d/plug-1/in/#")
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGCONT); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	state := func() (string, string) {
		d, err := th.Store().Device(context.Background(), "plug-1")
		if err != nil {
			return "", ""
		}
		return d.State, d.Reason
	}
	if waitFor(t, 5*time.Second, "mosquitto_sub online", func() bool { s, _ := state(); return s == "online" || cmd.ProcessState != nil }); cmd.ProcessState != nil {
		t.Fatalf("mosquitto_sub exited: %s", out)
	}
	// Freeze it: the socket stays open, nothing arrives. 1.5 × keepalive = 7.5 s.
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	waitFor(t, 10*time.Second, "offline after keepalive", func() bool { s, _ := state(); return s == "offline" })
	took := time.Since(stopped)
	if _, r := state(); r != "keepalive_timeout" {
		t.Fatalf("reason = %s, want keepalive_timeout (%s)", r, out)
	}
	if took < 5*time.Second || took > 8*time.Second {
		t.Fatalf("offline after %v: want within (5 s, 7.5 s + slack]", took)
	}
	t.Logf("offline %v after SIGSTOP (bound 1.5 × 5 s = 7.5 s)", took)
}

func TestRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	th := startHub(t, dir)
	tok, _ := th.issue(t, "gw-1", time.Hour)
	revTok, rc := th.issue(t, "gw-1", time.Hour)
	c := th.dial(t, "gw-1", tok, mqtttest.Options{})
	if rc := publish(t, c, protocol.DeviceTopic("gw-1", protocol.SufLog), batch(1, 2)); rc != 0 {
		t.Fatalf("rc %x", rc)
	}
	if _, _, err := th.Revoke(context.Background(), rc.ID); err != nil {
		t.Fatal(err)
	}
	admin := th.AdminToken()
	th.stop()

	th2 := startHub(t, dir)
	if th2.AdminToken() != admin {
		t.Fatal("admin token changed across restart")
	}
	seqs, _ := th2.Store().Seqs(context.Background(), "gw-1")
	if fmt.Sprint(seqs) != "[1 2]" {
		t.Fatalf("seqs after restart = %v", seqs)
	}
	d, err := th2.Store().Device(context.Background(), "gw-1")
	if err != nil || d.State != "offline" {
		t.Fatalf("device after restart = %+v, %v", d, err)
	}
	if _, err := mqtttest.Dial(context.Background(), th2.addrs.MQTT, "gw-1", revTok, mqtttest.Options{TLS: th2.tls}); err == nil {
		t.Fatal("revocation lost across restart")
	}
	c2 := th2.dial(t, "gw-1", tok, mqtttest.Options{}) // same keys: old token valid
	if rc := publish(t, c2, protocol.DeviceTopic("gw-1", protocol.SufLog), batch(3)); rc != 0 {
		t.Fatalf("rc %x", rc)
	}
	var toks struct {
		Tokens []json.RawMessage `json:"tokens"`
	}
	th2.api(t, "GET", "/api/v1/tokens", nil, &toks)
	if len(toks.Tokens) != 2 {
		t.Fatalf("tokens after restart = %d, want 2", len(toks.Tokens))
	}
}

func TestTokenRefreshOverMQTT(t *testing.T) {
	th := startHub(t, t.TempDir())
	tok, old := th.issue(t, "gw-1", time.Hour)
	got := make(chan *paho.Publish, 1)
	c := th.dial(t, "gw-1", tok, mqtttest.Options{OnPublish: func(p *paho.Publish) { got <- p }})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	respTopic := protocol.DeviceTopic("gw-1", protocol.SufInToken)
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: respTopic, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	req, _ := json.Marshal(protocol.TokenRequest{V: 1, TTL: "2h"})
	if _, err := c.Publish(ctx, &paho.Publish{Topic: protocol.DeviceTopic("gw-1", protocol.SufTokenReq), QoS: 1, Payload: req,
		Properties: &paho.PublishProperties{ResponseTopic: respTopic, CorrelationData: []byte("c-1")}}); err != nil {
		t.Fatal(err)
	}
	var p *paho.Publish
	select {
	case p = <-got:
	case <-ctx.Done():
		t.Fatal("no token response")
	}
	if p.Properties == nil || string(p.Properties.CorrelationData) != "c-1" {
		t.Fatalf("correlation data lost: %+v", p.Properties)
	}
	resp, err := protocol.DecodeTokenResponse(p.Payload)
	if err != nil || resp.Token == "" {
		t.Fatalf("response %+v %v", resp, err)
	}
	v := &token.Verifier{Keys: th.ring}
	fresh, err := v.Verify(resp.Token, "gw-1")
	if err != nil || fresh.ID == old.ID || time.Until(fresh.ExpiresAt.Time) > 2*time.Hour+time.Minute {
		t.Fatalf("fresh token %+v %v", fresh, err)
	}
	// The connection now runs on the fresh token: revoking the old one does not cut it.
	if _, n, _ := th.Revoke(context.Background(), old.ID); n != 0 {
		t.Fatalf("revoking the replaced token cut %d connections", n)
	}
	if _, n, _ := th.Revoke(context.Background(), fresh.ID); n != 1 {
		t.Fatalf("revoking the fresh token cut %d connections, want 1", n)
	}
}

func TestAPIErrors(t *testing.T) {
	th := startHub(t, t.TempDir(), func(c *Config) { c.HTTP.MaxBody = 256 })
	var e struct{ Error, Detail string }
	req, _ := http.NewRequest("GET", th.addrs.HTTPURL+"/api/v1/devices", nil)
	resp, err := th.httpClient().Do(req)
	if err != nil || resp.StatusCode != 401 {
		t.Fatalf("no token: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	cases := []struct {
		method, path string
		body         any
		status       int
		detail       string
	}{
		{"GET", "/api/v1/devices/nope", nil, 404, "not found"},
		{"GET", "/api/v1/devices/bad%20id", nil, 400, "device id"},
		{"POST", "/api/v1/tokens", map[string]any{"device": "gw-1"}, 400, "grants no topic"},
		{"POST", "/api/v1/tokens", map[string]any{"device": "gw-1", "profile": "gateway", "ttl": "forever"}, 400, "ttl"},
		{"POST", "/api/v1/tokens", map[string]any{"device": "gw-1", "bogus": 1}, 400, "unknown field"},
		{"POST", "/api/v1/tokens", map[string]any{"device": strings.Repeat("a", 300)}, 413, "at most 256"},
		{"GET", "/api/v1/devices/gw-1/log?limit=0", nil, 400, "limit"},
		{"GET", "/api/v1/nothing", nil, 404, "not an API route"},
	}
	for _, tc := range cases {
		e.Error, e.Detail = "", ""
		if st := th.api(t, tc.method, tc.path, tc.body, &e); st != tc.status || !strings.Contains(e.Detail, tc.detail) {
			t.Errorf("%s %s: %d %+v; want %d with %q", tc.method, tc.path, st, e, tc.status, tc.detail)
		}
	}
	var ir api.IssueResponse
	if st := th.api(t, "POST", "/api/v1/tokens", map[string]any{"device": "gw-1", "profile": "gateway", "ttl": "1h"}, &ir); st != 201 || ir.Token == "" {
		t.Fatalf("issue: %d %+v", st, ir)
	}
	if !strings.Contains(strings.Join(ir.ACL.Pub, " "), "outpost/v1/d/gw-1/log") {
		t.Fatalf("gateway profile ACL = %+v", ir.ACL)
	}
}

func TestPresenceEventsOnMQTTAndSSE(t *testing.T) {
	th := startHub(t, t.TempDir())
	// A watcher allowed to read the fleet presence topic, and an SSE stream.
	watchTok, _, err := th.Issue(context.Background(), token.Request{Device: "watcher", Sub: []string{protocol.TopicFleetPresence}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan protocol.PresenceEvent, 16)
	w := th.dial(t, "watcher", watchTok, mqtttest.Options{OnPublish: func(p *paho.Publish) {
		var ev protocol.PresenceEvent
		if json.Unmarshal(p.Payload, &ev) == nil && ev.Device == "gw-1" {
			events <- ev
		}
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := w.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: protocol.TopicFleetPresence}}}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", th.addrs.HTTPURL+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+th.AdminToken())
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: th.tls}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sse := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			if n > 0 {
				sse <- string(buf[:n])
			}
			if err != nil {
				return
			}
		}
	}()

	tok, _ := th.issue(t, "gw-1", time.Hour)
	c := th.dial(t, "gw-1", tok, mqtttest.Options{})
	// The retained birth of this session…
	birth := []byte(`{"v":1,"state":"online","epoch":2,"hb_s":15}`)
	if rc := publish(t, c, protocol.DeviceTopic("gw-1", protocol.SufStatus), birth); rc != 0 {
		t.Fatalf("birth rc %x", rc)
	}
	_ = c.Disconnect(&paho.Disconnect{})
	want := []string{"online", "offline"}
	for _, st := range want {
		select {
		case ev := <-events:
			if ev.State != st {
				t.Fatalf("MQTT presence event %+v, want state %s", ev, st)
			}
		case <-ctx.Done():
			t.Fatalf("no MQTT presence event %s", st)
		}
	}
	var got strings.Builder
	for !strings.Contains(got.String(), `"state":"offline"`) {
		select {
		case s := <-sse:
			got.WriteString(s)
		case <-ctx.Done():
			t.Fatalf("SSE stream lacks the offline event: %q", got.String())
		}
	}
	if !strings.Contains(got.String(), "event: presence") {
		t.Fatalf("SSE event name missing: %q", got.String())
	}
}
