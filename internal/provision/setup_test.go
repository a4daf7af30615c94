package provision

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// stubs writes stand-ins for the commands setup.sh runs that change the
// system (user and group database, ownership, systemd): they log their
// arguments and keep just enough state for the script's checks.
func stubs(t *testing.T) (env []string, logFile string) {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not installed")
	}
	dir := t.TempDir()
	bin, state := filepath.Join(dir, "bin"), filepath.Join(dir, "state")
	os.MkdirAll(bin, 0o755)
	os.MkdirAll(state, 0o755)
	logFile = filepath.Join(dir, "calls.log")
	scripts := map[string]string{
		"getent":    `[ "$1" = group ] && [ -f "$STUB_STATE/group-$2" ]`,
		"id":        `[ "$1" = -u ] && [ -n "${2:-}" ] && [ -f "$STUB_STATE/user-$2" ] && echo 999`,
		"groupadd":  `touch "$STUB_STATE/group-${@: -1}"`,
		"useradd":   `touch "$STUB_STATE/user-${@: -1}"`,
		"usermod":   `:`,
		"chown":     `:`,
		"systemctl": `:`,
	}
	for name, body := range scripts {
		s := "#!/bin/bash\necho \"" + name + " $*\" >>\"$STUB_LOG\"\n" + body + "\n"
		if err := os.WriteFile(filepath.Join(bin, name), []byte(s), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "STUB_STATE=" + state, "STUB_LOG=" + logFile}, logFile
}

func fakeRoot(t *testing.T) string {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("raspberrypi\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/hosts"), []byte("127.0.0.1\tlocalhost\n127.0.1.1\traspberrypi\n"), 0o644)
	return root
}

