// Package fat reads MBR partition tables and reads and writes FAT32 file
// systems in pure Go: enough to edit the boot partition of a Raspberry Pi OS
// image or SD card without mounting it (so without root, on any OS).
//
// Writes are ordered so that an interruption leaves a consistent file system,
// at worst with lost clusters that fsck reclaims: a file's data goes to free
// clusters first, then the FAT (every copy) links them, then its directory
// entry points at them, and only then is a replaced file's old chain freed.
// The FSInfo free-cluster hint is rewritten by Flush.
//
// What it does not do: FAT12/FAT16 (Raspberry Pi OS formats its boot
// partition FAT32), removing files, and files of 4 GiB or more.
package fat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"path"
	"sort"
	"strings"
	"time"
	"unicode/utf16"
)

// Device is what a file system lives on: an image file, a block device, or
// memory. Offsets are from the start of the disk.
type Device interface {
	io.ReaderAt
	io.WriterAt
}

// Errors Open returns.
var (
	ErrNotFAT   = errors.New("not a FAT file system")
	ErrNotFAT32 = errors.New("FAT12/FAT16 file system (only FAT32 is supported; Raspberry Pi OS formats its boot partition FAT32)")
)

const (
	attrVolume  = 0x08
	attrDir     = 0x10
	attrArchive = 0x20
	attrLFN     = 0x0f

	eoc      = 0x0FFFFFFF // end of chain, as written
	eocMin   = 0x0FFFFFF8 // anything from here up ends a chain
	badClus  = 0x0FFFFFF7
	slotSize = 32
	maxFile  = 1<<32 - 1
)

// FS is an open FAT32 file system. It is not safe for concurrent use.
type FS struct {
	dev      Device
	base     int64 // byte offset of the file system on dev
	bps      int64 // bytes per sector
	csize    int64 // bytes per cluster
	resv     int64 // reserved sectors
	nfats    int64
	fatSecs  int64 // sectors per FAT
	rootClus uint32
	infoSec  int64 // FSInfo sector, 0 when absent
	dataOff  int64 // byte offset of cluster 2 from base
	maxClus  uint32
	fat      []byte         // the first FAT, as on disk
	dirty    map[int64]bool // FAT sectors (relative to one FAT) to write
	nextFree uint32
	label    string

	// Now stamps the files written; time.Now when nil.
	Now func() time.Time
}

