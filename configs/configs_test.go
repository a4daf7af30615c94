// Package configs holds the example configuration and systemd units; its
// test loads every example with the real loaders, so they cannot rot.
package configs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-iot/outpost/gateway"
	"github.com/outpost-iot/outpost/hub"
	"github.com/outpost-iot/outpost/internal/config"
)

func TestExamplesLoadAndValidate(t *testing.T) {
	files, _ := filepath.Glob("*.example.yaml")
	if len(files) < 2 {
		t.Fatalf("expected hub and gateway examples, found %v", files)
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			var err error
			switch {
			case filepath.Base(f) == "hub.example.yaml":
				c := hub.DefaultConfig()
				if err = config.LoadYAML(f, &c); err == nil {
					err = c.Validate()
				}
			case filepath.Base(f) == "gateway.example.yaml":
				c := gateway.DefaultConfig()
				if err = config.LoadYAML(f, &c); err == nil {
					err = c.Validate()
				}
				if err == nil && (len(c.Sensors) == 0 || len(c.Rules.Rules) < 4) {
					t.Fatalf("gateway example lost its sensors or classic rules: %d sensors, %d rules", len(c.Sensors), len(c.Rules.Rules))
				}
			default:
				t.Fatalf("no loader for %s", f)
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestBadConfigListsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "gw.yaml")
	if err := os.WriteFile(bad, []byte(`device_id: "no spaces"
hub: {address: nope, keepalive: 1s}
clock: {source: sundial}
sensors:
  - {name: t1, type: tmp102, addr: 0x90}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	c := gateway.DefaultConfig()
	if err := config.LoadYAML(bad, &c); err != nil {
		t.Fatal(err)
	}
	err := c.Validate()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, key := range []string{"device_id:", "hub.address:", "hub.ca:", "hub.token_file:", "hub.keepalive:", "clock.source:", "sensors[0].addr:"} {
		if !contains(err.Error(), key) {
			t.Errorf("problem list lacks %q:\n%v", key, err)
		}
	}
	// Unknown keys are errors with a line number.
	if err := os.WriteFile(bad, []byte("device_id: a\nhubb: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := config.LoadYAML(bad, &c); err == nil || !contains(err.Error(), "line 2") {
		t.Fatalf("unknown key: %v", err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
