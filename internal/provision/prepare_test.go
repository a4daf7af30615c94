package provision

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/outpost-iot/outpost/internal/provision/fat"
)

const gatewayYAML = `# my gateway
device_id: tank-1
hub:
  address: 127.0.0.1:8883   # replaced by --hub
  ca: ./ca.crt
  token_file: ./gw.token
clock:
  source: system
sensors:
  - {name: temp-tank, type: w1-ds18b20, rom: 28-0316a2797aff}
`

const claimToken = "claim_Zm9vYmFyYmF6cXV4"

func prepareOpts(t *testing.T) PrepareOptions {
	return PrepareOptions{
		Options: Options{
			Config:     []byte(gatewayYAML),
			Hub:        "hub.example.org:8883",
			CA:         testCA(t),
			ClaimToken: []byte(claimToken + "\n"),
			Hostname:   "tank-1",
			WiFi:       &WiFi{SSID: "farm net", Password: "correct horse", Country: "gb"},
			Writer:     "outpostctl flash prepare",
		},
		Board:  BoardAuto,
		Binary: fakeBinaries(t),
		Now:    func() time.Time { return stamp },
	}
}

func prepareFile(t *testing.T, img string, o PrepareOptions) (*Result, error) {
	t.Helper()
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	return Prepare(f, st.Size(), o)
}

func openBoot(t *testing.T, img string) *fat.FS {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fsys, err := fat.Open(readOnly{f}, bootStart, bootSize)
	if err != nil {
		t.Fatal(err)
	}
	return fsys
}

type readOnly struct{ *os.File }

func (readOnly) WriteAt([]byte, int64) (int, error) { return 0, errors.New("read-only") }