// Open reads the FAT32 file system of size bytes at offset on dev.
func Open(dev Device, offset, size int64) (*FS, error) {
	b := make([]byte, 512)
	if _, err := dev.ReadAt(b, offset); err != nil {
		return nil, fmt.Errorf("fat: read boot sector: %w", err)
	}
	if b[510] != 0x55 || b[511] != 0xAA || (b[0] != 0xEB && b[0] != 0xE9) {
		return nil, fmt.Errorf("%w: no boot sector signature", ErrNotFAT)
	}
	le16 := func(o int) int64 { return int64(binary.LittleEndian.Uint16(b[o:])) }
	le32 := func(o int) int64 { return int64(binary.LittleEndian.Uint32(b[o:])) }
	f := &FS{dev: dev, base: offset, bps: le16(11), resv: le16(14), nfats: int64(b[16]),
		dirty: map[int64]bool{}}
	spc := int64(b[13])
	switch f.bps {
	case 512, 1024, 2048, 4096:
	default:
		return nil, fmt.Errorf("%w: %d bytes per sector", ErrNotFAT, f.bps)
	}
	if spc == 0 || spc&(spc-1) != 0 || spc*f.bps > 64<<10 || f.resv == 0 || f.nfats == 0 || f.nfats > 4 {
		return nil, fmt.Errorf("%w: implausible BIOS parameter block", ErrNotFAT)
	}
	f.csize = spc * f.bps
	total := le16(19)
	if total == 0 {
		total = le32(32)
	}
	// Like Linux: a FAT32 BPB has no 16-bit FAT size and no fixed root directory.
	if le16(22) != 0 || le16(17) != 0 {
		return nil, ErrNotFAT32
	}
	f.fatSecs = le32(36)
	if f.fatSecs == 0 {
		return nil, fmt.Errorf("%w: FAT size is zero", ErrNotFAT)
	}
	if total*f.bps > size {
		return nil, fmt.Errorf("fat: file system (%d bytes) is larger than its partition (%d bytes)", total*f.bps, size)
	}
	dataSecs := total - f.resv - f.nfats*f.fatSecs
	if dataSecs < spc {
		return nil, fmt.Errorf("%w: no data area", ErrNotFAT)
	}
	nclus := dataSecs / spc
	entries := f.fatSecs * f.bps / 4
	if nclus+2 > entries {
		nclus = entries - 2
	}
	if nclus+1 > 0x0FFFFFF6 {
		nclus = 0x0FFFFFF6 - 1
	}
	f.maxClus = uint32(nclus + 1)
	f.dataOff = (f.resv + f.nfats*f.fatSecs) * f.bps
	f.rootClus = uint32(le32(44))
	f.infoSec = le16(48)
	if f.infoSec == 0xFFFF || f.infoSec >= f.resv {
		f.infoSec = 0
	}
	if f.rootClus < 2 || f.rootClus > f.maxClus {
		return nil, fmt.Errorf("fat: root directory cluster %d out of range", f.rootClus)
	}
	if b[66] == 0x29 {
		f.label = strings.TrimRight(string(b[71:82]), " ")
	}
	f.fat = make([]byte, f.fatSecs*f.bps)
	if _, err := dev.ReadAt(f.fat, offset+f.resv*f.bps); err != nil {
		return nil, fmt.Errorf("fat: read FAT: %w", err)
	}
	f.nextFree = 2
	if root, err := f.readDir(f.rootClus); err == nil {
		for _, e := range root.entries {
			if e.attr&attrVolume != 0 && e.attr&attrDir == 0 {
				f.label = strings.TrimRight(string(e.short[:]), " ")
			}
		}
	} else {
		return nil, err
	}
	return f, nil
}

// Label is the volume label ("bootfs" on Raspberry Pi OS Bookworm and later).
func (f *FS) Label() string { return f.label }

// ClusterSize is the allocation unit in bytes.
func (f *FS) ClusterSize() int64 { return f.csize }

// FreeClusters counts the free clusters in the FAT.
func (f *FS) FreeClusters() int64 {
	var n int64
	for c := uint32(2); c <= f.maxClus; c++ {
		if f.next(c) == 0 {
			n++
		}
	}
	return n
}

// Free is the free space in bytes.
func (f *FS) Free() int64 { return f.FreeClusters() * f.csize }

func (f *FS) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

func (f *FS) clusterOff(c uint32) int64 { return f.base + f.dataOff + int64(c-2)*f.csize }

func (f *FS) next(c uint32) uint32 { return binary.LittleEndian.Uint32(f.fat[4*c:]) & 0x0FFFFFFF }

// setFAT sets entry c, keeping its reserved top four bits.
func (f *FS) setFAT(c, v uint32) {
	old := binary.LittleEndian.Uint32(f.fat[4*c:])
	binary.LittleEndian.PutUint32(f.fat[4*c:], old&0xF0000000|v&0x0FFFFFFF)
	f.dirty[int64(c)*4/f.bps] = true
}

// chain follows the cluster chain from start.
func (f *FS) chain(start uint32) ([]uint32, error) {
	var cs []uint32
	for c := start; ; {
		if c < 2 || c > f.maxClus {
			return nil, fmt.Errorf("fat: cluster chain from %d reaches invalid cluster %d", start, c)
		}
		cs = append(cs, c)
		if uint32(len(cs)) > f.maxClus {
			return nil, fmt.Errorf("fat: cluster chain from %d loops", start)
		}
		n := f.next(c)
		switch {
		case n >= eocMin:
			return cs, nil
		case n == badClus:
			return nil, fmt.Errorf("fat: cluster chain from %d reaches a bad cluster", start)
		}
		c = n
	}
}

