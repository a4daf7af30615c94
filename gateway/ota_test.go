package gateway

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/outpost-iot/outpost/certs"
	"github.com/outpost-iot/outpost/firmware-ota/manifest"
	"github.com/outpost-iot/outpost/firmware-ota/updater"
	"github.com/outpost-iot/outpost/hub/token"
	"github.com/outpost-iot/outpost/internal/mqtttest"
	"github.com/outpost-iot/outpost/internal/protocol"
)

// The OTA wiring with a real hub: a retained notice on in/ota is verified,
// the artifact downloaded over HTTPS (hub CA, device token), installed, Run
// returns ErrRestart; the new version then reports succeeded and the hub
// acknowledges it. Statuses arrive on ota/status.
func TestOTAUpdateThroughTheHub(t *testing.T) {
	h, a := startHub(t)
	pub, sub := protocol.GatewayGrants("gw-o")
	tok, _, err := h.Issue(context.Background(), token.Request{Device: "gw-o", Pub: pub, Sub: sub, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cfg := gatewayConfig(t, a, "gw-o", tok)
	dir := t.TempDir()
	if _, err := manifest.Keygen(dir, false); err != nil {
		t.Fatal(err)
	}
	key, err := manifest.LoadPrivateKey(filepath.Join(dir, manifest.PrivateKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ReleasePubKey = filepath.Join(dir, manifest.PublicKeyFile)
	cfg.OTA.Binary = filepath.Join(dir, "outpost-gateway")
	cfg.OTA.HealthTimeout = 20 * time.Second
	v1, v2 := []byte("#!fake outpost-gateway 1.0.0\n"), bytes.Repeat([]byte("outpost-gateway 2.0.0\n"), 5000)
	if err := os.WriteFile(cfg.OTA.Binary, v1, 0o755); err != nil {
		t.Fatal(err)
	}

	// The artifact, served with the hub's certificate to the device's token.
	sum := sha256.Sum256(v2)
	ver, _ := manifest.ParseVersion("2.0.0")
	env, err := manifest.SignManifest(key, manifest.Manifest{Version: ver, Target: manifest.HostTarget(""), Size: int64(len(v2)), SHA256: hex.EncodeToString(sum[:])})
	if err != nil {
		t.Fatal(err)
	}
	pki := certs.PathsIn(filepath.Dir(a.CAFile))
	srvTLS, err := certs.LoadServerTLS(pki.ServerCert, pki.ServerKey, "")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var authOK, requests int
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests++
		ok := r.Header.Get("Authorization") == "Bearer "+tok
		if ok {
			authOK++
		}
		mu.Unlock()
		if !ok {
			http.Error(w, "token", http.StatusUnauthorized)
			return
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(v2))
	}), TLSConfig: srvTLS, ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })

	// The hub's side: publish the retained notice, watch the statuses.
	hubTok, _, err := h.Issue(context.Background(), token.Request{Device: "ota-test",
		Pub: []string{protocol.DeviceTopic("gw-o", protocol.SufInOTA)}, Sub: []string{protocol.DeviceTopic("gw-o", protocol.SufOTAStatus)}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var smu sync.Mutex
	var statuses []protocol.OTAStatus
	tc, _ := certs.ClientTLS(a.CAFile)
	c, err := mqtttest.Dial(context.Background(), a.MQTT, "ota-test", hubTok, mqtttest.Options{TLS: tc, OnPublish: func(p *paho.Publish) {
		st, err := protocol.DecodeOTAStatus(p.Payload)
		if err != nil {
			t.Errorf("invalid status from the gateway: %v", err)
			return
		}
		smu.Lock()
		statuses = append(statuses, st)
		smu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: protocol.DeviceTopic("gw-o", protocol.SufOTAStatus), QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	notice, _ := json.Marshal(protocol.OTANotice{V: protocol.Version, Rollout: "ro-1", Release: "2.0.0", Manifest: env,
		URL: "https://" + ln.Addr().String() + "/api/v1/ota/artifacts/" + hex.EncodeToString(sum[:]), Time: time.Now().UnixMilli()})
	if _, err := c.Publish(ctx, &paho.Publish{Topic: protocol.DeviceTopic("gw-o", protocol.SufInOTA), QoS: 1, Retain: true, Payload: notice}); err != nil {
		t.Fatal(err)
	}
	seen := func(state, fw string) bool {
		smu.Lock()
		defer smu.Unlock()
		for _, s := range statuses {
			if s.State == state && s.Rollout == "ro-1" && (fw == "" || s.Firmware == fw) {
				return true
			}
		}
		return false
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	runVersion := func(v string) (*Gateway, context.CancelFunc, chan error) {
		g, err := New(context.Background(), cfg, log, v)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- g.Run(ctx) }()
		return g, cancel, done
	}

	_, cancel1, done1 := runVersion("1.0.0")
	defer cancel1()
	select {
	case err := <-done1:
		if !errors.Is(err, ErrRestart) {
			t.Fatalf("Run = %v, want ErrRestart", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no restart after the notice")
	}
	if b, _ := os.ReadFile(cfg.OTA.Binary); !bytes.Equal(b, v2) {
		t.Fatal("new binary not in place")
	}
	if b, _ := os.ReadFile(cfg.OTA.Binary + ".prev"); !bytes.Equal(b, v1) {
		t.Fatal("previous binary not kept")
	}
	waitFor(t, 5*time.Second, "downloading and restarting reported", func() bool {
		return seen(protocol.OTADownloading, "1.0.0") && seen(protocol.OTARestarting, "1.0.0")
	})
	mu.Lock()
	if authOK == 0 || authOK != requests {
		t.Errorf("%d of %d artifact requests carried the device token", authOK, requests)
	}
	mu.Unlock()

	g2, cancel2, done2 := runVersion("2.0.0")
	waitFor(t, 20*time.Second, "succeeded reported by 2.0.0", func() bool { return seen(protocol.OTASucceeded, "2.0.0") })
	waitFor(t, 5*time.Second, "state succeeded", func() bool { return g2.ota.State().Phase == updater.Succeeded })
	cancel2()
	if err := <-done2; err != nil {
		t.Fatalf("Run of 2.0.0: %v", err)
	}
}

// Without a release key every notice is refused, reported failed.
func TestOTANoticeWithoutKeyIsRefused(t *testing.T) {
	h, a := startHub(t)
	pub, sub := protocol.GatewayGrants("gw-nk")
	tok, _, err := h.Issue(context.Background(), token.Request{Device: "gw-nk", Pub: pub, Sub: sub, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cfg := gatewayConfig(t, a, "gw-nk", tok)
	cfg.OTA.Binary = filepath.Join(t.TempDir(), "bin")
	g, _ := runGateway(t, cfg)
	waitFor(t, 10*time.Second, "connected", func() bool { return g.up.Stats().Connected })
	n, _ := json.Marshal(protocol.OTANotice{V: 1, Rollout: "ro", Release: "9.0.0", Manifest: json.RawMessage(`{"v":1}`), URL: "https://example.invalid/a"})
	g.onMessage(protocol.DeviceTopic("gw-nk", protocol.SufInOTA), n, true)
	waitFor(t, 10*time.Second, "refusal recorded and acknowledged", func() bool {
		st := g.ota.State()
		return st.Phase == updater.Failed && st.Reason == "no release key configured" && st.Report == nil
	})
}

func TestReleaseKeys(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(pub)
	raw := base64.StdEncoding.EncodeToString(pub)
	pkix := base64.StdEncoding.EncodeToString(der)
	dir := t.TempDir()
	if _, err := manifest.Keygen(dir, false); err != nil {
		t.Fatal(err)
	}
	k, err := releaseKeys(filepath.Join(dir, manifest.PublicKeyFile), raw+", "+pkix)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(k.KeyIDs()); n != 2 { // raw and PKIX are the same key
		t.Fatalf("%d keys, want 2", n)
	}
	if k, err := releaseKeys("", ""); err != nil || len(k.KeyIDs()) != 0 {
		t.Fatalf("no keys: %v %v", k.KeyIDs(), err)
	}
	for _, bad := range []string{"not base64!", base64.StdEncoding.EncodeToString([]byte("short"))} {
		if _, err := releaseKeys("", bad); err == nil || !strings.Contains(err.Error(), "compiled-in release key") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if _, err := releaseKeys(filepath.Join(dir, "missing.pub"), ""); err == nil || !strings.Contains(err.Error(), "release_pubkey") {
		t.Errorf("missing file: %v", err)
	}
}