func bootFile(t *testing.T, fsys *fat.FS, name string) string {
	t.Helper()
	b, err := fsys.ReadFile(name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return string(b)
}

func TestPrepare64BitImage(t *testing.T) {
	img := buildImage(t, imageSpec{Bits: 64})
	rootBefore := hashRange(t, img, bootStart+bootSize, rootSize)
	o := prepareOpts(t)
	res, err := prepareFile(t, img, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Arch != ARM64 || res.Image.Bits != 64 || res.Partition != 1 || res.Label != "bootfs" {
		t.Errorf("result %+v", res)
	}
	fsys := openBoot(t, img)

	// The binary, byte for byte.
	want, _ := os.ReadFile(filepath.Join(o.Binary, ARM64.DistName()))
	if got, _ := fsys.ReadFile("outpost/outpost-gateway"); !bytes.Equal(got, want) {
		t.Errorf("binary: %d bytes, want the %d of %s", len(got), len(want), ARM64.DistName())
	}
	// The configuration: the operator's, with the Pi's paths.
	cfgText := bootFile(t, fsys, "outpost/gateway.yaml")
	var cfg struct {
		DeviceID string `yaml:"device_id"`
		Hub      struct {
			Address        string
			CA             string
			TokenFile      string `yaml:"token_file"`
			ClaimTokenFile string `yaml:"claim_token_file"`
		}
		Clock struct{ Source string }
	}
	if err := yaml.Unmarshal([]byte(cfgText), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Hub.Address != "hub.example.org:8883" || cfg.Hub.CA != CAPath || cfg.DeviceID != "tank-1" ||
		cfg.Hub.TokenFile != "/var/lib/outpost-gateway/gateway.token" || cfg.Hub.ClaimTokenFile != ClaimTokenPath || cfg.Clock.Source != "ntp" {
		t.Errorf("config not rewritten (%+v):\n%s", cfg, cfgText)
	}
	for _, s := range []string{"# my gateway", "# replaced by --hub", "claim_token_file: /etc/outpost/claim.token", "device_id: tank-1", "rom: 28-0316a2797aff"} {
		if !strings.Contains(cfgText, s) {
			t.Errorf("config lacks %q:\n%s", s, cfgText)
		}
	}
	if got := bootFile(t, fsys, "outpost/ca.crt"); got != string(o.CA) {
		t.Error("CA differs")
	}
	if got := bootFile(t, fsys, "outpost/claim.token"); got != claimToken+"\n" {
		t.Errorf("claim token %q", got)
	}
	unit := bootFile(t, fsys, "outpost/outpost-gateway.service")
	for _, s := range []string{"User=outpost", "SupplementaryGroups=i2c gpio", "Restart=always", "NoNewPrivileges=yes",
		"ProtectSystem=strict", "ReadWritePaths=/var/lib/outpost-gateway /opt/outpost/bin", "StateDirectory=outpost-gateway",
		"ExecStart=/opt/outpost/bin/outpost-gateway run --config /etc/outpost/gateway.yaml", "KillMode=mixed", "WantedBy=multi-user.target"} {
		if !strings.Contains(unit, s+"\n") {
			t.Errorf("unit lacks %q", s)
		}
	}
	if strings.Contains(unit, "\nWatchdogSec") {
		t.Error("WatchdogSec set, but the gateway sends no sd_notify keep-alives")
	}
	setup := bootFile(t, fsys, "outpost/setup.sh")
	for _, s := range []string{"set -Eeu", "useradd --system", "--groups i2c,gpio", "systemctl ${R:+--root=\"$R\"} enable outpost-gateway.service",
		"'/etc/outpost'", "imager_custom\" set_hostname 'tank-1'", "rm -rf \"$SRC\"", "/var/log/outpost-firstboot.log"} {
		if !strings.Contains(setup, s) {
			t.Errorf("setup.sh lacks %q", s)
		}
	}

	// cloud-init (Trixie and later).
	ud := bootFile(t, fsys, "user-data")
	var udv struct {
		Hostname string
		Runcmd   []string
	}
	if err := yaml.Unmarshal([]byte(ud), &udv); err != nil || !strings.HasPrefix(ud, "#cloud-config\n") {
		t.Fatalf("user-data %v:\n%s", err, ud)
	}
	if udv.Hostname != "tank-1" || len(udv.Runcmd) != 1 || udv.Runcmd[0] != runCmd {
		t.Errorf("user-data %+v", udv)
	}
	md := bootFile(t, fsys, "meta-data")
	if !strings.Contains(md, `instance-id: "outpost-`) || !strings.Contains(md, `local-hostname: "tank-1"`) {
		t.Errorf("meta-data:\n%s", md)
	}
	nc := bootFile(t, fsys, "network-config")
	var ncv struct {
		Network struct {
			Version int
			Wifis   map[string]struct {
				RegulatoryDomain string                               `yaml:"regulatory-domain"`
				AccessPoints     map[string]struct{ Password string } `yaml:"access-points"`
			}
		}
	}
	if err := yaml.Unmarshal([]byte(nc), &ncv); err != nil {
		t.Fatal(err)
	}
	psk, _ := pbkdf2.Key(sha1.New, "correct horse", []byte("farm net"), 4096, 32)
	w := ncv.Network.Wifis["wlan0"]
	if ncv.Network.Version != 2 || w.RegulatoryDomain != "GB" || w.AccessPoints["farm net"].Password != hex.EncodeToString(psk) {
		t.Errorf("network-config:\n%s", nc)
	}
	if strings.Contains(nc, "correct horse") || strings.Contains(setup, "correct horse") {
		t.Error("the Wi-Fi passphrase is on the card in clear")
	}

	// firstrun.sh (Bookworm) and the command line that runs it.
	fr := bootFile(t, fsys, "firstrun.sh")
	for _, s := range []string{firstrunMarker, "OUTPOST_NO_START=1 bash \"$BOOT/outpost/setup.sh\"", "rm -f \"$BOOT/firstrun.sh\"", "exit 0"} {
		if !strings.Contains(fr, s) {
			t.Errorf("firstrun.sh lacks %q", s)
		}
	}
	cl := bootFile(t, fsys, "cmdline.txt")
	if want := strings.TrimSuffix(stockCmdline, "\n") + " " + firstrunArgs + "\n"; cl != want {
		t.Errorf("cmdline.txt\n got %q\nwant %q", cl, want)
	}
	ct := bootFile(t, fsys, "config.txt")
	if strings.Count(ct, "\ndtparam=i2c_arm=on\n") != 1 || strings.Contains(ct, "#dtparam=i2c_arm=on") ||
		strings.Count(ct, "dtoverlay=w1-gpio,gpiopin=4\n") != 1 {
		t.Errorf("config.txt:\n%s", ct)
	}
	for _, sh := range []string{"outpost/setup.sh", "firstrun.sh"} {
		bashSyntax(t, bootFile(t, fsys, sh))
	}
	if hashRange(t, img, bootStart+bootSize, rootSize) != rootBefore {
		t.Error("the root partition was changed")
	}
	outsideChecks(t, img)

	// Twice: the same card, nothing added twice.
	before := map[string]string{}
	for _, n := range []string{"config.txt", "cmdline.txt", "user-data", "meta-data", "firstrun.sh"} {
		before[n] = bootFile(t, fsys, n)
	}
	res, err = prepareFile(t, img, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Files) != 0 || len(res.Unchanged) < 10 {
		t.Errorf("second run rewrote %v (unchanged %v)", res.Files, res.Unchanged)
	}
	fsys = openBoot(t, img)
	for n, b := range before {
		if got := bootFile(t, fsys, n); got != b {
			t.Errorf("second run changed %s:\n%s\n---\n%s", n, b, got)
		}
	}
	if _, err := fsys.Stat("outpost/firstrun-previous.sh"); err == nil {
		t.Error("our own firstrun.sh was kept as a previous one")
	}
	outsideChecks(t, img)
}

func TestPrepare32BitImage(t *testing.T) {
	for _, tc := range []struct {
		board Board
		arch  Arch
	}{{BoardAuto, ARMv6}, {Pi0, ARMv6}, {Pi1, ARMv6}, {Pi2, ARMv7}, {Pi3, ARMv7}, {Zero2, ARMv7}, {Pi4, ARMv7}, {Pi5, ARMv7}} {
		t.Run(string(tc.board), func(t *testing.T) {
			img := buildImage(t, imageSpec{Bits: 32})
			o := prepareOpts(t)
			o.Board, o.WiFi, o.Hostname = tc.board, nil, ""
			res, err := prepareFile(t, img, o)
			if err != nil {
				t.Fatal(err)
			}
			if res.Image.Bits != 32 || res.Arch != tc.arch {
				t.Fatalf("bits %d arch %s, want 32 %s (%s)", res.Image.Bits, res.Arch, tc.arch, res.Image.Evidence)
			}
			want, _ := os.ReadFile(filepath.Join(o.Binary, tc.arch.DistName()))
			fsys := openBoot(t, img)
			if got, _ := fsys.ReadFile("outpost/outpost-gateway"); !bytes.Equal(got, want) {
				t.Error("wrong binary")
			}
			if _, err := fsys.Stat("network-config"); err == nil {
				t.Error("network-config written without Wi-Fi")
			}
			ct := bootFile(t, fsys, "config.txt")
			if strings.Count(ct, "dtparam=i2c_arm=on") != 1 || strings.Count(ct, "dtoverlay=w1-gpio,gpiopin=4") != 1 {
				t.Errorf("config.txt:\n%s", ct)
			}
		})
	}
}

func TestPrepareRefuses(t *testing.T) {
	rnd := make([]byte, 4<<20)
	rand.Read(rnd)
	rnd[510], rnd[511] = 0, 0
	write := func(b []byte) string {
		p := filepath.Join(t.TempDir(), "x.img")
		os.WriteFile(p, b, 0o644)
		return p
	}
	bare := make([]byte, bootSize)
	fat.Format(memDev(bare), 0, bootSize, fat.FormatOptions{Label: "bootfs"})

	for _, tc := range []struct {
		name string
		img  func() string
		mod  func(*PrepareOptions)
		is   error
		msg  string
	}{
		{"random bytes", func() string { return write(rnd) }, nil, ErrPartitionTable, "no boot signature"},
		{"xz-compressed image", func() string { return write(append([]byte("\xfd7zXZ\x00\x00"), rnd[:4096]...)) }, nil, ErrPartitionTable, "decompress it first"},
		{"zeros", func() string { return write(make([]byte, 4<<20)) }, nil, ErrPartitionTable, "no MBR partition table"},
		{"bare FAT without a partition table", func() string { return write(bare) }, nil, ErrPartitionTable, "bare file system"},
		{"FAT without Pi markers", func() string {
			return buildImage(t, imageSpec{Bits: 64, Files: map[string]string{"start4.elf": "", "bootcode.bin": "", "fixup4.dat": "", "kernel8.img": "", "kernel_2712.img": "",
				"bcm2711-rpi-4-b.dtb": "", "bcm2712-rpi-5-b.dtb": "", "bcm2710-rpi-zero-2-w.dtb": "", "cmdline.txt": ""}})
		}, nil, ErrNotRaspberryPiOS, "no cmdline.txt, kernel*.img, start*.elf"},
		{"no Linux root partition", func() string { return buildImage(t, imageSpec{Bits: 64, NoLinux: true}) }, nil, ErrNotRaspberryPiOS, "no Linux root partition"},
		{"64-bit image for a Pi Zero", func() string { return buildImage(t, imageSpec{Bits: 64}) }, func(o *PrepareOptions) { o.Board = Pi0 }, nil, "does not boot on a Pi Zero"},
		{"armv7 binary for a Pi Zero", func() string { return buildImage(t, imageSpec{Bits: 32}) }, func(o *PrepareOptions) {
			o.Board = Pi0
			o.Binary = filepath.Join(o.Binary, ARMv7.DistName())
		}, nil, "GOARM=7"},
		{"arm64 binary for a 32-bit image", func() string { return buildImage(t, imageSpec{Bits: 32}) }, func(o *PrepareOptions) {
			o.Binary = filepath.Join(o.Binary, ARM64.DistName())
		}, nil, "is for EM_AARCH64"},
		{"a config the gateway rejects", func() string { return buildImage(t, imageSpec{Bits: 64}) }, func(o *PrepareOptions) {
			o.ValidateConfig = func([]byte) error { return errors.New("sensors: no sensors configured") }
		}, nil, "no sensors configured"},
		{"a CA that is not PEM", func() string { return buildImage(t, imageSpec{Bits: 64}) }, func(o *PrepareOptions) { o.CA = []byte("hello") }, nil, "no PEM CERTIFICATE"},
		{"pin 2 for 1-Wire", func() string { return buildImage(t, imageSpec{Bits: 64}) }, func(o *PrepareOptions) { o.W1Pin = 2 }, nil, "I2C bus"},
		{"cmdline running another script", func() string {
			return buildImage(t, imageSpec{Bits: 64, Files: map[string]string{"cmdline.txt": "root=PARTUUID=1-02 rootwait systemd.run=/boot/other.sh\n"}})
		}, nil, nil, "already runs /boot/other.sh"},
		{"too small a boot partition", func() string {
			return buildImage(t, imageSpec{Bits: 64, BootSize: 1 << 20})
		}, nil, nil, "nothing was written"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := tc.img()
			before := hashRange(t, img, 0, fileSize(t, img))
			o := prepareOpts(t)
			if tc.mod != nil {
				tc.mod(&o)
			}
			_, err := prepareFile(t, img, o)
			if err == nil {
				t.Fatal("accepted")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q lacks %q", err, tc.msg)
			}
			if hashRange(t, img, 0, fileSize(t, img)) != before {
				t.Error("a refused image was changed")
			}
		})
	}
	t.Run("NoSpaceError", func(t *testing.T) {
		img := buildImage(t, imageSpec{Bits: 64, BootSize: 1 << 20})
		_, err := prepareFile(t, img, prepareOpts(t))
		var ns *NoSpaceError
		if !errors.As(err, &ns) || ns.Need <= ns.Free {
			t.Errorf("%v", err)
		}
	})
}

// TestPrepareKeepsImagerCustomisation: a card already customised with
// Raspberry Pi Imager keeps its firstrun.sh (run first) and its user-data.
func TestPrepareKeepsImagerCustomisation(t *testing.T) {
	imagerFirstrun := "#!/bin/bash\nset +e\n/usr/lib/userconf-pi/userconf 'pi' '$6$x'\nrm -f /boot/firstrun.sh\nsed -i 's| systemd.run.*||g' /boot/cmdline.txt\nexit 0\n"
	imagerUD := "#cloud-config\nhostname: raspberrypi\nusers:\n- name: pi\n  groups: users,sudo\n  ssh_authorized_keys:\n    - ssh-ed25519 AAAA test\nruncmd:\n  - [ rfkill, unblock, wifi ]\n"
	img := buildImage(t, imageSpec{Bits: 64, Files: map[string]string{
		"firstrun.sh": imagerFirstrun,
		"user-data":   imagerUD,
		"cmdline.txt": strings.TrimSuffix(stockCmdline, "\n") + " " + firstrunArgs + "\n",
	}})
	o := prepareOpts(t)
	for i := 0; i < 2; i++ {
		res, err := prepareFile(t, img, o)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Chained {
			t.Error("Imager's firstrun.sh not chained")
		}
	}
	fsys := openBoot(t, img)
	if got := bootFile(t, fsys, "outpost/firstrun-previous.sh"); got != imagerFirstrun {
		t.Errorf("previous firstrun.sh:\n%s", got)
	}
	if cl := bootFile(t, fsys, "cmdline.txt"); strings.Count(cl, "systemd.run=") != 1 || strings.Count(cl, "kernel-command-line.target") != 1 {
		t.Errorf("cmdline.txt %q", cl)
	}
	var ud struct {
		Hostname string
		Users    []map[string]any
		Runcmd   []any
	}
	if err := yaml.Unmarshal([]byte(bootFile(t, fsys, "user-data")), &ud); err != nil {
		t.Fatal(err)
	}
	if ud.Hostname != "tank-1" || len(ud.Users) != 1 || len(ud.Runcmd) != 2 || ud.Runcmd[1] != runCmd {
		t.Errorf("merged user-data: %+v", ud)
	}
}

// TestPrepareOnMkfsVfatImage prepares a boot partition made and filled by
// dosfstools and mtools (not by package fat), then has fsck.fat check it.
func TestPrepareOnMkfsVfatImage(t *testing.T) {
	for _, tool := range []string{"mkfs.vfat", "mcopy", "fsck.vfat"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: the outside-built image case is skipped", tool)
		}
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "raspios.img")
	part := filepath.Join(dir, "boot.part")
	run := func(name string, args ...string) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	run("truncate", "-s", "256M", part)
	run("mkfs.vfat", "-F", "32", "-s", "4", "-n", "bootfs", part)
	for n, c := range map[string]string{"config.txt": bookwormConfig, "cmdline.txt": stockCmdline, "start4.elf": "x", "kernel8.img": "k", "bcm2711-rpi-4-b.dtb": "d"} {
		src := filepath.Join(dir, n)
		os.WriteFile(src, []byte(c), 0o644)
		run("mcopy", "-i", part, src, "::/"+n)
	}
	run("truncate", "-s", "288M", img)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	err = fat.WriteMBR(f, 1, []fat.Partition{{Type: 0x0c, Start: 1 << 20, Size: 256 << 20}, {Type: 0x83, Start: 257 << 20, Size: 31 << 20}})
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	run("dd", "if="+part, "of="+img, "bs=1M", "seek=1", "conv=notrunc", "status=none")
	if _, err := prepareFile(t, img, prepareOpts(t)); err != nil {
		t.Fatal(err)
	}
	run("dd", "if="+img, "of="+part, "bs=1M", "skip=1", "count=256", "status=none")
	out, err := exec.Command("fsck.vfat", "-n", part).CombinedOutput()
	if err != nil {
		t.Errorf("fsck.vfat after prepare: %v\n%s", err, out)
	}
	mtype := exec.Command("mtype", "-i", img+"@@1M", "::/outpost/claim.token")
	mtype.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	if b, err := mtype.Output(); err != nil || string(b) != claimToken+"\n" {
		t.Errorf("mtype claim.token: %q %v", b, err)
	}
}

// outsideChecks reads the prepared image with other tools when they are
// installed: mtools (mtype) and dosfstools (fsck.fat).
func outsideChecks(t *testing.T, img string) {
	t.Helper()
	if _, err := exec.LookPath("mtype"); err == nil {
		cmd := exec.Command("mtype", "-i", img+"@@"+strconv.Itoa(bootStart), "::/outpost/claim.token")
		cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
		if b, err := cmd.Output(); err != nil || string(b) != claimToken+"\n" {
			t.Errorf("mtype claim.token: %q %v", b, err)
		}
	} else {
		t.Log("mtools not installed: cross-check skipped")
	}
	if _, err := exec.LookPath("fsck.vfat"); err == nil {
		part := filepath.Join(t.TempDir(), "boot.part")
		src, _ := os.Open(img)
		b := make([]byte, bootSize)
		src.ReadAt(b, bootStart)
		src.Close()
		os.WriteFile(part, b, 0o600)
		if out, err := exec.Command("fsck.vfat", "-n", part).CombinedOutput(); err != nil || bytes.Contains(out, []byte("Free cluster summary wrong")) {
			t.Errorf("fsck.vfat: %v\n%s", err, out)
		}
	} else {
		t.Log("dosfstools not installed: fsck check skipped")
	}
}

func bashSyntax(t *testing.T, script string) {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		return
	}
	cmd := exec.Command("bash", "-n")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("bash -n: %v\n%s\n%s", err, out, script)
	}
}

func fileSize(t *testing.T, p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

type memDev []byte

func (m memDev) ReadAt(p []byte, off int64) (int, error)  { return copy(p, m[off:]), nil }
func (m memDev) WriteAt(p []byte, off int64) (int, error) { return copy(m[off:], p), nil }