func mode(t *testing.T, p string) os.FileMode {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

// TestSetupScriptRuns runs the setup.sh a prepared card carries, as first
// boot would, in a scratch root with stand-ins for useradd and systemctl.
func TestSetupScriptRuns(t *testing.T) {
	img := buildImage(t, imageSpec{Bits: 64})
	o := prepareOpts(t)
	if _, err := prepareFile(t, img, o); err != nil {
		t.Fatal(err)
	}
	fsys := openBoot(t, img)
	list, err := fsys.ReadDir(BootDir)
	if err != nil {
		t.Fatal(err)
	}
	boot := filepath.Join(t.TempDir(), "boot")
	copyOut := func() {
		os.MkdirAll(filepath.Join(boot, BootDir), 0o755)
		for _, i := range list {
			b, _ := fsys.ReadFile(BootDir + "/" + i.Name)
			os.WriteFile(filepath.Join(boot, BootDir, i.Name), b, 0o644) // FAT has no modes
		}
	}
	copyOut()
	env, calls := stubs(t)
	root := fakeRoot(t)
	run := func() string {
		t.Helper()
		cmd := exec.Command("bash", filepath.Join(boot, BootDir, "setup.sh"))
		cmd.Env = append(os.Environ(), append(env, "OUTPOST_ROOT="+root, "OUTPOST_NO_START=1")...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("setup.sh: %v\n%s", err, out)
		}
		return string(out)
	}
	out := run()

	bin, _ := os.ReadFile(filepath.Join(o.Binary, ARM64.DistName()))
	if got, _ := os.ReadFile(filepath.Join(root, RealBinary)); !bytes.Equal(got, bin) {
		t.Error("binary not installed")
	}
	if l, err := os.Readlink(filepath.Join(root, DefaultBinary)); err != nil || l != RealBinary {
		t.Errorf("%s links to %q (%v), want %s", DefaultBinary, l, err, RealBinary)
	}
	for p, m := range map[string]os.FileMode{RealBinary: 0o755, "/opt/outpost/bin": 0o755, ConfigDir: 0o750, ConfigPath: 0o640, CAPath: 0o644,
		ClaimTokenPath: 0o600, UnitPath: 0o644, DefaultDataDir: 0o750, "/etc/modules-load.d/outpost-gateway.conf": 0o644} {
		if got := mode(t, filepath.Join(root, p)); got != m {
			t.Errorf("%s mode %o, want %o", p, got, m)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(root, ClaimTokenPath)); string(b) != claimToken+"\n" {
		t.Errorf("claim token %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/hostname")); string(b) != "tank-1\n" {
		t.Errorf("hostname %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/hosts")); !strings.Contains(string(b), "127.0.1.1\ttank-1\n") {
		t.Errorf("hosts %q", b)
	}
	nm, _ := os.ReadFile(filepath.Join(root, "etc/NetworkManager/system-connections/outpost-wifi.nmconnection"))
	if !strings.Contains(string(nm), "ssid=farm net\n") || !strings.Contains(string(nm), "psk=") || strings.Contains(string(nm), "correct horse") {
		t.Errorf("Wi-Fi keyfile:\n%s", nm)
	}
	if _, err := os.Stat(filepath.Join(boot, BootDir)); !os.IsNotExist(err) {
		t.Error("the boot partition copy (with the claim token) was not removed")
	}
	log, _ := os.ReadFile(filepath.Join(root, LogPath))
	if !strings.Contains(string(log), "outpost-setup: done") || !strings.Contains(out, "created system user outpost") {
		t.Errorf("log:\n%s", log)
	}
	c, _ := os.ReadFile(calls)
	for _, want := range []string{"groupadd --system i2c", "groupadd --system gpio",
		"useradd --system --user-group --groups i2c,gpio --home-dir /var/lib/outpost-gateway --no-create-home --shell /usr/sbin/nologin --comment Outpost gateway outpost",
		"chown outpost:outpost " + root + ClaimTokenPath, "chown root:outpost " + root + ConfigPath,
		"chown outpost:outpost " + root + "/opt/outpost/bin", "chown outpost:outpost " + root + RealBinary,
		"systemctl --root=" + root + " enable outpost-gateway.service"} {
		if !strings.Contains(string(c), want+"\n") {
			t.Errorf("no call %q in:\n%s", want, c)
		}
	}
	if strings.Contains(string(c), "restart") {
		t.Error("started under OUTPOST_NO_START=1")
	}

	// Again (first boot interrupted before the clean-up): nothing twice.
	os.Truncate(calls, 0)
	copyOut()
	out = run()
	c, _ = os.ReadFile(calls)
	if strings.Contains(string(c), "useradd") || strings.Contains(string(c), "groupadd") || strings.Contains(out, "installed ") {
		t.Errorf("second run redid work:\n%s\n%s", c, out)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/hosts")); strings.Count(string(b), "127.0.1.1") != 1 {
		t.Errorf("hosts %q", b)
	}
	// And once its files are gone (cloud-init after firstrun.sh): nothing to do.
	os.MkdirAll(filepath.Join(boot, BootDir), 0o755)
	b, _ := fsys.ReadFile(BootDir + "/setup.sh")
	os.WriteFile(filepath.Join(boot, BootDir, "setup.sh"), b, 0o644)
	if out := run(); !strings.Contains(out, "nothing to install") {
		t.Errorf("third run: %s", out)
	}
}

func TestInstall(t *testing.T) {
	root := fakeRoot(t)
	os.MkdirAll(filepath.Join(root, "boot/firmware"), 0o755)
	os.WriteFile(filepath.Join(root, "boot/firmware/config.txt"), []byte(bookwormConfig), 0o755)
	os.WriteFile(filepath.Join(root, "boot/config.txt"), []byte("DO NOT EDIT THIS FILE\n\nThe file you are looking for has moved to /boot/firmware/config.txt\n"), 0o644)
	self := filepath.Join(t.TempDir(), "outpost-gateway")
	os.WriteFile(self, []byte("\x7fELF fake"), 0o755)
	env, calls := stubs(t)
	o := InstallOptions{
		Options: Options{Config: []byte(gatewayYAML), Hub: "hub.example.org:8883", CA: testCA(t), ClaimToken: []byte(claimToken), Writer: "outpost-gateway install"},
		Self:    self, Root: root, Env: env, Geteuid: func() int { return 0 },
	}

	// Dry run: the plan, and nothing changes (no root needed).
	dry := o
	dry.DryRun, dry.Geteuid = true, func() int { return 1000 }
	var out bytes.Buffer
	res, err := Install(context.Background(), dry, &out)
	if err != nil {
		t.Fatal(err)
	}
	plan := strings.Join(res.Plan, "\n")
	for _, want := range []string{"install " + self + " as /opt/outpost/bin/outpost-gateway (owned by outpost: OTA updates replace it), linked from /usr/local/bin/outpost-gateway", "write /etc/outpost/gateway.yaml",
		"write /etc/outpost/claim.token (0600, owner outpost)", "create system user outpost in groups i2c and gpio",
		"add to " + root + "/boot/firmware/config.txt: dtparam=i2c_arm=on, dtoverlay=w1-gpio,gpiopin=4 (takes effect after a reboot)",
		"enable and start outpost-gateway.service"} {
		if !strings.Contains(plan, want) {
			t.Errorf("plan lacks %q:\n%s", want, plan)
		}
	}
	if !res.RebootNeeded {
		t.Error("dry run: a reboot will be needed")
	}
	if _, err := os.Stat(filepath.Join(root, ConfigDir)); err == nil {
		t.Error("dry run wrote files")
	}
	if b, _ := os.ReadFile(filepath.Join(root, "boot/firmware/config.txt")); string(b) != bookwormConfig {
		t.Error("dry run edited config.txt")
	}

	// Not root: refused before anything is written.
	nonRoot := o
	nonRoot.Geteuid = func() int { return 1000 }
	if _, err := Install(context.Background(), nonRoot, &out); !errors.Is(err, ErrNotRoot) {
		t.Errorf("non-root: %v", err)
	}

	// For real, twice.
	for i := 0; i < 2; i++ {
		out.Reset()
		res, err := Install(context.Background(), o, &out)
		if err != nil {
			t.Fatalf("run %d: %v\n%s", i, err, out.String())
		}
		if res.RebootNeeded != (i == 0) {
			t.Errorf("run %d: reboot needed %v", i, res.RebootNeeded)
		}
	}
	ct, _ := os.ReadFile(filepath.Join(root, "boot/firmware/config.txt"))
	if strings.Count(string(ct), "dtparam=i2c_arm=on") != 1 || strings.Count(string(ct), "dtoverlay=w1-gpio,gpiopin=4") != 1 {
		t.Errorf("config.txt:\n%s", ct)
	}
	if mode(t, filepath.Join(root, "boot/firmware/config.txt")) != 0o755 {
		t.Error("config.txt lost its mode")
	}
	if b, _ := os.ReadFile(filepath.Join(root, RealBinary)); string(b) != "\x7fELF fake" {
		t.Error("binary not installed")
	}
	cfg, _ := os.ReadFile(filepath.Join(root, ConfigPath))
	if !strings.Contains(string(cfg), "address: hub.example.org:8883") || !strings.Contains(string(cfg), "source: ntp") {
		t.Errorf("config:\n%s", cfg)
	}
	c, _ := os.ReadFile(calls)
	if strings.Count(string(c), "systemctl --root="+root+" restart outpost-gateway.service") != 2 {
		t.Errorf("calls:\n%s", c)
	}
}