// alloc takes n free clusters, links them into a chain ending in EOC and
// returns them. The FAT is changed in memory only.
func (f *FS) alloc(n int64) ([]uint32, error) {
	if n == 0 {
		return nil, nil
	}
	cs := make([]uint32, 0, n)
	c := f.nextFree
	for scanned := uint32(0); int64(len(cs)) < n && scanned < f.maxClus-1; scanned++ {
		if c < 2 || c > f.maxClus {
			c = 2
		}
		if f.next(c) == 0 {
			cs = append(cs, c)
		}
		c++
	}
	if int64(len(cs)) < n {
		return nil, fmt.Errorf("fat: no space: need %d clusters, %d free", n, len(cs))
	}
	for i, c := range cs {
		if i+1 < len(cs) {
			f.setFAT(c, cs[i+1])
		} else {
			f.setFAT(c, eoc)
		}
	}
	f.nextFree = cs[len(cs)-1] + 1
	return cs, nil
}

// flushFAT writes the changed FAT sectors to every FAT copy.
func (f *FS) flushFAT() error {
	secs := make([]int64, 0, len(f.dirty))
	for s := range f.dirty {
		secs = append(secs, s)
	}
	sort.Slice(secs, func(i, j int) bool { return secs[i] < secs[j] })
	for _, s := range secs {
		buf := f.fat[s*f.bps : (s+1)*f.bps]
		for k := int64(0); k < f.nfats; k++ {
			if _, err := f.dev.WriteAt(buf, f.base+(f.resv+k*f.fatSecs+s)*f.bps); err != nil {
				return fmt.Errorf("fat: write FAT: %w", err)
			}
		}
	}
	clear(f.dirty)
	return nil
}

// Flush writes pending FAT changes and the FSInfo free-cluster count.
func (f *FS) Flush() error {
	if err := f.flushFAT(); err != nil {
		return err
	}
	if f.infoSec == 0 {
		return nil
	}
	b := make([]byte, f.bps)
	off := f.base + f.infoSec*f.bps
	if _, err := f.dev.ReadAt(b, off); err != nil {
		return fmt.Errorf("fat: read FSInfo: %w", err)
	}
	if binary.LittleEndian.Uint32(b[0:]) != 0x41615252 || binary.LittleEndian.Uint32(b[484:]) != 0x61417272 {
		return nil // no valid FSInfo: nothing to keep up to date
	}
	binary.LittleEndian.PutUint32(b[488:], uint32(f.FreeClusters()))
	hint := f.nextFree
	if hint < 2 || hint > f.maxClus {
		hint = 0xFFFFFFFF // unknown
	}
	binary.LittleEndian.PutUint32(b[492:], hint)
	if _, err := f.dev.WriteAt(b, off); err != nil {
		return fmt.Errorf("fat: write FSInfo: %w", err)
	}
	return nil
}

// writeClusters writes data over the chain cs, zero-filling the rest of the
// last cluster. Consecutive clusters are written in one call.
func (f *FS) writeClusters(cs []uint32, data []byte) error {
	for i := 0; i < len(cs); {
		j := i + 1
		for j < len(cs) && cs[j] == cs[j-1]+1 {
			j++
		}
		from, to := int64(i)*f.csize, int64(j)*f.csize
		end := min(to, int64(len(data)))
		off := f.clusterOff(cs[i])
		if from < end {
			if _, err := f.dev.WriteAt(data[from:end], off); err != nil {
				return fmt.Errorf("fat: write data: %w", err)
			}
		}
		if pad := to - max(from, end); pad > 0 {
			if _, err := f.dev.WriteAt(make([]byte, pad), off+(max(from, end)-from)); err != nil {
				return fmt.Errorf("fat: write data: %w", err)
			}
		}
		i = j
	}
	return nil
}

func (f *FS) readClusters(cs []uint32, n int64) ([]byte, error) {
	out := make([]byte, int64(len(cs))*f.csize)
	for i := 0; i < len(cs); {
		j := i + 1
		for j < len(cs) && cs[j] == cs[j-1]+1 {
			j++
		}
		if _, err := f.dev.ReadAt(out[int64(i)*f.csize:int64(j)*f.csize], f.clusterOff(cs[i])); err != nil {
			return nil, fmt.Errorf("fat: read data: %w", err)
		}
		i = j
	}
	return out[:n], nil
}

// dirent is one directory entry with its long name.
type dirent struct {
	name    string
	short   [11]byte
	attr    byte
	cluster uint32
	size    uint32
	slot    int // the short entry's slot
}

