// Package provisiontest builds what tests of Raspberry Pi provisioning
// need: a small image shaped like Raspberry Pi OS, fake gateway binaries for
// every build (real ELF files with real Go build info) and a CA certificate.
package provisiontest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/provision/fat"
)

// The image's layout.
const (
	BootStart = 1 << 20
	BootSize  = 40 << 20 // 81k clusters of 512 bytes: FAT32 even for mtools
	RootSize  = 8 << 20
)

// Stamp is the time the image's files carry.
var Stamp = time.Date(2025, 10, 2, 12, 0, 0, 0, time.UTC)

// BookwormConfig is config.txt as Raspberry Pi OS Bookworm ships it (abridged).
const BookwormConfig = `# For more options and information see
# http://rptl.io/configtxt
# Some settings may impact device functionality. See link above for details

# Uncomment some or all of these to enable the optional hardware interfaces
#dtparam=i2c_arm=on
#dtparam=i2s=on
#dtparam=spi=on

# Enable audio (loads snd_bcm2835)
dtparam=audio=on

# Automatically load overlays for detected cameras
camera_auto_detect=1

# Enable DRM VC4 V3D driver
dtoverlay=vc4-kms-v3d
max_framebuffers=2

# Run in 64-bit mode
arm_64bit=1

[cm4]
# Enable host mode on the 2711 built-in XHCI USB controller.
otg_mode=1

[cm5]
dtoverlay=dwc2,dr_mode=host

[all]
`

// StockCmdline is cmdline.txt as a fresh Bookworm image has it.
const StockCmdline = "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n"

// ImageSpec shapes an image.
type ImageSpec struct {
	Bits     int               // 32 or 64
	Files    map[string]string // extra or replaced boot files ("" deletes)
	BootSize int64             // BootSize when 0
	NoLinux  bool              // the second partition is not Linux-typed
}

// Image writes a small image shaped like Raspberry Pi OS: an MBR, a
// FAT32 boot partition with the firmware's files, and an ext4-typed root
// partition (an ext4 file system made by mke2fs -d when e2fsprogs is
// installed, else a zeroed region).
func Image(t testing.TB, spec ImageSpec) string {
	t.Helper()
	bsize := spec.BootSize
	if bsize == 0 {
		bsize = BootSize
	}
	img := filepath.Join(t.TempDir(), "raspios.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	total := int64(BootStart) + bsize + RootSize
	if err := f.Truncate(total); err != nil {
		t.Fatal(err)
	}
	parts := []fat.Partition{{Type: 0x0c, Start: BootStart, Size: bsize}}
	rootType := byte(0x83)
	if spec.NoLinux {
		rootType = 0x07
	}
	parts = append(parts, fat.Partition{Type: rootType, Start: BootStart + bsize, Size: RootSize})
	if err := fat.WriteMBR(f, 0x4e639091, parts); err != nil {
		t.Fatal(err)
	}
	if err := fat.Format(f, BootStart, bsize, fat.FormatOptions{Label: "bootfs", SectorsPerCluster: 1}); err != nil {
		t.Fatal(err)
	}
	fsys, err := fat.Open(f, BootStart, bsize)
	if err != nil {
		t.Fatal(err)
	}
	fsys.Now = func() time.Time { return Stamp }
	files := map[string]string{
		"config.txt":               BookwormConfig,
		"cmdline.txt":              StockCmdline,
		"bootcode.bin":             "bootcode",
		"start4.elf":               "start4",
		"fixup4.dat":               "fixup4",
		"bcm2711-rpi-4-b.dtb":      "dtb",
		"bcm2712-rpi-5-b.dtb":      "dtb",
		"kernel8.img":              "kernel8",
		"kernel_2712.img":          "kernel_2712",
		"overlays/w1-gpio.dtbo":    "overlay",
		"overlays/README":          "overlays",
		"issue.txt":                "Raspberry Pi reference 2025-10-01",
		"LICENCE.broadcom":         "licence",
		"initramfs8":               "initramfs",
		"bcm2710-rpi-zero-2-w.dtb": "dtb",
	}
	if spec.Bits == 32 {
		files["config.txt"] = strings.Replace(BookwormConfig, "# Run in 64-bit mode\narm_64bit=1\n\n", "", 1)
		for _, k := range []string{"kernel.img", "kernel7.img", "kernel7l.img"} {
			files[k] = k
		}
		files["start.elf"] = "start"
	}
	for k, v := range spec.Files {
		if v == "" {
			delete(files, k)
		} else {
			files[k] = v
		}
	}
	if err := fsys.MkdirAll("overlays"); err != nil {
		t.Fatal(err)
	}
	for n, c := range files {
		if err := fsys.MkdirAll(filepath.Dir(n)); err != nil {
			t.Fatal(err)
		}
		if err := fsys.WriteFile(n, []byte(c)); err != nil {
			t.Fatal(err)
		}
	}
	if err := fsys.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("mke2fs"); err == nil {
		rootfs := filepath.Join(t.TempDir(), "rootfs")
		os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755)
		os.WriteFile(filepath.Join(rootfs, "etc", "os-release"), []byte("PRETTY_NAME=\"Raspbian GNU/Linux 12 (bookworm)\"\nVERSION_CODENAME=bookworm\n"), 0o644)
		out, err := exec.Command("mke2fs", "-q", "-F", "-t", "ext4", "-L", "rootfs", "-d", rootfs,
			"-E", "offset="+strconv.FormatInt(BootStart+bsize, 10), img, strconv.FormatInt(RootSize>>10, 10)+"k").CombinedOutput()
		if err != nil {
			t.Logf("mke2fs -d failed (root partition left zeroed): %v\n%s", err, out)
		}
	}
	return img
}

