package provision

import (
	"strings"
	"testing"
)

func TestEnsureConfigTxt(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		pin      int
		want     string // the whole output, or "" to check contains/idempotence only
		added    []string
	}{
		{"uncomments Raspberry Pi OS's line, appends w1", "#dtparam=i2c_arm=on\ndtparam=audio=on\n", 4,
			"dtparam=i2c_arm=on\ndtparam=audio=on\n\n# Outpost gateway: I2C and 1-Wire buses for its sensors\ndtoverlay=w1-gpio,gpiopin=4\n",
			[]string{I2CLine, "dtoverlay=w1-gpio,gpiopin=4"}},
		{"already set: unchanged", "dtparam=i2c_arm=on\ndtoverlay=w1-gpio\n", 4,
			"dtparam=i2c_arm=on\ndtoverlay=w1-gpio\n", nil},
		{"combined dtparam and pull-up overlay count", "dtparam=i2c_arm=on,spi=on\ndtoverlay=w1-gpio-pullup,gpiopin=17\n", 17,
			"dtparam=i2c_arm=on,spi=on\ndtoverlay=w1-gpio-pullup,gpiopin=17\n", nil},
		{"other pin: adds ours", "dtparam=i2c_arm=on\ndtoverlay=w1-gpio,gpiopin=17\n", 4,
			"dtparam=i2c_arm=on\ndtoverlay=w1-gpio,gpiopin=17\n\n# Outpost gateway: I2C and 1-Wire buses for its sensors\ndtoverlay=w1-gpio,gpiopin=4\n",
			[]string{"dtoverlay=w1-gpio,gpiopin=4"}},
		{"off later wins over a commented on: override at the end", "#dtparam=i2c_arm=on\ndtparam=i2c_arm=off\n", 4,
			"#dtparam=i2c_arm=on\ndtparam=i2c_arm=off\n\n# Outpost gateway: I2C and 1-Wire buses for its sensors\ndtparam=i2c_arm=on\ndtoverlay=w1-gpio,gpiopin=4\n",
			[]string{I2CLine, "dtoverlay=w1-gpio,gpiopin=4"}},
		{"set only for [pi4]: not global", "[pi4]\ndtparam=i2c_arm=on\ndtoverlay=w1-gpio\n", 4,
			"[pi4]\ndtparam=i2c_arm=on\ndtoverlay=w1-gpio\n\n[all]\n# Outpost gateway: I2C and 1-Wire buses for its sensors\ndtparam=i2c_arm=on\ndtoverlay=w1-gpio,gpiopin=4\n",
			[]string{I2CLine, "dtoverlay=w1-gpio,gpiopin=4"}},
		{"after [all] is global again", "[cm5]\nx=1\n[all]\ndtparam=i2c=on\ndtoverlay=w1-gpio,gpiopin=4\n", 4,
			"[cm5]\nx=1\n[all]\ndtparam=i2c=on\ndtoverlay=w1-gpio,gpiopin=4\n", nil},
		{"no trailing newline", "dtparam=audio=on", 4,
			"dtparam=audio=on\n\n# Outpost gateway: I2C and 1-Wire buses for its sensors\ndtparam=i2c_arm=on\ndtoverlay=w1-gpio,gpiopin=4\n",
			[]string{I2CLine, "dtoverlay=w1-gpio,gpiopin=4"}},
		{"empty", "", 4,
			"\n# Outpost gateway: I2C and 1-Wire buses for its sensors\ndtparam=i2c_arm=on\ndtoverlay=w1-gpio,gpiopin=4\n",
			[]string{I2CLine, "dtoverlay=w1-gpio,gpiopin=4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, added := EnsureConfigTxt(tc.in, tc.pin)
			if got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
			if strings.Join(added, "|") != strings.Join(tc.added, "|") {
				t.Errorf("added %q, want %q", added, tc.added)
			}
			again, added2 := EnsureConfigTxt(got, tc.pin)
			if again != got || len(added2) != 0 {
				t.Errorf("not idempotent: second run added %q:\n%s", added2, again)
			}
		})
	}
}

func TestEnsureFirstrunCmdline(t *testing.T) {
	base := "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 rootwait quiet"
	for _, tc := range []struct{ in, want, err string }{
		{base + "\n", base + " " + firstrunArgs + "\n", ""},
		{base, base + " " + firstrunArgs + "\n", ""},
		{base + " " + firstrunArgs + "\n", base + " " + firstrunArgs + "\n", ""},
		{base + " systemd.run=/boot/firstrun.sh systemd.run_success_action=none\n", base + " " + firstrunArgs + "\n", ""},
		{base + " systemd.run=/boot/firmware/x.sh\n", "", "already runs /boot/firmware/x.sh"},
		{base + " systemd.unit=rescue.target\n", "", "boots rescue.target"},
		{"\n", "", "empty"},
	} {
		got, err := EnsureFirstrunCmdline(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q:\n got %q %v\nwant %q", tc.in, got, err, tc.want)
		}
	}
}

