package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const claimGatewayYAML = `device_id: %s
data_dir: %s
hub: {address: %s, ca: %s, token_file: %s, claim_token_file: %s, claim_retry: 1s, keepalive: 5s, heartbeat: 1s}
outbox: {flush_interval: 200ms}
clock: {source: system}
sensors:
  - {name: temp-a, type: sim, quantity: temperature, interval: 100ms, sim: {seed: 1, base: 20, noise: 1}}
`

// TestGatewayRegistersByClaim: outpostctl claim create → a gateway that has
// only the claim token registers, saves its device token and reports.
func TestGatewayRegistersByClaim(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e")
	}
	h := startHub(t, t.TempDir(), freePort(t), freePort(t))
	claim := h.ctl(t, "claim", "create", "--ttl", "1h", "--labels", "site=e2e,model=sim")
	if strings.Count(strings.TrimSpace(claim), ".") != 2 || strings.Contains(strings.TrimSpace(claim), "\n") {
		t.Fatalf("claim create printed %q, want the token alone", claim)
	}
	dir := t.TempDir()
	claimFile, tokFile := filepath.Join(dir, "claim.token"), filepath.Join(dir, "data", "gateway.token")
	if err := os.WriteFile(claimFile, []byte(claim), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "gateway.yaml")
	y := fmt.Sprintf(claimGatewayYAML, "pi-e2e", filepath.Join(dir, "data"), h.mqtt, filepath.Join(h.dir, "pki", "ca.crt"), tokFile, claimFile)
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	g := start(t, "outpost-gateway", "run", "--config", cfg)
	defer g.stop(t)
	waitFor(t, 30*time.Second, "readings of the claimed gateway", func() bool { return len(h.seqs(t, "pi-e2e")) >= 5 })
	var d struct {
		Labels map[string]string `json:"labels"`
		State  string            `json:"state"`
	}
	h.get(t, "/api/v1/devices/pi-e2e", &d)
	if d.Labels["site"] != "e2e" || d.Labels["model"] != "sim" {
		t.Errorf("device labels %v, want the claim's", d.Labels)
	}
	if st, err := os.Stat(tokFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("device token file: %v %v", st, err)
	}
	if _, err := os.Stat(claimFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("claim token file kept: %v", err)
	}
	if out := h.ctl(t, "claim", "list"); !strings.Contains(out, "pi-e2e(accepted)") || !strings.Contains(out, "1/1") {
		t.Errorf("claim list:\n%s", out)
	}
}
