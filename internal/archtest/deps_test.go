// Package archtest keeps the dependency rules of ../shared/STYLE.md: the
// gateway binary must not link the broker or the hub's store, and the
// protocol package stays standard-library only.
package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

func TestGatewayDoesNotLinkHub(t *testing.T) {
	ds := deps(t, "github.com/outpost-iot/outpost/cmd/outpost-gateway")
	if len(ds) < 50 {
		t.Fatalf("suspiciously few deps (%d): the check would be vacuous", len(ds))
	}
	for _, d := range ds {
		for _, banned := range []string{"github.com/mochi-mqtt/", "github.com/outpost-iot/outpost/hub", "github.com/golang-jwt/"} {
			if strings.HasPrefix(d, banned) {
				t.Errorf("outpost-gateway links %s", d)
			}
		}
	}
}

func TestProtocolIsStdlibOnly(t *testing.T) {
	for _, d := range deps(t, "github.com/outpost-iot/outpost/internal/protocol") {
		if strings.Contains(strings.SplitN(d, "/", 2)[0], ".") && d != "github.com/outpost-iot/outpost/internal/protocol" {
			t.Errorf("internal/protocol depends on %s", d)
		}
	}
}
