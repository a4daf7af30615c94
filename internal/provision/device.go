package provision

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
)

// Errors CheckDevice returns.
var (
	ErrNotBlockDevice = errors.New("not a block device")
	ErrMounted        = errors.New("device is mounted")
	ErrSystemDisk     = errors.New("device holds the running system")
)

// DeviceChecker decides whether a device may be overwritten. Its sources
// are injectable so the refusals can be tested without real disks.
type DeviceChecker struct {
	// Mounts returns the mount table: /proc/mounts on Linux, the output of
	// mount(8) on macOS (both formats are understood).
	Mounts func() (string, error)
	// Swaps returns /proc/swaps (Linux); nil or "" for none.
	Swaps func() (string, error)
	// SysBlock is /sys/class/block, to find a partition's disk; "" to
	// work from names alone (sdb1 → sdb, mmcblk0p1 → mmcblk0, disk4s1 → disk4).
	SysBlock string
	// Stat checks the node; os.Stat when nil.
	Stat func(string) (os.FileInfo, error)
	// Resolve follows symlinks (/dev/disk/by-id/… → /dev/sdb);
	// filepath.EvalSymlinks when nil.
	Resolve func(string) (string, error)
}

// DefaultDeviceChecker reads the running system's tables.
func DefaultDeviceChecker() DeviceChecker {
	c := DeviceChecker{Stat: os.Stat, Resolve: filepath.EvalSymlinks}
	switch runtime.GOOS {
	case "linux":
		c.Mounts = readFile("/proc/mounts")
		c.Swaps = readFile("/proc/swaps")
		c.SysBlock = "/sys/class/block"
	case "darwin":
		c.Mounts = func() (string, error) {
			out, err := exec.Command("/sbin/mount").Output()
			return string(out), err
		}
	}
	return c
}

func readFile(p string) func() (string, error) {
	return func() (string, error) {
		b, err := os.ReadFile(p)
		return string(b), err
	}
}

// Check refuses a device that is not a whole-disk block device, that has a
// mounted (or swapped-on) partition, or that holds the root file system.
// It returns the resolved device path.
func (c DeviceChecker) Check(dev string) (string, error) {
	if runtime.GOOS == "windows" {
		return "", errors.New("--device is not supported on Windows: prepare the image with --image, then write it with Raspberry Pi Imager (Use custom)")
	}
	p, err := c.resolve(dev)
	if err != nil {
		return "", fmt.Errorf("device %s: %w", dev, err)
	}
	stat := c.Stat
	if stat == nil {
		stat = os.Stat
	}
	st, err := stat(p)
	if err != nil {
		return "", fmt.Errorf("device %s: %w", dev, err)
	}
	m := st.Mode()
	// macOS's raw /dev/rdiskN is a character device; on Linux only block devices do.
	if m&os.ModeDevice == 0 || (m&os.ModeCharDevice != 0 && runtime.GOOS == "linux") {
		return "", fmt.Errorf("%s: %w (for an image file use --image)", dev, ErrNotBlockDevice)
	}
	name := diskName(filepath.Base(p))
	if parent := c.parent(name); parent != name {
		return "", fmt.Errorf("%s is partition of %s: give the whole card, /dev/%s", dev, parent, parent)
	}
	var mounted []string
	var rootDisks []string
	if c.Mounts != nil {
		text, err := c.Mounts()
		if err != nil {
			return "", fmt.Errorf("reading the mount table: %w", err)
		}
		for _, mt := range parseMounts(text) {
			disks := c.disksOf(mt.source)
			if mt.point == "/" {
				rootDisks = append(rootDisks, disks...)
			}
			if slices.Contains(disks, name) {
				mounted = append(mounted, mt.source+" on "+mt.point)
			}
		}
	}
	if c.Swaps != nil {
		if text, err := c.Swaps(); err == nil {
			for i, l := range strings.Split(text, "\n") {
				if f := strings.Fields(l); i > 0 && len(f) > 0 && slices.Contains(c.disksOf(f[0]), name) {
					mounted = append(mounted, f[0]+" as swap")
				}
			}
		}
	}
	if slices.Contains(rootDisks, name) {
		return "", fmt.Errorf("%s: %w (/ is on it): refusing to overwrite it", dev, ErrSystemDisk)
	}
	if len(mounted) > 0 {
		hint := "unmount it first (sudo umount /dev/" + name + "*)"
		if runtime.GOOS == "darwin" {
			hint = "unmount it first (diskutil unmountDisk /dev/" + name + ")"
		}
		return "", fmt.Errorf("%s: %w: %s; %s", dev, ErrMounted, strings.Join(mounted, ", "), hint)
	}
	return p, nil
}

