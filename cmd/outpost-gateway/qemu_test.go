package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/hub"
	"github.com/outpost-iot/outpost/hub/api"
	"github.com/outpost-iot/outpost/internal/provision"
)

// TestArmBuildsRunUnderQEMU builds the gateway the way make cross does
// (CGO off, -trimpath, version stamped) for the Pi Zero/1 (armv6) and for
// 64-bit images (arm64), checks that flash prepare would accept each for
// its image, and runs `outpost-gateway version` under qemu user-mode
// emulation (Debian's qemu-user-static; scripts/deps.sh installs it), then
// a short gateway on simulated sensors that registers by claim with a hub
// on loopback and delivers readings.
func TestArmBuildsRunUnderQEMU(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-builds the gateway: not in -short")
	}
	const version = "9.8.7-qemu"
	for _, tc := range []struct {
		arch provision.Arch
		qemu []string
		want string
	}{
		{provision.ARMv6, []string{"qemu-arm-static", "qemu-arm"}, "linux/arm)"},
		{provision.ARM64, []string{"qemu-aarch64-static", "qemu-aarch64"}, "linux/arm64)"},
	} {
		t.Run(string(tc.arch), func(t *testing.T) {
			var qemu string
			for _, q := range tc.qemu {
				if p, err := exec.LookPath(q); err == nil {
					qemu = p
					break
				}
			}
			if qemu == "" {
				t.Skipf("%s not installed (Debian: qemu-user-static; scripts/deps.sh installs it)", tc.qemu[0])
			}
			bin := filepath.Join(t.TempDir(), tc.arch.DistName())
			build := exec.Command("go", "build", "-trimpath", "-ldflags",
				"-s -w -buildid= -X github.com/outpost-iot/outpost/internal/buildinfo.Version="+version, "-o", bin, ".")
			build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+tc.arch.GOARCH(), "GOARM="+tc.arch.GOARM())
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("go build: %v\n%s", err, out)
			}
			if err := provision.CheckBinary(bin, tc.arch); err != nil {
				t.Errorf("flash prepare would refuse make cross's build: %v", err)
			}
			out, err := exec.Command(qemu, bin, "version").CombinedOutput()
			if err != nil {
				t.Fatalf("%s %s version: %v\n%s", filepath.Base(qemu), filepath.Base(bin), err, out)
			}
			got := strings.TrimSpace(string(out))
			if !strings.HasPrefix(got, "outpost-gateway "+version+" (go") || !strings.HasSuffix(got, tc.want) {
				t.Errorf("version under qemu: %q", got)
			}
			claimUnderQEMU(t, qemu, bin, "qemu-"+string(tc.arch))
		})
	}
}

// claimUnderQEMU runs the emulated gateway (the worker: the supervisor would
// exec the ARM binary without qemu) with only a claim token against a hub
// on loopback, until the hub stored its readings (at most 40 s).
func claimUnderQEMU(t *testing.T, qemu, bin, id string) {
	t.Helper()
	cfg := hub.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.MQTT.Listen, cfg.HTTP.Listen = "127.0.0.1:0", "127.0.0.1:0"
	h, err := hub.New(context.Background(), cfg, slog.New(slog.DiscardHandler), "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	hubDone := make(chan error, 1)
	go func() { hubDone <- h.Run(ctx) }()
	defer func() { cancel(); <-hubDone }()
	cr, err := h.CreateClaim(context.Background(), api.ClaimRequest{TTL: "10m"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	claimFile := filepath.Join(dir, "claim.token")
	if err := os.WriteFile(claimFile, []byte(cr.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := h.Addrs()
	y := fmt.Sprintf(`device_id: %s
data_dir: %s
hub: {address: %s, ca: %s, token_file: %s, claim_token_file: %s, claim_retry: 1s, keepalive: 10s, heartbeat: 2s}
outbox: {flush_interval: 200ms}
clock: {source: system}
sensors:
  - {name: temp-a, type: sim, quantity: temperature, interval: 200ms, sim: {seed: 1, base: 20, noise: 1}}
`, id, filepath.Join(dir, "data"), a.MQTT, a.CAFile, filepath.Join(dir, "data", "gateway.token"), claimFile)
	cfgFile := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(cfgFile, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd := exec.Command(qemu, bin, "run", "--worker", "--config", cfgFile)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(40 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for got := false; !got; {
		select {
		case err := <-exited:
			t.Fatalf("emulated gateway exited: %v\n%s", err, out.String())
		case <-deadline:
			_ = cmd.Process.Kill()
			<-exited
			t.Fatalf("no readings from the emulated gateway within 40 s\n%s", out.String())
		case <-tick.C:
			seqs, _ := h.Store().Seqs(context.Background(), id)
			got = len(seqs) >= 3
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("emulated gateway after SIGTERM: %v\n%s", err, out.String())
		}
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		t.Errorf("emulated gateway did not stop within 20 s of SIGTERM\n%s", out.String())
	}
}
