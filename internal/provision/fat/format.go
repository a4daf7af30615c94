package fat

import (
	"encoding/binary"
	"fmt"
)

// FormatOptions shape a new FAT32 file system.
type FormatOptions struct {
	Label             string // at most 11 characters; "NO NAME" when empty
	SectorsPerCluster int    // power of two, 1..128; default 1
	VolumeID          uint32
}

// Format writes an empty FAT32 file system of size bytes at offset, laid out
// like mkfs.vfat -F 32 (32 reserved sectors, two FATs, FSInfo in sector 1,
// backup boot sector in 6, root directory in cluster 2). Tests use it to
// build Raspberry Pi OS-shaped images; it is small enough to keep honest by
// checking its output with dosfstools where they are installed.
func Format(dev Device, offset, size int64, o FormatOptions) error {
	const bps = 512
	spc := int64(o.SectorsPerCluster)
	if spc == 0 {
		spc = 1
	}
	if spc&(spc-1) != 0 || spc > 128 {
		return fmt.Errorf("fat: format: %d sectors per cluster", spc)
	}
	if len(o.Label) > 11 {
		return fmt.Errorf("fat: format: label %q longer than 11", o.Label)
	}
	label := o.Label
	if label == "" {
		label = "NO NAME"
	}
	total := size / bps
	const resv, nfats = 32, 2
	var fatSecs int64 = 1
	for {
		clusters := (total - resv - nfats*fatSecs) / spc
		need := ((clusters+2)*4 + bps - 1) / bps
		if need <= fatSecs {
			break
		}
		fatSecs = need
	}
	clusters := (total - resv - nfats*fatSecs) / spc
	if clusters < 16 || total > 0xFFFFFFFF {
		return fmt.Errorf("fat: format: %d bytes does not make a FAT32 file system", size)
	}
	// Zero the reserved area, both FATs and the root cluster.
	zero := make([]byte, 64<<10)
	for off, end := int64(0), (resv+nfats*fatSecs+spc)*bps; off < end; off += int64(len(zero)) {
		n := min(int64(len(zero)), end-off)
		if _, err := dev.WriteAt(zero[:n], offset+off); err != nil {
			return fmt.Errorf("fat: format: %w", err)
		}
	}
	b := make([]byte, bps)
	copy(b[0:3], []byte{0xEB, 0x58, 0x90})
	copy(b[3:11], "OUTPOST ")
	binary.LittleEndian.PutUint16(b[11:], bps)
	b[13] = byte(spc)
	binary.LittleEndian.PutUint16(b[14:], resv)
	b[16] = nfats
	b[21] = 0xF8                               // fixed disk
	binary.LittleEndian.PutUint16(b[24:], 63)  // sectors per track
	binary.LittleEndian.PutUint16(b[26:], 255) // heads
	binary.LittleEndian.PutUint32(b[28:], uint32(offset/bps))
	binary.LittleEndian.PutUint32(b[32:], uint32(total))
	binary.LittleEndian.PutUint32(b[36:], uint32(fatSecs))
	binary.LittleEndian.PutUint32(b[44:], 2) // root cluster
	binary.LittleEndian.PutUint16(b[48:], 1) // FSInfo
	binary.LittleEndian.PutUint16(b[50:], 6) // backup boot sector
	b[64] = 0x80
	b[66] = 0x29
	binary.LittleEndian.PutUint32(b[67:], o.VolumeID)
	copy(b[71:82], fmt.Sprintf("%-11s", label))
	copy(b[82:90], "FAT32   ")
	b[510], b[511] = 0x55, 0xAA
	info := make([]byte, bps)
	binary.LittleEndian.PutUint32(info[0:], 0x41615252)
	binary.LittleEndian.PutUint32(info[484:], 0x61417272)
	binary.LittleEndian.PutUint32(info[488:], uint32(clusters-1))
	binary.LittleEndian.PutUint32(info[492:], 3)
	binary.LittleEndian.PutUint32(info[508:], 0xAA550000)
	for _, s := range []struct {
		sec  int64
		data []byte
	}{{0, b}, {1, info}, {6, b}, {7, info}} {
		if _, err := dev.WriteAt(s.data, offset+s.sec*bps); err != nil {
			return fmt.Errorf("fat: format: %w", err)
		}
	}
	fat := make([]byte, 12)
	binary.LittleEndian.PutUint32(fat[0:], 0x0FFFFFF8)
	binary.LittleEndian.PutUint32(fat[4:], 0x0FFFFFFF)
	binary.LittleEndian.PutUint32(fat[8:], eoc) // root directory
	for k := int64(0); k < nfats; k++ {
		if _, err := dev.WriteAt(fat, offset+(resv+k*fatSecs)*bps); err != nil {
			return fmt.Errorf("fat: format: %w", err)
		}
	}
	if o.Label != "" {
		e := make([]byte, slotSize)
		copy(e, fmt.Sprintf("%-11s", o.Label))
		e[11] = attrVolume
		if _, err := dev.WriteAt(e, offset+(resv+nfats*fatSecs)*bps); err != nil {
			return fmt.Errorf("fat: format: %w", err)
		}
	}
	return nil
}
