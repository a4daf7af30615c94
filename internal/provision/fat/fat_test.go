package fat

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// mem is an in-memory Device.
type mem []byte

func (m mem) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m)) {
		return 0, fmt.Errorf("read %d@%d out of range", len(p), off)
	}
	return copy(p, m[off:]), nil
}

func (m mem) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m)) {
		return 0, fmt.Errorf("write %d@%d out of range", len(p), off)
	}
	return copy(m[off:], p), nil
}

var stamp = time.Date(2025, 10, 2, 12, 30, 44, 0, time.UTC)

func newFS(t *testing.T, size int64, spc int) (mem, *FS) {
	t.Helper()
	m := make(mem, size)
	return m, format(t, m, size, spc)
}

func format(t *testing.T, d Device, size int64, spc int) *FS {
	t.Helper()
	if err := Format(d, 0, size, FormatOptions{Label: "bootfs", SectorsPerCluster: spc, VolumeID: 0x1234abcd}); err != nil {
		t.Fatal(err)
	}
	f, err := Open(d, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	f.Now = func() time.Time { return stamp }
	return f
}

// fileFS formats a sparse image file big enough (≥ 65525 clusters) for
// mtools to take it for FAT32.
func fileFS(t *testing.T) (string, *os.File, *FS) {
	t.Helper()
	name := filepath.Join(t.TempDir(), "fs.img")
	fd, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fd.Close() })
	const size = 40 << 20
	if err := fd.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return name, fd, format(t, fd, size, 1)
}

