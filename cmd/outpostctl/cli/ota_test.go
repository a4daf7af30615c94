package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/certs"
	"github.com/outpost-iot/outpost/firmware-ota/manifest"
	"github.com/outpost-iot/outpost/hub"
	"github.com/outpost-iot/outpost/hub/ota"
	"github.com/outpost-iot/outpost/hub/token"
	"github.com/outpost-iot/outpost/internal/protocol"
)

func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := Run(context.Background(), args, strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String(), err
}

// TestOTACommands drives keygen, sign, verify, upload, releases and the
// rollout commands against a real hub.
func TestOTACommands(t *testing.T) {
	keyDir := filepath.Join(t.TempDir(), "keys")
	kid, _, err := run(t, "ota", "keygen", "--out", keyDir)
	if err != nil || len(strings.TrimSpace(kid)) != 16 {
		t.Fatalf("keygen: %q %v", kid, err)
	}
	if fi, err := os.Stat(filepath.Join(keyDir, manifest.PrivateKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("release.key: %v %v", fi, err)
	}
	if _, _, err := run(t, "ota", "keygen", "--out", keyDir); err == nil {
		t.Fatal("keygen overwrote a key pair")
	}
	art := filepath.Join(t.TempDir(), "outpost-gateway")
	if err := os.WriteFile(art, bytes.Repeat([]byte("firmware "), 5000), 0o755); err != nil {
		t.Fatal(err)
	}
	key, pub := filepath.Join(keyDir, manifest.PrivateKeyFile), filepath.Join(keyDir, manifest.PublicKeyFile)
	if _, _, err := run(t, "ota", "sign", "--key", key, "--version", "1.2.0", "--target", "linux/arm/armv9", art); err == nil {
		t.Fatal("bad target accepted")
	}
	out, _, err := run(t, "ota", "sign", art, "--key", key, "--version", "1.2.0", "--target", "linux/arm/armv7", "--board", "Raspberry Pi 4", "--notes", "pH fix")
	if err != nil || strings.TrimSpace(out) != art+manifest.ManifestSuffix {
		t.Fatalf("sign: %q %v", out, err)
	}
	if out, _, err := run(t, "ota", "verify", "--pub", pub, art); err != nil || !strings.HasPrefix(out, "ok ") {
		t.Fatalf("verify: %q %v", out, err)
	}

	// A hub that trusts the key.
	cfg := hub.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.MQTT.Listen, cfg.HTTP.Listen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.OTA.ReleaseKeys = []string{pub}
	h, err := hub.New(context.Background(), cfg, slog.New(slog.DiscardHandler), "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	a := h.Addrs()
	tc, _ := certs.ClientTLS(a.CAFile)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 5 * time.Second}
	for deadline := time.Now().Add(5 * time.Second); ; {
		resp, err := hc.Get(a.HTTPURL + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("hub not serving")
		}
		time.Sleep(20 * time.Millisecond)
	}
	hubArgs := []string{"--hub", a.HTTPURL, "--admin-token", h.AdminToken(), "--ca", a.CAFile}
	with := func(args ...string) []string { return append(args, hubArgs...) }

	out, _, err = run(t, with("ota", "upload", art)...)
	if err != nil || !strings.HasPrefix(out, "stored release 1.2.0 for linux/arm/armv7 (Raspberry Pi 4)") {
		t.Fatalf("upload: %q %v", out, err)
	}
	if out, _, err := run(t, with("ota", "upload", art)...); err != nil || !strings.HasPrefix(out, "already stored") {
		t.Fatalf("upload again: %q %v", out, err)
	}
	// Tampered after signing: verify and the hub both refuse.
	if err := os.WriteFile(art, bytes.Repeat([]byte("firmwarE "), 5000), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "ota", "verify", "--pub", pub, art); err == nil || !strings.Contains(err.Error(), "SHA-256 mismatch") {
		t.Fatalf("verify tampered: %v", err)
	}
	if _, _, err := run(t, with("ota", "upload", art)...); err == nil || !strings.Contains(err.Error(), "422") {
		t.Fatalf("upload tampered: %v", err)
	}
	if out, _, err := run(t, with("ota", "releases")...); err != nil || !strings.Contains(out, "1.2.0") || strings.Count(out, "\n") != 2 {
		t.Fatalf("releases: %q %v", out, err)
	}

	for _, d := range []string{"gw-1", "gw-2"} {
		pubT, subT := protocol.GatewayGrants(d)
		if _, _, err := h.Issue(context.Background(), token.Request{Device: d, Pub: pubT, Sub: subT, TTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := run(t, with("ota", "rollout", "create", "--release", "1.2.0", "--devices", "gw-1,gw-2", "--max-failures", "lots")...); err == nil {
		t.Fatal("bad --max-failures accepted")
	}
	out, _, err = run(t, with("ota", "rollout", "create", "--release", "1.2.0", "--devices", "gw-1,gw-2", "--waves", "50%,100%", "--max-failures", "10%")...)
	id := strings.TrimSpace(out)
	if err != nil || !strings.HasPrefix(id, "r-") {
		t.Fatalf("rollout create: %q %v", out, err)
	}
	out, _, err = run(t, with("ota", "rollout", "status", id, "--json")...)
	var ro ota.Rollout
	if err != nil || json.Unmarshal([]byte(out), &ro) != nil || ro.ID != id || ro.Total != 2 || ro.Counts["notified"] != 1 {
		t.Fatalf("status --json: %q %v", out, err)
	}
	if out, _, err := run(t, with("ota", "rollout", "status", id)...); err != nil || !contains(out, "wave 1 of 2", "gw-1", "gw-2", "notified", "pending") {
		t.Fatalf("status: %q %v", out, err)
	}
	for _, step := range []struct{ cmd, want string }{{"pause", "paused"}, {"resume", "active"}, {"abort", "aborted"}} {
		if out, _, err := run(t, with("ota", "rollout", step.cmd, id)...); err != nil || !strings.Contains(out, ", "+step.want+",") {
			t.Fatalf("%s: %q %v", step.cmd, out, err)
		}
	}
	if _, _, err := run(t, with("ota", "rollout", "resume", id)...); err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("resume aborted: %v", err)
	}
	if out, _, err := run(t, with("ota", "rollout", "list")...); err != nil || !contains(out, id, "aborted") {
		t.Fatalf("list: %q %v", out, err)
	}
}

func contains(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}