func TestDetectImageAndChooseArch(t *testing.T) {
	fw := []string{"config.txt", "cmdline.txt", "start4.elf", "bcm2711-rpi-4-b.dtb"}
	img, err := DetectImage(append(fw, "kernel8.img", "kernel_2712.img"), "arm_64bit=1\n")
	if err != nil || img.Bits != 64 || !strings.Contains(img.Evidence, "arm_64bit=1") {
		t.Errorf("64-bit: %+v %v", img, err)
	}
	// Bookworm's 32-bit images carry kernel8.img too (64-bit kernel, 32-bit user space).
	img, err = DetectImage(append(fw, "kernel.img", "kernel7.img", "kernel7l.img", "kernel8.img"), "")
	if err != nil || img.Bits != 32 {
		t.Errorf("32-bit: %+v %v", img, err)
	}
	if _, err := DetectImage(append(fw, "vmlinuz.img"), ""); err == nil {
		t.Error("unknown kernels accepted")
	}
	if _, err := DetectImage([]string{"config.txt", "cmdline.txt", "kernel8.img"}, ""); err == nil || !strings.Contains(err.Error(), "start*.elf") {
		t.Errorf("no firmware: %v", err)
	}
	for _, tc := range []struct {
		b    Board
		bits int
		want Arch
		err  bool
	}{
		{BoardAuto, 64, ARM64, false}, {Pi3, 64, ARM64, false}, {Zero2, 64, ARM64, false}, {Pi4, 64, ARM64, false}, {Pi5, 64, ARM64, false},
		{Pi0, 64, "", true}, {Pi1, 64, "", true}, {Pi2, 64, "", true},
		{BoardAuto, 32, ARMv6, false}, {Pi0, 32, ARMv6, false}, {Pi1, 32, ARMv6, false},
		{Pi2, 32, ARMv7, false}, {Pi3, 32, ARMv7, false}, {Zero2, 32, ARMv7, false}, {Pi4, 32, ARMv7, false}, {Pi5, 32, ARMv7, false},
	} {
		a, _, err := ChooseArch(tc.b, Image{Bits: tc.bits})
		if (err != nil) != tc.err || a != tc.want {
			t.Errorf("%s on %d-bit: %s %v", tc.b, tc.bits, a, err)
		}
	}
	if _, err := ParseBoard("pi6"); err == nil {
		t.Error("pi6 accepted")
	}
	if b, err := ParseBoard("PI4"); err != nil || b != Pi4 {
		t.Errorf("PI4: %s %v", b, err)
	}
}

func TestConfigRendering(t *testing.T) {
	o := &Options{Config: []byte("hub: {address: old:1}\nsensors: []\n"), CA: nil, User: "gw", Hostname: "Barn-2", ClaimToken: []byte("c")}
	s := settings{CAPath: CAPath, ClaimTokenPath: ClaimTokenPath, User: "gw", Hostname: "barn-2", Writer: "t"}
	b, err := renderConfig(o, &s)
	if err != nil {
		t.Fatal(err)
	}
	out := string(b)
	for _, want := range []string{"address: 'old:1'", "ca: /etc/outpost/ca.crt", "token_file: /var/lib/outpost-gateway/gateway.token",
		"source: ntp", "device_id: barn-2", "claim_token_file: /etc/outpost/claim.token", "owner gw"} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}
	o.Config = []byte("data_dir: /srv/gw\n")
	if _, err := renderConfig(o, &s); err != nil || s.DataDir != "/srv/gw" || s.TokenPath != "/srv/gw/gateway.token" || s.StateDirectory != "" {
		t.Errorf("data_dir: %+v %v", s, err)
	}
	o.Config = []byte("data_dir: relative\n")
	if _, err := renderConfig(o, &s); err == nil {
		t.Error("relative data_dir accepted")
	}
	o.Config = []byte("- a list\n")
	if _, err := renderConfig(o, &s); err == nil {
		t.Error("a list accepted as config")
	}
}

func TestOptionsCheck(t *testing.T) {
	good := Options{CA: testCA(t), ClaimToken: []byte("c")}
	if _, err := good.check(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Options){
		"no token":       func(o *Options) { o.ClaimToken = nil },
		"two-line token": func(o *Options) { o.ClaimToken = []byte("a\nb") },
		"device token":   func(o *Options) { o.DeviceToken = []byte("notajwt") },
		"user root":      func(o *Options) { o.User = "root" },
		"bad user":       func(o *Options) { o.User = "Out Post" },
		"bad hub":        func(o *Options) { o.Hub = "hub.example.org" },
		"bad port":       func(o *Options) { o.Hub = "hub:99999" },
		"hostname":       func(o *Options) { o.Hostname = "bad_name" },
		"pin":            func(o *Options) { o.W1Pin = 40 },
		"binary path":    func(o *Options) { o.BinaryPath = "bin/outpost-gateway" },
		"wifi country":   func(o *Options) { o.WiFi = &WiFi{SSID: "x", Password: "12345678", Country: "United Kingdom"} },
		"wifi password":  func(o *Options) { o.WiFi = &WiFi{SSID: "x", Password: "short", Country: "GB"} },
		"wifi ssid":      func(o *Options) { o.WiFi = &WiFi{SSID: strings.Repeat("x", 33), Password: "12345678", Country: "GB"} },
	} {
		o := good
		mod(&o)
		if _, err := o.check(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	o := good
	o.WiFi = &WiFi{SSID: "x", Password: strings.Repeat("AB", 32), Country: "de"}
	s, err := o.check()
	if err != nil || s.WiFi.PSK != strings.Repeat("ab", 32) || s.WiFi.Country != "DE" {
		t.Errorf("hex PSK: %+v %v", s.WiFi, err)
	}
}
