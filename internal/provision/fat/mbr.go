package fat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// SectorSize is the MBR's logical sector size.
const SectorSize = 512

// Partition is one primary MBR partition.
type Partition struct {
	Number   int   // 1..4
	Type     byte  // 0x0c FAT32 (LBA), 0x83 Linux, …
	Bootable bool  // status 0x80
	Start    int64 // bytes from the start of the disk
	Size     int64 // bytes
}

// IsFAT reports whether the partition type is one of the FAT types.
func (p Partition) IsFAT() bool {
	switch p.Type {
	case 0x01, 0x04, 0x06, 0x0b, 0x0c, 0x0e:
		return true
	}
	return false
}

// Errors ReadMBR returns; callers branch on them with errors.Is.
var (
	ErrNoPartitionTable = errors.New("no MBR partition table")
	ErrGPT              = errors.New("GPT partition table (only MBR is supported; Raspberry Pi OS images use MBR)")
)

// ReadMBR reads the primary partitions of the MBR at the start of r.
// diskSize, when > 0, bounds the partitions: one that runs past it means a
// truncated image. Empty entries are skipped; extended partitions are listed
// like the others (their type tells them apart).
func ReadMBR(r io.ReaderAt, diskSize int64) ([]Partition, error) {
	b := make([]byte, SectorSize)
	if _, err := r.ReadAt(b, 0); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: shorter than one sector", ErrNoPartitionTable)
		}
		return nil, fmt.Errorf("mbr: read: %w", err)
	}
	if b[510] != 0x55 || b[511] != 0xAA {
		return nil, fmt.Errorf("%w: no boot signature in sector 0", ErrNoPartitionTable)
	}
	if looksLikeBootSector(b) {
		return nil, fmt.Errorf("%w: sector 0 is a FAT boot sector (a bare file system, not a disk image)", ErrNoPartitionTable)
	}
	var parts []Partition
	for i := 0; i < 4; i++ {
		e := b[446+16*i : 446+16*(i+1)]
		status, typ := e[0], e[4]
		lba, n := binary.LittleEndian.Uint32(e[8:]), binary.LittleEndian.Uint32(e[12:])
		if typ == 0 && n == 0 {
			continue
		}
		if status != 0 && status != 0x80 {
			return nil, fmt.Errorf("%w: entry %d has status %#02x (want 0x00 or 0x80)", ErrNoPartitionTable, i+1, status)
		}
		if typ == 0xEE {
			return nil, ErrGPT
		}
		if lba == 0 || n == 0 {
			return nil, fmt.Errorf("%w: partition %d starts at sector %d with %d sectors", ErrNoPartitionTable, i+1, lba, n)
		}
		p := Partition{Number: i + 1, Type: typ, Bootable: status == 0x80,
			Start: int64(lba) * SectorSize, Size: int64(n) * SectorSize}
		if diskSize > 0 && p.Start+p.Size > diskSize {
			return nil, fmt.Errorf("mbr: partition %d ends at byte %d, past the end of the disk (%d bytes): truncated image?", p.Number, p.Start+p.Size, diskSize)
		}
		for _, q := range parts {
			if p.Start < q.Start+q.Size && q.Start < p.Start+p.Size {
				return nil, fmt.Errorf("%w: partitions %d and %d overlap", ErrNoPartitionTable, q.Number, p.Number)
			}
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return nil, fmt.Errorf("%w: all four entries are empty", ErrNoPartitionTable)
	}
	return parts, nil
}

// looksLikeBootSector reports whether b is a FAT volume boot record rather
// than an MBR: a jump instruction and a plausible BPB.
func looksLikeBootSector(b []byte) bool {
	if b[0] != 0xEB && b[0] != 0xE9 {
		return false
	}
	bps := binary.LittleEndian.Uint16(b[11:])
	spc := b[13]
	return (bps == 512 || bps == 1024 || bps == 2048 || bps == 4096) && spc != 0 && spc&(spc-1) == 0 && b[16] >= 1 && b[16] <= 4
}

// WriteMBR writes a fresh MBR holding parts (at most four) with the given
// disk identifier (Raspberry Pi OS names partitions PARTUUID=<id>-0N).
// Partition starts and sizes must be multiples of SectorSize.
func WriteMBR(w io.WriterAt, diskID uint32, parts []Partition) error {
	if len(parts) > 4 {
		return fmt.Errorf("mbr: %d partitions, at most 4", len(parts))
	}
	b := make([]byte, SectorSize)
	binary.LittleEndian.PutUint32(b[440:], diskID)
	for i, p := range parts {
		if p.Start%SectorSize != 0 || p.Size%SectorSize != 0 || p.Start <= 0 || p.Size <= 0 {
			return fmt.Errorf("mbr: partition %d is not sector-aligned", i+1)
		}
		e := b[446+16*i:]
		if p.Bootable {
			e[0] = 0x80
		}
		// CHS fields: the "beyond CHS" marker every modern tool writes.
		copy(e[1:4], []byte{0xfe, 0xff, 0xff})
		e[4] = p.Type
		copy(e[5:8], []byte{0xfe, 0xff, 0xff})
		binary.LittleEndian.PutUint32(e[8:], uint32(p.Start/SectorSize))
		binary.LittleEndian.PutUint32(e[12:], uint32(p.Size/SectorSize))
	}
	b[510], b[511] = 0x55, 0xAA
	if _, err := w.WriteAt(b, 0); err != nil {
		return fmt.Errorf("mbr: write: %w", err)
	}
	return nil
}