func (c DeviceChecker) resolve(p string) (string, error) {
	if c.Resolve != nil {
		return c.Resolve(p)
	}
	return filepath.EvalSymlinks(p)
}

type mount struct{ source, point string }

// parseMounts reads /proc/mounts ("src point type opts 0 0", with octal
// escapes) or macOS mount(8) output ("src on point (type, opts)").
func parseMounts(text string) []mount {
	var out []mount
	for _, l := range strings.Split(text, "\n") {
		if src, rest, ok := strings.Cut(l, " on "); ok && strings.HasSuffix(strings.TrimSpace(rest), ")") {
			point := rest
			if i := strings.LastIndex(rest, " ("); i >= 0 {
				point = rest[:i]
			}
			out = append(out, mount{src, point})
			continue
		}
		f := strings.Fields(l)
		if len(f) >= 2 {
			out = append(out, mount{unescape(f[0]), unescape(f[1])})
		}
	}
	return out
}

func unescape(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// disksOf returns the whole disks a mount source lives on: /dev/sdb1 →
// sdb; a device-mapper volume (LUKS, LVM) → the disks under it; /dev/root
// (Raspberry Pi OS) → found through sysfs by its device number.
func (c DeviceChecker) disksOf(source string) []string {
	if !strings.HasPrefix(source, "/dev/") {
		return nil
	}
	p := source
	if r, err := c.resolve(source); err == nil {
		p = r
	}
	name := diskName(filepath.Base(p))
	if c.SysBlock != "" {
		if name == "root" || strings.HasPrefix(p, "/dev/mapper/") {
			if n := c.byDevNumber(p); n != "" {
				name = n
			}
		}
		if slaves, err := os.ReadDir(filepath.Join(c.SysBlock, name, "slaves")); err == nil && len(slaves) > 0 {
			var out []string
			for _, s := range slaves {
				out = append(out, c.disksOf("/dev/"+s.Name())...)
			}
			return out
		}
	}
	return []string{c.parent(name)}
}

// byDevNumber maps a device node to its sysfs name through its major:minor.
func (c DeviceChecker) byDevNumber(p string) string {
	want := devNumber(p)
	if want == "" {
		return ""
	}
	ents, err := os.ReadDir(c.SysBlock)
	if err != nil {
		return ""
	}
	for _, e := range ents {
		if b, err := os.ReadFile(filepath.Join(c.SysBlock, e.Name(), "dev")); err == nil && strings.TrimSpace(string(b)) == want {
			return e.Name()
		}
	}
	return ""
}

var partRe = []*regexp.Regexp{
	regexp.MustCompile(`^((?:mmcblk|nvme\d+n|loop|nbd|md)\d+)p\d+$`),
	regexp.MustCompile(`^((?:sd|vd|hd|xvd)[a-z]+)\d+$`),
	regexp.MustCompile(`^(disk\d+)s\d+(?:s\d+)?$`), // macOS
}

// parent returns the whole disk a partition belongs to (the name itself for a disk).
func (c DeviceChecker) parent(name string) string {
	if c.SysBlock != "" {
		// /sys/class/block/sdb1 -> ../../devices/.../block/sdb/sdb1
		if l, err := os.Readlink(filepath.Join(c.SysBlock, name)); err == nil {
			if _, err := os.Stat(filepath.Join(c.SysBlock, name, "partition")); err == nil {
				return filepath.Base(filepath.Dir(l))
			}
			return name
		}
	}
	for _, re := range partRe {
		if m := re.FindStringSubmatch(name); m != nil {
			return m[1]
		}
	}
	return name
}

// diskName maps macOS's raw node to the disk's name (rdisk4 → disk4).
func diskName(n string) string {
	if strings.HasPrefix(n, "rdisk") {
		return n[1:]
	}
	return n
}
