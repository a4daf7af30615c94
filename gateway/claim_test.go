package gateway

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/gateway/uplink"
	"github.com/outpost-iot/outpost/hub"
	"github.com/outpost-iot/outpost/hub/api"
)

// claimConfig is a gateway configuration with only a claim token.
func claimConfig(t *testing.T, h *hub.Hub, a hub.Addresses, id string, q api.ClaimRequest) Config {
	t.Helper()
	cr, err := h.CreateClaim(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	cfg := gatewayConfig(t, a, id, "")
	if err := os.Remove(cfg.Hub.TokenFile); err != nil {
		t.Fatal(err)
	}
	cfg.Hub.TokenFile = filepath.Join(cfg.DataDir, "gateway.token") // in a directory that does not exist yet
	cfg.Hub.ClaimTokenFile = filepath.Join(t.TempDir(), "claim.token")
	cfg.Hub.ClaimRetry = time.Second
	if err := os.WriteFile(cfg.Hub.ClaimTokenFile, []byte(cr.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func claimLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func TestClaimThenRun(t *testing.T) {
	h, a := startHub(t)
	cfg := claimConfig(t, h, a, "pi-claimed", api.ClaimRequest{Labels: map[string]string{"site": "lab"}})
	if !NeedsClaim(cfg) {
		t.Fatal("NeedsClaim = false without a device token")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Claim(ctx, cfg, claimLog(), "1.0.0-test"); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(cfg.Hub.TokenFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", st, err)
	}
	if _, err := os.Stat(cfg.Hub.ClaimTokenFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("claim token file left behind: %v", err)
	}
	if NeedsClaim(cfg) {
		t.Fatal("NeedsClaim = true with a device token")
	}
	_, stop := runGateway(t, cfg)
	defer stop()
	waitFor(t, 15*time.Second, "readings of the claimed gateway", func() bool {
		seqs, _ := h.Store().Seqs(context.Background(), "pi-claimed")
		return len(seqs) >= 3
	})
	d, err := h.Store().Device(context.Background(), "pi-claimed")
	if err != nil || d.Labels["site"] != "lab" {
		t.Fatalf("device: %+v %v", d, err)
	}
}

func TestClaimPendingThenAccepted(t *testing.T) {
	h, a := startHub(t, func(c *hub.Config) { c.Claims.AutoAccept = false; c.Claims.Retry = time.Second })
	cfg := claimConfig(t, h, a, "pi-wait", api.ClaimRequest{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Claim(ctx, cfg, claimLog(), "1.0.0-test") }()
	waitFor(t, 10*time.Second, "pending device", func() bool {
		p, _ := h.Store().PendingDevices(context.Background())
		return len(p) == 1 && p[0].Device == "pi-wait"
	})
	select {
	case err := <-done:
		t.Fatalf("claim returned while pending: %v", err)
	default:
	}
	if _, err := h.Store().DecideDevice(context.Background(), "pi-wait", true, time.Now().UnixMilli()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("claim not done within 20 s of the accept")
	}
	if NeedsClaim(cfg) {
		t.Fatal("no device token after the accept")
	}
}

func TestClaimRefusedForAnotherDevice(t *testing.T) {
	h, a := startHub(t)
	cfg := claimConfig(t, h, a, "pi-first", api.ClaimRequest{})
	claim, err := os.ReadFile(cfg.Hub.ClaimTokenFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Claim(ctx, cfg, claimLog(), "1.0.0-test"); err != nil {
		t.Fatal(err)
	}
	// The same (one-use) claim token on another device id: refused at
	// CONNECT, and the gateway stops announcing.
	other := cfg
	other.DeviceID = "pi-second"
	other.Hub.TokenFile = filepath.Join(t.TempDir(), "gateway.token")
	other.Hub.ClaimTokenFile = filepath.Join(t.TempDir(), "claim.token")
	if err := os.WriteFile(other.Hub.ClaimTokenFile, claim, 0o600); err != nil {
		t.Fatal(err)
	}
	err = Claim(ctx, other, claimLog(), "1.0.0-test")
	if !errors.Is(err, uplink.ErrClaimRefused) || ctx.Err() != nil {
		t.Fatalf("claim by another device: %v, want ErrClaimRefused", err)
	}
	if _, err := os.Stat(other.Hub.TokenFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused claim wrote a token file: %v", err)
	}
}

func TestDeriveDeviceID(t *testing.T) {
	root := t.TempDir()
	if _, err := DeriveDeviceID(root); err == nil {
		t.Fatal("no serial and no machine-id: want an error")
	}
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/machine-id"), []byte("0123456789abcdef0123456789abcdef\n"), 0o644)
	id, err := DeriveDeviceID(root)
	if err != nil || len(id) != 19 || id[:3] != "gw-" {
		t.Fatalf("from machine-id: %q %v", id, err)
	}
	os.MkdirAll(filepath.Join(root, "proc"), 0o755)
	os.WriteFile(filepath.Join(root, "proc/cpuinfo"), []byte("processor\t: 0\nHardware\t: BCM2835\nSerial\t\t: 10000000ABCDEF01\nModel\t\t: Raspberry Pi 4\n"), 0o644)
	if id, err := DeriveDeviceID(root); err != nil || id != "pi-10000000abcdef01" {
		t.Fatalf("from the Pi serial: %q %v", id, err)
	}
}
