package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-iot/outpost/internal/buildinfo"
)

func writeConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "gw.yaml")
	y := `device_id: gw-1
data_dir: ` + filepath.Join(dir, "data") + `
hub: {address: "127.0.0.1:1", ca: ca.crt, token_file: gw.token}
sensors:
  - {name: t, type: sim, quantity: temperature}
`
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunFlags(t *testing.T) {
	cfg, opts, err := loadConfig("run", []string{"--config", writeConfig(t), "--worker", "--release-pubkey", "/etc/outpost/release.pub"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !opts.worker || cfg.ReleasePubKey != "/etc/outpost/release.pub" || cfg.OTA.HealthTimeout <= 0 {
		t.Fatalf("worker=%v release_pubkey=%q health_timeout=%v", opts.worker, cfg.ReleasePubKey, cfg.OTA.HealthTimeout)
	}
	if _, opts, err := loadConfig("run", []string{"--config", writeConfig(t)}, io.Discard); err != nil || opts.worker {
		t.Fatalf("plain run: worker=%v, %v", opts.worker, err)
	}
}

// A build with TestFault=crash-at-start exits 2 before doing anything (the
// end-to-end rollback test builds such a "new version").
func TestCrashAtStartFault(t *testing.T) {
	old := buildinfo.TestFault
	buildinfo.TestFault = "crash-at-start"
	defer func() { buildinfo.TestFault = old }()
	err := run([]string{"run", "--worker", "--config", writeConfig(t)}, io.Discard, io.Discard)
	var code exitCode
	if !errors.As(err, &code) || code != 2 {
		t.Fatalf("run = %v, want exit status 2", err)
	}
}

// check accepts a configuration whose gateway has only a claim token (no
// device token file yet), given in the file or with --claim-token.
func TestCheckWithOnlyAClaimToken(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "gw.yaml")
	y := `device_id: pi-new
data_dir: ` + filepath.Join(dir, "data") + `
hub: {address: "127.0.0.1:1", ca: ca.crt, token_file: ` + filepath.Join(dir, "data", "gw.token") + `, claim_token_file: claim.token}
sensors:
  - {name: t, type: sim, quantity: temperature}
`
	if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := run([]string{"check", "--config", p}, &out, io.Discard); err != nil || out.String() != "configuration ok\n" {
		t.Fatalf("check: %q %v", out.String(), err)
	}
	cfg, _, err := loadConfig("check", []string{"--config", writeConfig(t), "--claim-token", "/etc/outpost/claim.token"}, io.Discard)
	if err != nil || cfg.Hub.ClaimTokenFile != "/etc/outpost/claim.token" {
		t.Fatalf("--claim-token: %q %v", cfg.Hub.ClaimTokenFile, err)
	}
}
