package provision

import (
	"bytes"
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"strings"
	"time"

	"github.com/outpost-iot/outpost/internal/provision/fat"
)

// Errors Prepare returns; callers branch on them with errors.Is.
var (
	ErrNotRaspberryPiOS = errors.New("not a Raspberry Pi OS image")
	ErrPartitionTable   = errors.New("cannot read the partition table")
)

// NoSpaceError is a boot partition without room for the gateway's files.
type NoSpaceError struct {
	Label      string
	Need, Free int64 // bytes
}

func (e *NoSpaceError) Error() string {
	return fmt.Sprintf("boot partition %q has %s free, the gateway's files need %s: nothing was written", e.Label, human(e.Free), human(e.Need))
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// PrepareOptions add what editing a card needs to Options.
type PrepareOptions struct {
	Options
	Board  Board
	Binary string // the gateway binary, or a directory holding make cross's builds
	// DryRun checks everything and computes the changes without writing.
	DryRun bool
	// Now stamps the files written; time.Now when nil.
	Now func() time.Time
}

// Result says what Prepare found and did.
type Result struct {
	Partition  int    // boot partition number
	Label      string // its volume label
	Image      Image
	Arch       Arch
	ArchNote   string
	Binary     string
	Files      []string // boot-partition paths written (or to write), in order
	Unchanged  []string // paths already as they should be
	ConfigTxt  []string // lines config.txt gained
	Chained    bool     // an earlier firstrun.sh was kept and runs first
	Need, Free int64
}

const firstrunMarker = "# outpost-firstrun"

// compressed names the compression format of what starts dev, or "".
func compressed(dev fat.Device) string {
	b := make([]byte, 6)
	if n, _ := dev.ReadAt(b, 0); n < len(b) {
		return ""
	}
	for _, m := range []struct{ magic, kind string }{
		{"\xfd7zXZ\x00", "xz-compressed (.img.xz)"},
		{"\x1f\x8b", "gzip-compressed (.img.gz)"},
		{"PK\x03\x04", "zip"},
		{"\x28\xb5\x2f\xfd", "zstd-compressed"},
		{"BZh", "bzip2-compressed"},
	} {
		if strings.HasPrefix(string(b), m.magic) {
			return m.kind
		}
	}
	return ""
}

// Prepare edits the boot partition of the Raspberry Pi OS image or card on
// dev (size bytes) so that its first boot installs and starts the gateway.
// Everything is checked — partition table, Raspberry Pi OS markers,
// architecture, binary, configuration, free space — before the first
// write. Files are written in an order that never leaves cmdline.txt
// pointing at a missing firstrun.sh: the gateway's files, cloud-init's,
// firstrun.sh, config.txt, and cmdline.txt last.
func Prepare(dev fat.Device, size int64, o PrepareOptions) (*Result, error) {
	parts, err := fat.ReadMBR(dev, size)
	if err != nil {
		if kind := compressed(dev); kind != "" {
			return nil, fmt.Errorf("%w: this is a %s file: decompress it first (the .img inside is what flash prepare edits)", ErrPartitionTable, kind)
		}
		return nil, fmt.Errorf("%w: %w (a Raspberry Pi OS .img, decompressed, is expected)", ErrPartitionTable, err)
	}
	var boot *fat.Partition
	var kinds []string
	linux := false
	for i, p := range parts {
		kinds = append(kinds, fmt.Sprintf("%d: type %#02x", p.Number, p.Type))
		if p.IsFAT() && boot == nil {
			boot = &parts[i]
		}
		if p.Type == 0x83 {
			linux = true
		}
	}
	if boot == nil {
		return nil, fmt.Errorf("%w: no FAT boot partition (partitions %s)", ErrNotRaspberryPiOS, strings.Join(kinds, ", "))
	}
	if !linux {
		return nil, fmt.Errorf("%w: no Linux root partition (partitions %s)", ErrNotRaspberryPiOS, strings.Join(kinds, ", "))
	}
	fsys, err := fat.Open(dev, boot.Start, boot.Size)
	if errors.Is(err, fat.ErrNotFAT32) {
		return nil, fmt.Errorf("boot partition %d: %w", boot.Number, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: partition %d: %w", ErrNotRaspberryPiOS, boot.Number, err)
	}
	fsys.Now = o.Now
	res := &Result{Partition: boot.Number, Label: fsys.Label()}

	list, err := fsys.ReadDir("/")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, i := range list {
		names = append(names, i.Name)
	}
	read := func(name string) ([]byte, error) {
		b, err := fsys.ReadFile(name)
		if errors.Is(err, iofs.ErrNotExist) {
			return nil, nil
		}
		return b, err
	}
	configTxt, err := read("config.txt")
	if err != nil {
		return nil, err
	}
	cmdline, err := read("cmdline.txt")
	if err != nil {
		return nil, err
	}
	if res.Image, err = DetectImage(names, string(configTxt)); err != nil {
		return nil, err
	}
	if res.Arch, res.ArchNote, err = ChooseArch(o.Board, res.Image); err != nil {
		return nil, err
	}
	if res.Binary, err = FindBinary(o.Binary, res.Arch); err != nil {
		return nil, err
	}
	if err := CheckBinary(res.Binary, res.Arch); err != nil {
		return nil, err
	}
	binary, err := os.ReadFile(res.Binary)
	if err != nil {
		return nil, fmt.Errorf("gateway binary: %w", err)
	}

	s, err := o.check()
	if err != nil {
		return nil, err
	}
	s.FromBoot, s.RunCmd = true, runCmd
	staged, _, err := stage(&o.Options, &s, binary)
	if err != nil {
		return nil, err
	}
	s.InstanceID = instanceID(staged)
	var files []File
	for _, f := range staged {
		files = append(files, File{Name: BootDir + "/" + f.Name, Data: f.Data})
	}
	prev, err := read("firstrun.sh")
	if err != nil {
		return nil, err
	}
	if len(prev) > 0 && !bytes.Contains(prev, []byte(firstrunMarker)) {
		// Raspberry Pi Imager's customisation: keep it, ours runs it first.
		files = append(files, File{Name: BootDir + "/firstrun-previous.sh", Data: prev})
		res.Chained = true
	} else if b, err := read(BootDir + "/firstrun-previous.sh"); err != nil {
		return nil, err
	} else if len(b) > 0 {
		files = append(files, File{Name: BootDir + "/firstrun-previous.sh", Data: b})
		res.Chained = true
	}
	md, err := render("meta-data", &s)
	if err != nil {
		return nil, err
	}
	files = append(files, File{Name: "meta-data", Data: md})
	if s.WiFi != nil {
		nc, err := render("network-config", &s)
		if err != nil {
			return nil, err
		}
		files = append(files, File{Name: "network-config", Data: nc})
	}
	oldUD, err := read("user-data")
	if err != nil {
		return nil, err
	}
	ud, err := userData(oldUD, &s)
	if err != nil {
		return nil, err
	}
	files = append(files, File{Name: "user-data", Data: ud})
	fr, err := render("firstrun.sh", &s)
	if err != nil {
		return nil, err
	}
	files = append(files, File{Name: "firstrun.sh", Data: fr})
	newConfig, added := EnsureConfigTxt(string(configTxt), s.W1Pin)
	res.ConfigTxt = added
	if newConfig != string(configTxt) {
		files = append(files, File{Name: "config.txt", Data: []byte(newConfig)})
	}
	newCmdline, err := EnsureFirstrunCmdline(string(cmdline))
	if err != nil {
		return nil, err
	}
	if newCmdline != string(cmdline) {
		files = append(files, File{Name: "cmdline.txt", Data: []byte(newCmdline)})
	}

	// Files already on the card as they should be are left alone: a second
	// run rewrites nothing it does not change.
	var changed []File
	var ws []fat.Write
	for _, f := range files {
		if old, err := read(f.Name); err == nil && old != nil && bytes.Equal(old, f.Data) {
			res.Unchanged = append(res.Unchanged, f.Name)
			continue
		}
		changed = append(changed, f)
		ws = append(ws, fat.Write{Name: f.Name, Size: int64(len(f.Data))})
		res.Files = append(res.Files, f.Name)
	}
	files = changed
	clusters, err := fsys.Need(ws)
	if err != nil {
		return nil, err
	}
	res.Need, res.Free = clusters*fsys.ClusterSize(), fsys.Free()
	if res.Need > res.Free {
		return nil, &NoSpaceError{Label: res.Label, Need: res.Need, Free: res.Free}
	}
	if o.DryRun {
		return res, nil
	}
	if err := fsys.MkdirAll(BootDir); err != nil {
		return nil, err
	}
	for _, f := range files {
		if err := fsys.WriteFile(f.Name, f.Data); err != nil {
			return nil, fmt.Errorf("write %s: %w", f.Name, err)
		}
	}
	if err := fsys.Flush(); err != nil {
		return nil, err
	}
	return res, nil
}