// HashRange is the SHA-256 of [off, off+n) of the file p.
func HashRange(t testing.TB, p string, off, n int64) [32]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, off, n)); err != nil {
		t.Fatal(err)
	}
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

// CA is a fresh self-signed CA certificate (PEM).
func CA(t testing.TB) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Outpost test CA"},
		NotBefore: Stamp, NotAfter: Stamp.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

var (
	fakeOnce sync.Once
	fakeDir  string
	fakeErr  error
)

// Binaries cross-builds a tiny Go program whose main package is
// .../cmd/outpost-gateway for every Arch, named like make cross's files:
// real ELF files with real build info, small and quick to build.
func Binaries(t testing.TB) string {
	t.Helper()
	fakeOnce.Do(func() {
		dir, err := os.MkdirTemp("", "outpost-fake-dist-")
		if err != nil {
			fakeErr = err
			return
		}
		src := filepath.Join(dir, "src")
		main := filepath.Join(src, "cmd", "outpost-gateway")
		os.MkdirAll(main, 0o755)
		os.WriteFile(filepath.Join(src, "go.mod"), []byte("module example.com/fake\n\ngo 1.22\n"), 0o644)
		os.WriteFile(filepath.Join(main, "main.go"), []byte("package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"outpost-gateway fake\") }\n"), 0o644)
		for _, a := range []struct{ name, goarch, goarm string }{{"armv6", "arm", "6"}, {"armv7", "arm", "7"}, {"arm64", "arm64", ""}} {
			cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, "outpost-gateway_linux_"+a.name), "./cmd/outpost-gateway")
			cmd.Dir = src
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+a.goarch, "GOARM="+a.goarm, "GOFLAGS=-buildvcs=false", "GOWORK=off")
			if out, err := cmd.CombinedOutput(); err != nil {
				fakeErr = err
				fakeDir = string(out)
				return
			}
		}
		fakeDir = dir
	})
	if fakeErr != nil {
		t.Fatalf("building fake gateway binaries: %v\n%s", fakeErr, fakeDir)
	}
	return fakeDir
}

// Cleanup removes what Binaries built (from TestMain after m.Run, or a
// t.Cleanup); a later Binaries builds them again.
func Cleanup() {
	if fakeDir != "" && fakeErr == nil {
		os.RemoveAll(fakeDir)
	}
	fakeOnce, fakeDir, fakeErr = sync.Once{}, "", nil
}
