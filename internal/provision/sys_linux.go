package provision

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// devNumber is a device node's "major:minor", as sysfs writes it.
func devNumber(p string) string {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return ""
	}
	return fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
}

// Exclusive opens a block device so that the kernel refuses while any of
// it is mounted (O_EXCL on a block device): a second guard after the mount
// table check, closing the window between the two.
const Exclusive = unix.O_EXCL

// dropCache makes the next reads of f come from the device, not the page
// cache, so a verify reads what the card really holds.
func dropCache(f *os.File) error {
	if err := f.Sync(); err != nil {
		return err
	}
	_ = unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0) // block devices; harmless to fail on files
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}
