package cli

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-iot/outpost/gateway"
	"github.com/outpost-iot/outpost/internal/config"
	"github.com/outpost-iot/outpost/internal/provision/fat"
	pt "github.com/outpost-iot/outpost/internal/provision/provisiontest"
)

const piGateway = `device_id: tank-1
hub: {address: 127.0.0.1:8883, ca: ca.crt, token_file: gw.token}
sensors:
  - {name: temp-tank, type: w1-ds18b20, rom: 28-0316a2797aff, interval: 10s}
  - {name: ph-tank, type: ezo-ph}
`

func TestFlashPrepare(t *testing.T) {
	t.Cleanup(pt.Cleanup)
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := file("gateway.yaml", piGateway)
	ca := file("ca.crt", string(pt.CA(t)))
	claim := file("claim.token", "claim_abc123\n")
	pw := file("wifi.pass", "correct horse\n")
	bins := pt.Binaries(t)
	flash := func(extra ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		args := append([]string{"flash", "prepare", "--config", cfg, "--ca", ca, "--claim-token", claim, "--binary", bins}, extra...)
		err := Run(context.Background(), args, strings.NewReader(""), &out, &errOut)
		return out.String(), errOut.String(), err
	}

	img := pt.Image(t, pt.ImageSpec{Bits: 64})
	before := pt.HashRange(t, img, 0, pt.BootStart+pt.BootSize+pt.RootSize)
	out, _, err := flash("--image", img, "--hub", "hub.example.org:8883", "--dry-run")
	if err != nil || !strings.Contains(out, "would write: outpost/outpost-gateway") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if pt.HashRange(t, img, 0, pt.BootStart+pt.BootSize+pt.RootSize) != before {
		t.Error("--dry-run changed the image")
	}

	out, _, err = flash("--image", img, "--hub", "hub.example.org:8883", "--board", "pi4", "--hostname", "tank-1",
		"--wifi-ssid", "farm", "--wifi-password-file", pw, "--wifi-country", "GB")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"64-bit Raspberry Pi OS", "gateway build: arm64", "wrote: outpost/outpost-gateway, outpost/gateway.yaml",
		"network-config", "cmdline.txt", "config.txt: dtparam=i2c_arm=on, dtoverlay=w1-gpio,gpiopin=4", "next: put the card in the Pi"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The configuration on the card passes the gateway's own loader.
	f, _ := os.Open(img)
	defer f.Close()
	fsys, err := fat.Open(roFile{f}, pt.BootStart, pt.BootSize)
	if err != nil {
		t.Fatal(err)
	}
	b, err := fsys.ReadFile("outpost/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := gateway.DefaultConfig()
	if err := config.DecodeYAML(b, &c, "card"); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Hub.Address != "hub.example.org:8883" || c.Hub.CA != "/etc/outpost/ca.crt" || c.Clock.Source != "ntp" {
		t.Errorf("card config %+v", c.Hub)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"a config the gateway rejects", []string{"--image", img, "--config", file("bad.yaml", "device_id: x\nsensors: []\n")}, "sensors"},
		{"not a block device", []string{"--device", img}, "not a block device"},
		{"compressed", []string{"--image", file("raspios.img.xz", "\xfd7zXZ\x00\x00 and the rest")}, "decompress it first"},
		{"no target", nil, "give --image FILE, --device DEV"},
		{"half the Wi-Fi", []string{"--image", img, "--wifi-ssid", "farm"}, "--wifi-password-file and --wifi-country together"},
		{"bad board", []string{"--image", img, "--board", "pi9"}, "board \"pi9\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := pt.HashRange(t, img, 0, pt.BootStart+pt.BootSize+pt.RootSize)
			_, _, err := flash(tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
			if pt.HashRange(t, img, 0, pt.BootStart+pt.BootSize+pt.RootSize) != before {
				t.Error("a refused run changed the image")
			}
		})
	}
	var out2, errOut bytes.Buffer
	if err := Run(context.Background(), []string{"flash", "prepare", "--image", img, "--config", cfg, "--claim-token", claim, "--ca", ""}, nil, &out2, &errOut); err == nil || !strings.Contains(err.Error(), "OUTPOST_CA") {
		t.Errorf("no CA: %v", err)
	}
}

// TestFlashToDevice writes an image to a real block device (a loop device
// over a file, so it needs root and losetup), verifies it and prepares it:
// the device checks, O_EXCL, the progress bar, the read-back verify and
// sector-aligned editing all run for real.
func TestFlashToDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a loop device")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("losetup not installed")
	}
	t.Cleanup(pt.Cleanup)
	dir := t.TempDir()
	backing := filepath.Join(dir, "card")
	if err := os.WriteFile(backing, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(backing, 64<<20); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "-f", "--show", backing).Output()
	if err != nil {
		t.Skipf("no loop device here: %v", err)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })

	cfg := filepath.Join(dir, "gateway.yaml")
	os.WriteFile(cfg, []byte(piGateway), 0o600)
	ca := filepath.Join(dir, "ca.crt")
	os.WriteFile(ca, pt.CA(t), 0o600)
	claim := filepath.Join(dir, "claim.token")
	os.WriteFile(claim, []byte("claim_loop\n"), 0o600)
	img := pt.Image(t, pt.ImageSpec{Bits: 32})
	flash := func(stdin string, extra ...string) (string, string, error) {
		var o, e bytes.Buffer
		args := append([]string{"flash", "prepare", "--config", cfg, "--ca", ca, "--claim-token", claim, "--binary", pt.Binaries(t), "--device", loop}, extra...)
		err := Run(context.Background(), args, strings.NewReader(stdin), &o, &e)
		return o.String(), e.String(), err
	}

	// Not confirmed: nothing written.
	if _, _, err := flash("no\n", "--image", img); err == nil || !strings.Contains(err.Error(), "not confirmed") {
		t.Fatalf("unconfirmed: %v", err)
	}
	if b, _ := os.ReadFile(backing); !bytes.Equal(b[:512], make([]byte, 512)) {
		t.Fatal("an unconfirmed run wrote to the card")
	}
	stdout, stderr, err := flash("yes\n", "--image", img, "--board", "pi0")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	for _, want := range []string{"writing", "verifying", "100%", "verified: sha256"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if !strings.Contains(stdout, "gateway build: armv6") {
		t.Errorf("stdout:\n%s", stdout)
	}
	// The card now holds the image with the gateway's files on its boot partition.
	f, err := os.Open(backing)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fsys, err := fat.Open(roFile{f}, pt.BootStart, pt.BootSize)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := fsys.ReadFile("outpost/claim.token"); err != nil || string(b) != "claim_loop\n" {
		t.Errorf("claim token on the card: %q %v", b, err)
	}
	if pt.HashRange(t, backing, pt.BootStart+pt.BootSize, pt.RootSize) != pt.HashRange(t, img, pt.BootStart+pt.BootSize, pt.RootSize) {
		t.Error("root partition on the card differs from the image's")
	}
	// The card alone, again: nothing to change.
	stdout, _, err = flash("", "--board", "pi0")
	if err != nil || strings.Contains(stdout, "wrote:") || !strings.Contains(stdout, "already in place") {
		t.Errorf("second run on the card: %v\n%s", err, stdout)
	}
}