func (e *dirent) isDir() bool { return e.attr&attrDir != 0 }

type dir struct {
	cluster  uint32 // first cluster
	clusters []uint32
	data     []byte
	entries  []dirent
}

func (f *FS) readDir(start uint32) (*dir, error) {
	cs, err := f.chain(start)
	if err != nil {
		return nil, err
	}
	data, err := f.readClusters(cs, int64(len(cs))*f.csize)
	if err != nil {
		return nil, err
	}
	d := &dir{cluster: start, clusters: cs, data: data}
	d.parse()
	return d, nil
}

func (d *dir) slots() int { return len(d.data) / slotSize }

func (d *dir) parse() {
	d.entries = d.entries[:0]
	var (
		lfn    []uint16
		expect int
		sum    byte
	)
	for i := 0; i < d.slots(); i++ {
		e := d.data[i*slotSize : (i+1)*slotSize]
		if e[0] == 0 {
			break
		}
		if e[0] == 0xE5 {
			lfn, expect = nil, 0
			continue
		}
		if e[11]&0x3f == attrLFN {
			seq := int(e[0] & 0x1f)
			if e[0]&0x40 != 0 {
				lfn, expect, sum = make([]uint16, seq*13), seq, e[13]
			}
			if seq == 0 || seq != expect || e[13] != sum {
				expect = -1
				continue
			}
			for j, o := range lfnOffsets {
				lfn[(seq-1)*13+j] = binary.LittleEndian.Uint16(e[o:])
			}
			expect--
			continue
		}
		var short [11]byte
		copy(short[:], e[:11])
		if short[0] == 0x05 {
			short[0] = 0xE5
		}
		de := dirent{short: short, attr: e[11], size: binary.LittleEndian.Uint32(e[28:]),
			cluster: uint32(binary.LittleEndian.Uint16(e[20:]))<<16 | uint32(binary.LittleEndian.Uint16(e[26:])),
			slot:    i}
		if expect == 0 && lfn != nil && checksum(short) == sum {
			de.name = decodeLFN(lfn)
		} else {
			de.name = shortDisplay(short, e[12])
		}
		lfn, expect = nil, 0
		if de.name == "." || de.name == ".." {
			continue
		}
		d.entries = append(d.entries, de)
	}
}

func (d *dir) find(name string) *dirent {
	for i := range d.entries {
		e := &d.entries[i]
		if e.attr&attrVolume != 0 && e.attr&attrDir == 0 {
			continue
		}
		if strings.EqualFold(e.name, name) || strings.EqualFold(shortDisplay(e.short, 0), name) {
			return e
		}
	}
	return nil
}

// writeSlots writes slots [from, to) of d to disk.
func (f *FS) writeSlots(d *dir, from, to int) error {
	per := int(f.csize / slotSize)
	for i := from; i < to; {
		ci := i / per
		end := min(to, (ci+1)*per)
		off := f.clusterOff(d.clusters[ci]) + int64(i%per)*slotSize
		if _, err := f.dev.WriteAt(d.data[i*slotSize:end*slotSize], off); err != nil {
			return fmt.Errorf("fat: write directory: %w", err)
		}
		i = end
	}
	return nil
}

// Info describes a file or directory.
type Info struct {
	Name  string
	Size  int64
	IsDir bool
}

