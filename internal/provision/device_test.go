package provision

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type devInfo struct{ mode os.FileMode }

func (d devInfo) Name() string       { return "dev" }
func (d devInfo) Size() int64        { return 0 }
func (d devInfo) Mode() os.FileMode  { return d.mode }
func (d devInfo) ModTime() time.Time { return time.Time{} }
func (d devInfo) IsDir() bool        { return false }
func (d devInfo) Sys() any           { return nil }

func fakeChecker(mounts, swaps, sys string) DeviceChecker {
	return DeviceChecker{
		Mounts:   func() (string, error) { return mounts, nil },
		Swaps:    func() (string, error) { return swaps, nil },
		SysBlock: sys,
		Stat:     func(string) (os.FileInfo, error) { return devInfo{os.ModeDevice}, nil },
		Resolve:  func(p string) (string, error) { return p, nil },
	}
}

// A laptop: root on NVMe, the card reader's card auto-mounted.
const laptopMounts = `sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
/dev/nvme0n1p2 / ext4 rw,relatime,errors=remount-ro 0 0
/dev/nvme0n1p1 /boot/efi vfat rw,relatime 0 0
tmpfs /run tmpfs rw,nosuid,nodev 0 0
/dev/sdb1 /media/ann/bootfs vfat rw,nosuid,nodev,relatime,uid=1000 0 0
/dev/mmcblk0p2 /media/ann/root\040fs ext4 rw,nosuid,nodev,relatime 0 0
`

const swaps = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/sdd2                               partition\t1048572\t\t0\t\t-2\n"

func TestDeviceChecks(t *testing.T) {
	c := fakeChecker(laptopMounts, swaps, "")
	for _, tc := range []struct {
		dev  string
		is   error
		msgs []string
	}{
		{"/dev/sdc", nil, nil},
		{"/dev/sdb", ErrMounted, []string{"/dev/sdb1 on /media/ann/bootfs", "umount"}},
		{"/dev/mmcblk0", ErrMounted, []string{"/dev/mmcblk0p2 on /media/ann/root fs"}},
		{"/dev/nvme0n1", ErrSystemDisk, []string{"/ is on it"}},
		{"/dev/sdd", ErrMounted, []string{"/dev/sdd2 as swap"}},
		{"/dev/sdb1", nil, []string{"partition of sdb", "/dev/sdb"}},
		{"/dev/mmcblk0p1", nil, []string{"partition of mmcblk0"}},
	} {
		_, err := c.Check(tc.dev)
		if tc.msgs == nil {
			if err != nil {
				t.Errorf("%s: %v", tc.dev, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: accepted", tc.dev)
			continue
		}
		if tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("%s: %v is not %v", tc.dev, err, tc.is)
		}
		for _, m := range tc.msgs {
			if !strings.Contains(err.Error(), m) {
				t.Errorf("%s: %q lacks %q", tc.dev, err, m)
			}
		}
	}

	// A Raspberry Pi running from its card: / on mmcblk0p2.
	pi := fakeChecker("/dev/mmcblk0p2 / ext4 rw,noatime 0 0\n/dev/mmcblk0p1 /boot/firmware vfat rw 0 0\n", "", "")
	if _, err := pi.Check("/dev/mmcblk0"); !errors.Is(err, ErrSystemDisk) {
		t.Errorf("the Pi's own card: %v", err)
	}
	// macOS mount(8) output; the raw node names the same disk.
	mac := fakeChecker("/dev/disk3s1s1 on / (apfs, sealed, local, read-only, journaled)\n/dev/disk4s1 on /Volumes/bootfs (msdos, local, nodev, nosuid, noowners)\n", "", "")
	if _, err := mac.Check("/dev/rdisk4"); !errors.Is(err, ErrMounted) {
		t.Errorf("macOS mounted card: %v", err)
	}
	if _, err := mac.Check("/dev/disk3"); !errors.Is(err, ErrSystemDisk) {
		t.Errorf("macOS system disk: %v", err)
	}
	if _, err := mac.Check("/dev/rdisk5"); err != nil {
		t.Errorf("macOS free card: %v", err)
	}
}

func TestDeviceChecksSysfs(t *testing.T) {
	// A fake /sys/class/block: sdb1 is a partition of sdb; / sits on
	// dm-0 (LUKS) over sda2.
	sys := t.TempDir()
	for _, d := range []string{"devices/pci0/block/sda/sda2", "devices/pci0/block/sdb/sdb1", "devices/virtual/block/dm-0/slaves"} {
		os.MkdirAll(filepath.Join(sys, d), 0o755)
	}
	os.WriteFile(filepath.Join(sys, "devices/pci0/block/sda/sda2/partition"), []byte("2\n"), 0o644)
	os.WriteFile(filepath.Join(sys, "devices/pci0/block/sdb/sdb1/partition"), []byte("1\n"), 0o644)
	cls := filepath.Join(sys, "class")
	os.MkdirAll(cls, 0o755)
	for name, target := range map[string]string{"sda": "../devices/pci0/block/sda", "sda2": "../devices/pci0/block/sda/sda2",
		"sdb": "../devices/pci0/block/sdb", "sdb1": "../devices/pci0/block/sdb/sdb1", "dm-0": "../devices/virtual/block/dm-0"} {
		os.Symlink(target, filepath.Join(cls, name))
	}
	os.Symlink("../../../pci0/block/sda/sda2", filepath.Join(sys, "devices/virtual/block/dm-0/slaves/sda2"))
	c := fakeChecker("/dev/dm-0 / ext4 rw 0 0\n", "", cls)
	if _, err := c.Check("/dev/sda"); !errors.Is(err, ErrSystemDisk) {
		t.Errorf("root on LUKS over sda2: %v", err)
	}
	if _, err := c.Check("/dev/sdb1"); err == nil || !strings.Contains(err.Error(), "partition of sdb") {
		t.Errorf("sdb1 through sysfs: %v", err)
	}
	if _, err := c.Check("/dev/sdb"); err != nil {
		t.Errorf("sdb: %v", err)
	}
}

func TestNotABlockDevice(t *testing.T) {
	c := DefaultDeviceChecker()
	c.Mounts, c.Swaps = nil, nil
	f := filepath.Join(t.TempDir(), "card.img")
	os.WriteFile(f, []byte("x"), 0o644)
	if _, err := c.Check(f); !errors.Is(err, ErrNotBlockDevice) || !strings.Contains(err.Error(), "--image") {
		t.Errorf("regular file: %v", err)
	}
	if _, err := os.Stat("/dev/null"); err == nil {
		if _, err := c.Check("/dev/null"); !errors.Is(err, ErrNotBlockDevice) {
			t.Errorf("character device: %v", err)
		}
	}
	if _, err := c.Check(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Error("missing device accepted")
	}
}