func reopen(t *testing.T, d Device, size int64) *FS {
	t.Helper()
	f, err := Open(d, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestWriteReadBack(t *testing.T) {
	img, fd, f := fileFS(t)
	if f.Label() != "bootfs" {
		t.Errorf("label %q", f.Label())
	}
	free0 := f.FreeClusters()
	big := make([]byte, 3<<20+123)
	rand.Read(big)
	files := map[string][]byte{
		"config.txt":                      []byte("arm_64bit=1\n"),
		"CMDLINE.TXT":                     []byte("console=tty1 root=PARTUUID=1-02 rootwait\n"),
		"user-data":                       []byte("#cloud-config\n"),
		"network-config":                  []byte("network: {version: 2}\n"),
		"outpost/outpost-gateway":         big,
		"outpost/outpost-gateway.service": []byte("[Unit]\n"),
		"outpost/claim.token":             []byte("tok\n"),
		"outpost/empty":                   nil,
		"outpost/Mixed Case Name.Longext": []byte("x"),
		"outpost/naïve-ünïcode.txt":       []byte("y"),
	}
	if err := f.MkdirAll("outpost"); err != nil {
		t.Fatal(err)
	}
	for n, b := range files {
		if err := f.WriteFile(n, b); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
	}
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	g := reopen(t, fd, 40<<20)
	for n, want := range files {
		got, err := g.ReadFile(n)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: read %d bytes, wrote %d", n, len(got), len(want))
		}
	}
	// Names come back as written; lookups ignore case.
	names := map[string]bool{}
	list, err := g.ReadDir("/outpost")
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range list {
		names[i.Name] = true
	}
	for _, n := range []string{"outpost-gateway", "claim.token", "Mixed Case Name.Longext", "naïve-ünïcode.txt", "empty"} {
		if !names[n] {
			t.Errorf("ReadDir lacks %q: %v", n, names)
		}
	}
	if _, err := g.ReadFile("OUTPOST/CLAIM.TOKEN"); err != nil {
		t.Errorf("case-insensitive lookup: %v", err)
	}
	if i, err := g.Stat("outpost"); err != nil || !i.IsDir {
		t.Errorf("stat dir: %+v %v", i, err)
	}
	// Short 8.3 lowercase names need no long-name slots (NT case flags).
	root, _ := g.readDir(g.rootClus)
	if e := root.find("config.txt"); e == nil || e.name != "config.txt" || string(e.short[:]) != "CONFIG  TXT" {
		t.Errorf("config.txt entry: %+v", e)
	}
	used := free0 - g.FreeClusters()
	if want := int64(len(big)+511)/512 + 10; used < want || used > want+4 {
		t.Errorf("used %d clusters, want about %d", used, want)
	}
	fsck(t, img)
	mtoolsCheck(t, img, "::/outpost/claim.token", "tok\n")
	mtoolsCheck(t, img, "::/outpost/naïve-ünïcode.txt", "y")
}

func TestReplaceFreesOldChain(t *testing.T) {
	m, f := newFS(t, 4<<20, 1)
	if err := f.WriteFile("a.bin", make([]byte, 100<<10)); err != nil {
		t.Fatal(err)
	}
	free1 := f.FreeClusters()
	if err := f.WriteFile("A.BIN", []byte("short")); err != nil {
		t.Fatal(err)
	}
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := f.FreeClusters() - free1; got != 200-1 {
		t.Errorf("replacing 200 clusters by 1 freed %d", got)
	}
	if got, _ := reopen(t, m, int64(len(m))).ReadFile("a.bin"); string(got) != "short" {
		t.Errorf("after replace: %q", got)
	}
	fsckMem(t, m)
}

func TestDirectoryGrows(t *testing.T) {
	m, f := newFS(t, 4<<20, 1) // 512-byte clusters: 16 slots each
	for i := 0; i < 60; i++ {
		if err := f.WriteFile(fmt.Sprintf("bcm2711-rpi-board-%02d.dtb", i), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	g := reopen(t, m, int64(len(m)))
	d, _ := g.readDir(g.rootClus)
	if len(d.clusters) < 10 {
		t.Errorf("root directory has %d clusters for 60 long names", len(d.clusters))
	}
	for i := 0; i < 60; i++ {
		b, err := g.ReadFile(fmt.Sprintf("bcm2711-rpi-board-%02d.dtb", i))
		if err != nil || len(b) != 1 || b[0] != byte(i) {
			t.Fatalf("file %d: %v %v", i, b, err)
		}
	}
	fsckMem(t, m)
}

func TestNeedBoundsWhatWritesTake(t *testing.T) {
	_, f := newFS(t, 8<<20, 2)
	ws := []Write{{"outpost/outpost-gateway", 2 << 20}, {"outpost/a-rather-long-file-name.yaml", 700}, {"user-data", 10}, {"x/y/z.txt", 1}}
	need, err := f.Need(ws)
	if err != nil {
		t.Fatal(err)
	}
	before := f.FreeClusters()
	for _, w := range ws {
		if err := f.MkdirAll(filepath.Dir(w.Name)); err != nil {
			t.Fatal(err)
		}
		if err := f.WriteFile(w.Name, make([]byte, w.Size)); err != nil {
			t.Fatal(err)
		}
	}
	if used := before - f.FreeClusters(); used > need {
		t.Errorf("writes took %d clusters, Need said %d", used, need)
	}
}

func TestNoSpaceLeavesFileSystemAlone(t *testing.T) {
	m, f := newFS(t, 1<<20, 1)
	before := append(mem(nil), m...)
	err := f.WriteFile("too-big.bin", make([]byte, 2<<20))
	if err == nil || !strings.Contains(err.Error(), "no space") {
		t.Fatalf("want no space, got %v", err)
	}
	if !bytes.Equal(before, m) {
		t.Error("a failed allocation changed the disk")
	}
}

func TestOpenRefuses(t *testing.T) {
	rnd := make(mem, 1<<20)
	rand.Read(rnd)
	if _, err := Open(rnd, 0, int64(len(rnd))); !errors.Is(err, ErrNotFAT) {
		t.Errorf("random bytes: %v", err)
	}
	m, _ := newFS(t, 1<<20, 1)
	m[22] = 8 // a 16-bit FAT size: FAT12/16
	if _, err := Open(m, 0, int64(len(m))); !errors.Is(err, ErrNotFAT32) {
		t.Errorf("FAT16: %v", err)
	}
	m, _ = newFS(t, 1<<20, 1)
	if _, err := Open(m, 0, int64(len(m))/2); err == nil {
		t.Error("file system larger than its partition accepted")
	}
}

func TestMissingFile(t *testing.T) {
	_, f := newFS(t, 1<<20, 1)
	if _, err := f.ReadFile("nope.txt"); !errors.Is(err, iofs.ErrNotExist) {
		t.Errorf("got %v", err)
	}
	if err := f.WriteFile("no/such/dir.txt", nil); !errors.Is(err, iofs.ErrNotExist) {
		t.Errorf("got %v", err)
	}
	if err := f.WriteFile("bad:name", nil); err == nil {
		t.Error("name with ':' accepted")
	}
}

func TestMBR(t *testing.T) {
	m := make(mem, 4<<20)
	parts := []Partition{{Type: 0x0c, Start: 8192 * 512 / 16, Size: 1 << 20}, {Type: 0x83, Start: 2 << 20, Size: 2 << 20}}
	parts[0].Start = 1 << 20
	if err := WriteMBR(m, 0xdeadbeef, parts); err != nil {
		t.Fatal(err)
	}
	got, err := ReadMBR(m, int64(len(m)))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got[0].IsFAT() || got[1].IsFAT() || got[1].Number != 2 || got[1].Start != 2<<20 {
		t.Errorf("read back %+v", got)
	}
	if _, err := ReadMBR(m[:3<<20], 3<<20); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("truncated image: %v", err)
	}
	rnd := make(mem, 4096)
	rand.Read(rnd)
	rnd[510], rnd[511] = 0, 0
	if _, err := ReadMBR(rnd, 4096); !errors.Is(err, ErrNoPartitionTable) {
		t.Errorf("random: %v", err)
	}
	bare, _ := newFS(t, 1<<20, 1)
	if _, err := ReadMBR(bare, int64(len(bare))); !errors.Is(err, ErrNoPartitionTable) || !strings.Contains(err.Error(), "bare file system") {
		t.Errorf("bare FAT: %v", err)
	}
	gpt := make(mem, 4096)
	_ = WriteMBR(gpt, 0, []Partition{{Type: 0xEE, Start: 512, Size: 1024}})
	if _, err := ReadMBR(gpt, 4096); !errors.Is(err, ErrGPT) {
		t.Errorf("GPT: %v", err)
	}
	overlap := make(mem, 4<<20)
	_ = WriteMBR(overlap, 0, []Partition{{Type: 0x0c, Start: 1 << 20, Size: 2 << 20}, {Type: 0x83, Start: 2 << 20, Size: 1 << 20}})
	if _, err := ReadMBR(overlap, 4<<20); err == nil || !strings.Contains(err.Error(), "overlap") {
		t.Errorf("overlap: %v", err)
	}
}

// TestReadsDosfstools reads a file system made and filled by dosfstools and
// mtools, writes to it, and has fsck.fat check the result.
func TestReadsDosfstools(t *testing.T) {
	for _, tool := range []string{"mkfs.vfat", "mcopy"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian: dosfstools, mtools)", tool)
		}
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "boot.img")
	run(t, "truncate", "-s", "256M", img)
	run(t, "mkfs.vfat", "-F", "32", "-s", "4", "-n", "BOOTFS", img)
	src := filepath.Join(dir, "config.txt")
	os.WriteFile(src, []byte("dtparam=audio=on\n"), 0o644)
	run(t, "mcopy", "-i", img, src, "::/config.txt")
	run(t, "mcopy", "-i", img, src, "::/bcm2712-rpi-5-b.dtb")
	run(t, "mmd", "-i", img, "::/overlays")
	run(t, "mcopy", "-i", img, src, "::/overlays/w1-gpio.dtbo")
	fd, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	f, err := Open(fd, 0, 256<<20)
	if err != nil {
		t.Fatal(err)
	}
	if f.Label() != "BOOTFS" {
		t.Errorf("label %q", f.Label())
	}
	for _, n := range []string{"config.txt", "bcm2712-rpi-5-b.dtb", "overlays/w1-gpio.dtbo"} {
		if b, err := f.ReadFile(n); err != nil || string(b) != "dtparam=audio=on\n" {
			t.Errorf("%s: %q %v", n, b, err)
		}
	}
	if err := f.WriteFile("config.txt", []byte("dtparam=i2c_arm=on\n")); err != nil {
		t.Fatal(err)
	}
	if err := f.MkdirAll("outpost"); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteFile("outpost/outpost-gateway.service", []byte("[Service]\n")); err != nil {
		t.Fatal(err)
	}
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	fsck(t, img)
	mtoolsCheck(t, img, "::/outpost/outpost-gateway.service", "[Service]\n")
	mtoolsCheck(t, img, "::/config.txt", "dtparam=i2c_arm=on\n")
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// fsck has dosfstools' fsck.fat check the image file img (a bare file
// system), when it is installed: the outside check that the writer leaves
// no inconsistency.
func fsck(t *testing.T, img string) {
	t.Helper()
	if _, err := exec.LookPath("fsck.vfat"); err != nil {
		t.Log("fsck.vfat not installed (Debian: dosfstools): outside check skipped")
		return
	}
	out, err := exec.Command("fsck.vfat", "-n", "-V", img).CombinedOutput()
	if err != nil || strings.Contains(string(out), "Free cluster summary wrong") || strings.Contains(string(out), "Invalid") {
		t.Errorf("fsck.vfat: %v\n%s", err, out)
	}
}

func fsckMem(t *testing.T, m mem) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "fs.img")
	if err := os.WriteFile(f, m, 0o600); err != nil {
		t.Fatal(err)
	}
	fsck(t, f)
}

// mtoolsCheck reads one file of img (mtools syntax: img or img@@offset)
// with mtools' mtype, when installed.
func mtoolsCheck(t *testing.T, img, name, want string) {
	t.Helper()
	if _, err := exec.LookPath("mtype"); err != nil {
		t.Log("mtype not installed (Debian: mtools): outside check skipped")
		return
	}
	cmd := exec.Command("mtype", "-i", img, name)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	out, err := cmd.Output()
	if err != nil || string(out) != want {
		t.Errorf("mtype %s: %q %v", name, out, err)
	}
}