func splitPath(name string) []string {
	name = strings.Trim(path.Clean("/"+strings.ReplaceAll(name, `\`, "/")), "/")
	if name == "" {
		return nil
	}
	return strings.Split(name, "/")
}

// walk resolves the directory holding the last element of parts.
func (f *FS) walk(parts []string) (*dir, error) {
	d, err := f.readDir(f.rootClus)
	if err != nil {
		return nil, err
	}
	for i, p := range parts {
		e := d.find(p)
		if e == nil {
			return nil, &iofs.PathError{Op: "open", Path: strings.Join(parts[:i+1], "/"), Err: iofs.ErrNotExist}
		}
		if !e.isDir() {
			return nil, &iofs.PathError{Op: "open", Path: strings.Join(parts[:i+1], "/"), Err: errors.New("not a directory")}
		}
		if d, err = f.readDir(e.cluster); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// Stat describes the file or directory name.
func (f *FS) Stat(name string) (Info, error) {
	parts := splitPath(name)
	if len(parts) == 0 {
		return Info{Name: "/", IsDir: true}, nil
	}
	d, err := f.walk(parts[:len(parts)-1])
	if err != nil {
		return Info{}, err
	}
	e := d.find(parts[len(parts)-1])
	if e == nil {
		return Info{}, &iofs.PathError{Op: "stat", Path: name, Err: iofs.ErrNotExist}
	}
	return Info{Name: e.name, Size: int64(e.size), IsDir: e.isDir()}, nil
}

// ReadDir lists the directory name (volume labels left out).
func (f *FS) ReadDir(name string) ([]Info, error) {
	d, err := f.walk(splitPath(name))
	if err != nil {
		return nil, err
	}
	var out []Info
	for _, e := range d.entries {
		if e.attr&attrVolume != 0 && e.attr&attrDir == 0 {
			continue
		}
		out = append(out, Info{Name: e.name, Size: int64(e.size), IsDir: e.isDir()})
	}
	return out, nil
}

// ReadFile returns the contents of the file name.
func (f *FS) ReadFile(name string) ([]byte, error) {
	parts := splitPath(name)
	if len(parts) == 0 {
		return nil, &iofs.PathError{Op: "read", Path: name, Err: errors.New("is a directory")}
	}
	d, err := f.walk(parts[:len(parts)-1])
	if err != nil {
		return nil, err
	}
	e := d.find(parts[len(parts)-1])
	switch {
	case e == nil:
		return nil, &iofs.PathError{Op: "read", Path: name, Err: iofs.ErrNotExist}
	case e.isDir():
		return nil, &iofs.PathError{Op: "read", Path: name, Err: errors.New("is a directory")}
	case e.size == 0:
		return []byte{}, nil
	}
	cs, err := f.chain(e.cluster)
	if err != nil {
		return nil, err
	}
	if int64(len(cs))*f.csize < int64(e.size) {
		return nil, fmt.Errorf("fat: %s: chain of %d clusters is shorter than its size %d", name, len(cs), e.size)
	}
	return f.readClusters(cs, int64(e.size))
}

// WriteFile creates or replaces the file name; its directory must exist.
// A replaced file's new data goes to new clusters and the old ones are
// freed after the directory entry points at the new data.
func (f *FS) WriteFile(name string, data []byte) error {
	parts := splitPath(name)
	if len(parts) == 0 {
		return fmt.Errorf("fat: write %q: no file name", name)
	}
	if int64(len(data)) > maxFile {
		return fmt.Errorf("fat: write %s: %d bytes is too large for FAT32", name, len(data))
	}
	base := parts[len(parts)-1]
	if err := checkName(base); err != nil {
		return fmt.Errorf("fat: write %s: %w", name, err)
	}
	d, err := f.walk(parts[:len(parts)-1])
	if err != nil {
		return err
	}
	old := d.find(base)
	if old != nil && old.isDir() {
		return &iofs.PathError{Op: "write", Path: name, Err: errors.New("is a directory")}
	}
	cs, err := f.alloc((int64(len(data)) + f.csize - 1) / f.csize)
	if err != nil {
		return fmt.Errorf("fat: write %s: %w", name, err)
	}
	if err := f.writeClusters(cs, data); err != nil {
		return err
	}
	if err := f.flushFAT(); err != nil {
		return err
	}
	var first uint32
	if len(cs) > 0 {
		first = cs[0]
	}
	t := f.now()
	if old == nil {
		if err := f.addEntry(d, base, attrArchive, first, uint32(len(data)), t); err != nil {
			return err
		}
		return f.flushFAT()
	}
	oldCluster := old.cluster
	e := d.data[old.slot*slotSize : (old.slot+1)*slotSize]
	binary.LittleEndian.PutUint16(e[20:], uint16(first>>16))
	binary.LittleEndian.PutUint16(e[26:], uint16(first))
	binary.LittleEndian.PutUint32(e[28:], uint32(len(data)))
	e[11] |= attrArchive
	putTime(e[22:], e[24:], t)
	binary.LittleEndian.PutUint16(e[18:], dosDate(t))
	if err := f.writeSlots(d, old.slot, old.slot+1); err != nil {
		return err
	}
	if oldCluster >= 2 {
		oldChain, err := f.chain(oldCluster)
		if err != nil {
			return err
		}
		for _, c := range oldChain {
			f.setFAT(c, 0)
		}
	}
	return f.flushFAT()
}

// MkdirAll creates the directory name and any missing parents.
func (f *FS) MkdirAll(name string) error {
	parts := splitPath(name)
	d, err := f.readDir(f.rootClus)
	if err != nil {
		return err
	}
	for _, p := range parts {
		e := d.find(p)
		if e != nil && !e.isDir() {
			return &iofs.PathError{Op: "mkdir", Path: name, Err: errors.New("a file of that name exists")}
		}
		if e == nil {
			if err := checkName(p); err != nil {
				return fmt.Errorf("fat: mkdir %s: %w", name, err)
			}
			if e, err = f.mkdir(d, p); err != nil {
				return err
			}
		}
		if d, err = f.readDir(e.cluster); err != nil {
			return err
		}
	}
	return nil
}

func (f *FS) mkdir(parent *dir, name string) (*dirent, error) {
	cs, err := f.alloc(1)
	if err != nil {
		return nil, fmt.Errorf("fat: mkdir %s: %w", name, err)
	}
	t := f.now()
	b := make([]byte, f.csize)
	dot := func(e []byte, n string, c uint32) {
		copy(e[:11], fmt.Sprintf("%-11s", n))
		e[11] = attrDir
		binary.LittleEndian.PutUint16(e[20:], uint16(c>>16))
		binary.LittleEndian.PutUint16(e[26:], uint16(c))
		putTime(e[14:], e[16:], t)
		putTime(e[22:], e[24:], t)
		binary.LittleEndian.PutUint16(e[18:], dosDate(t))
	}
	dot(b[0:32], ".", cs[0])
	up := parent.cluster
	if up == f.rootClus {
		up = 0 // ".." of a child of the root is cluster 0
	}
	dot(b[32:64], "..", up)
	if err := f.writeClusters(cs, b); err != nil {
		return nil, err
	}
	if err := f.flushFAT(); err != nil {
		return nil, err
	}
	if err := f.addEntry(parent, name, attrDir, cs[0], 0, t); err != nil {
		return nil, err
	}
	if err := f.flushFAT(); err != nil {
		return nil, err
	}
	return parent.find(name), nil
}

// addEntry writes a new entry (with LFN slots when the name needs them) into
// d, growing the directory by a cluster when it has no room.
func (f *FS) addEntry(d *dir, name string, attr byte, cluster, size uint32, t time.Time) error {
	taken := map[[11]byte]bool{}
	for _, e := range d.entries {
		taken[e.short] = true
	}
	short, ntres, fits := shortName(name)
	var slots []byte
	if !fits || taken[short] {
		short = numericTail(name, taken)
		ntres = 0
		slots = lfnSlots(name, checksum(short))
	}
	e := make([]byte, slotSize)
	copy(e, short[:])
	if e[0] == 0xE5 {
		e[0] = 0x05
	}
	e[11], e[12] = attr, ntres
	putTime(e[14:], e[16:], t)
	binary.LittleEndian.PutUint16(e[18:], dosDate(t))
	binary.LittleEndian.PutUint16(e[20:], uint16(cluster>>16))
	putTime(e[22:], e[24:], t)
	binary.LittleEndian.PutUint16(e[26:], uint16(cluster))
	binary.LittleEndian.PutUint32(e[28:], size)
	slots = append(slots, e...)
	n := len(slots) / slotSize

	start, end := d.freeRun(n)
	for start < 0 {
		if err := f.growDir(d, n); err != nil {
			return err
		}
		start, end = d.freeRun(n)
	}
	copy(d.data[start*slotSize:], slots)
	to := start + n
	// Past the old end marker, the slot after ours must read as the new end.
	if start+n > end && to < d.slots() && d.data[to*slotSize] != 0 {
		d.data[to*slotSize] = 0
		to++
	}
	if err := f.writeSlots(d, start, to); err != nil {
		return err
	}
	d.parse()
	return nil
}

// freeRun finds n consecutive free slots; it returns their start (-1 when
// there is no room) and the index of the end marker.
func (d *dir) freeRun(n int) (start, end int) {
	end = d.slots()
	for i := 0; i < d.slots(); i++ {
		if d.data[i*slotSize] == 0 {
			end = i
			break
		}
	}
	run := 0
	for i := 0; i < d.slots(); i++ {
		b := d.data[i*slotSize]
		if i >= end || b == 0xE5 {
			run++
			if run == n {
				return i - n + 1, end
			}
		} else {
			run = 0
		}
	}
	return -1, end
}

// growDir adds zeroed clusters to d, enough for n more slots.
func (f *FS) growDir(d *dir, n int) error {
	per := int(f.csize / slotSize)
	if len(d.clusters)*per+n > 65536 {
		return errors.New("fat: directory is full (65536 entries)")
	}
	k := int64((n + per - 1) / per)
	cs, err := f.alloc(k)
	if err != nil {
		return fmt.Errorf("fat: grow directory: %w", err)
	}
	if err := f.writeClusters(cs, nil); err != nil {
		return err
	}
	f.setFAT(d.clusters[len(d.clusters)-1], cs[0])
	if err := f.flushFAT(); err != nil {
		return err
	}
	d.clusters = append(d.clusters, cs...)
	d.data = append(d.data, make([]byte, k*f.csize)...)
	return nil
}

// Write is one file a batch of writes will create or replace.
type Write struct {
	Name string
	Size int64
}

// Need returns the clusters a batch of WriteFile calls (with MkdirAll for
// their directories) takes at most: the data of every file in full (a
// replaced file's old clusters are freed only after its new data is
// written), a cluster for each missing directory, and room for the new
// directory entries.
func (f *FS) Need(ws []Write) (int64, error) {
	var need int64
	newSlots := map[string]int{} // directory → slots for new entries
	newDirs := map[string]bool{}
	for _, w := range ws {
		parts := splitPath(w.Name)
		if len(parts) == 0 {
			return 0, fmt.Errorf("fat: %q: no file name", w.Name)
		}
		need += (w.Size + f.csize - 1) / f.csize
		for i := range parts {
			p := strings.Join(parts[:i+1], "/")
			if _, err := f.Stat(p); err == nil {
				continue
			} else if !errors.Is(err, iofs.ErrNotExist) {
				return 0, err
			}
			if i < len(parts)-1 && !newDirs[p] {
				newDirs[p] = true
				need++
			}
			newSlots[strings.Join(parts[:i], "/")] += 1 + (len(utf16.Encode([]rune(parts[i])))+12)/13
		}
	}
	per := int(f.csize / slotSize)
	for _, n := range newSlots {
		need += int64((n + per - 1) / per) // conservative: as if no slot were free
	}
	return need, nil
}

// ---- names ----

var lfnOffsets = [13]int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30}

func checksum(short [11]byte) byte {
	var s byte
	for _, c := range short {
		s = (s&1)<<7 + s>>1 + c
	}
	return s
}

func decodeLFN(u []uint16) string {
	for i, c := range u {
		if c == 0 {
			u = u[:i]
			break
		}
	}
	return string(utf16.Decode(u))
}

func lfnSlots(name string, sum byte) []byte {
	u := utf16.Encode([]rune(name))
	n := (len(u) + 12) / 13
	buf := make([]uint16, n*13)
	copy(buf, u)
	for i := len(u); i < len(buf); i++ {
		if i == len(u) {
			buf[i] = 0
		} else {
			buf[i] = 0xFFFF
		}
	}
	out := make([]byte, n*slotSize)
	for k := 0; k < n; k++ {
		seq := n - k // on disk, the last part comes first
		e := out[k*slotSize : (k+1)*slotSize]
		e[0] = byte(seq)
		if k == 0 {
			e[0] |= 0x40
		}
		e[11], e[13] = attrLFN, sum
		for j, o := range lfnOffsets {
			binary.LittleEndian.PutUint16(e[o:], buf[(seq-1)*13+j])
		}
	}
	return out
}

func checkName(n string) error {
	if n == "" || n == "." || n == ".." || len(utf16.Encode([]rune(n))) > 255 {
		return fmt.Errorf("invalid file name %q", n)
	}
	for _, r := range n {
		if r < 0x20 || strings.ContainsRune(`"*/:<>?\|`, r) {
			return fmt.Errorf("file name %q: character %q not allowed on FAT", n, r)
		}
	}
	if strings.HasSuffix(n, ".") || strings.HasSuffix(n, " ") {
		return fmt.Errorf("file name %q ends in a dot or space", n)
	}
	return nil
}

func validShort(c byte) bool {
	switch {
	case c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'()-@^_`{}~", c) >= 0
}

// shortName returns the 8.3 entry for a name that fits one exactly, with the
// NT case flags Windows and Linux use for all-lowercase base or extension
// (0x08, 0x10), so "config.txt" needs no long-name slots.
func shortName(name string) (s [11]byte, ntres byte, ok bool) {
	base, ext, dotted := strings.Cut(name, ".")
	if base == "" || len(base) > 8 || len(ext) > 3 || strings.Contains(ext, ".") || (dotted && ext == "") {
		return s, 0, false
	}
	flag := func(part string, bit byte) (byte, bool) {
		lower, upper := false, false
		for i := 0; i < len(part); i++ {
			c := part[i]
			switch {
			case c >= 'a' && c <= 'z':
				lower = true
			case c >= 'A' && c <= 'Z':
				upper = true
			}
			if !validShort(toUpper(c)) {
				return 0, false
			}
		}
		if lower && upper {
			return 0, false
		}
		if lower {
			return bit, true
		}
		return 0, true
	}
	fb, ok1 := flag(base, 0x08)
	fe, ok2 := flag(ext, 0x10)
	if !ok1 || !ok2 {
		return s, 0, false
	}
	copy(s[:], fmt.Sprintf("%-8s%-3s", strings.ToUpper(base), strings.ToUpper(ext)))
	return s, fb | fe, true
}

func toUpper(c byte) byte {
	if c >= 'a' && c <= 'z' {
		return c - 32
	}
	return c
}

// numericTail makes a unique short alias like OUTPOS~1.SER.
func numericTail(name string, taken map[[11]byte]bool) [11]byte {
	clean := func(s string, n int) string {
		var b []byte
		for _, r := range strings.ToUpper(s) {
			if len(b) == n {
				break
			}
			switch {
			case r == ' ' || r == '.':
			case r < 0x80 && validShort(byte(r)):
				b = append(b, byte(r))
			default:
				b = append(b, '_')
			}
		}
		return string(b)
	}
	base, ext := strings.TrimLeft(name, "."), ""
	if i := strings.LastIndexByte(base, '.'); i > 0 {
		base, ext = base[:i], base[i+1:]
	}
	b, x := clean(base, 8), clean(ext, 3)
	if b == "" {
		b = "_"
	}
	var s [11]byte
	for k := 1; ; k++ {
		tail := fmt.Sprintf("~%d", k)
		stem := b
		if len(stem)+len(tail) > 8 {
			stem = stem[:8-len(tail)]
		}
		copy(s[:], fmt.Sprintf("%-8s%-3s", stem+tail, x))
		if !taken[s] {
			return s
		}
	}
}

func shortDisplay(s [11]byte, ntres byte) string {
	base := strings.TrimRight(string(s[:8]), " ")
	ext := strings.TrimRight(string(s[8:]), " ")
	if ntres&0x08 != 0 {
		base = strings.ToLower(base)
	}
	if ntres&0x10 != 0 {
		ext = strings.ToLower(ext)
	}
	if ext == "" {
		return base
	}
	return base + "." + ext
}

func dosDate(t time.Time) uint16 {
	y := t.Year() - 1980
	if y < 0 {
		return 1<<5 | 1 // 1980-01-01
	}
	if y > 127 {
		y = 127
	}
	return uint16(y<<9 | int(t.Month())<<5 | t.Day())
}

func putTime(tb, db []byte, t time.Time) {
	binary.LittleEndian.PutUint16(tb, uint16(t.Hour()<<11|t.Minute()<<5|t.Second()/2))
	binary.LittleEndian.PutUint16(db, dosDate(t))
}
