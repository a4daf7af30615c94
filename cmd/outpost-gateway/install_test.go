package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pt "github.com/outpost-iot/outpost/internal/provision/provisiontest"
)

const installYAML = `device_id: tank-1
hub: {address: 127.0.0.1:8883, ca: ca.crt, token_file: gw.token}
sensors:
  - {name: temp-tank, type: w1-ds18b20, rom: 28-0316a2797aff}
`

func installFiles(t *testing.T) (cfg, claim string) {
	t.Helper()
	dir := t.TempDir()
	cfg = filepath.Join(dir, "gateway.yaml")
	claim = filepath.Join(dir, "claim.token")
	os.WriteFile(cfg, []byte(installYAML), 0o600)
	os.WriteFile(filepath.Join(dir, "ca.crt"), pt.CA(t), 0o600) // found through the config's hub.ca
	os.WriteFile(claim, []byte("claim_abc\n"), 0o600)
	return cfg, claim
}

func TestInstallDryRun(t *testing.T) {
	cfg, claim := installFiles(t)
	var out, errOut bytes.Buffer
	if err := run([]string{"install", "--dry-run", "--config", cfg, "--claim-token", claim, "--hub", "hub.example.org:8883"}, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	for _, want := range []string{"would", "as /opt/outpost/bin/outpost-gateway", "linked from /usr/local/bin/outpost-gateway",
		"write /etc/outpost/gateway.yaml", "write /etc/outpost/claim.token (0600, owner outpost)",
		"create system user outpost in groups i2c and gpio", "install /etc/systemd/system/outpost-gateway.service",
		"enable and start outpost-gateway.service"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dry run lacks %q:\n%s", want, out.String())
		}
	}
}

func TestInstallRefuses(t *testing.T) {
	cfg, claim := installFiles(t)
	defer func(f func() int) { geteuid = f }(geteuid)
	geteuid = func() int { return 1000 }
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--config", cfg, "--claim-token", claim}, "must run as root"},
		{[]string{"--claim-token", claim}, "--config is required"},
		{[]string{"--config", cfg}, "--claim-token (or --token) is required"},
		{[]string{"--config", cfg, "--claim-token", claim, "--hub", "nope"}, "want host:port"},
		{[]string{"--config", cfg, "--claim-token", claim, "--w1-pin", "3"}, "I2C bus"},
	} {
		var out, errOut bytes.Buffer
		err := install(tc.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
}
