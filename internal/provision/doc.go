// Package provision turns a Raspberry Pi OS image, SD card or running Pi
// into an Outpost gateway.
//
// For a card or image (outpostctl flash prepare) it edits the FAT boot
// partition in pure Go (package fat; no mount, no root, any OS): it recognises
// Raspberry Pi OS by its boot files, tells a 32-bit image from a 64-bit one by
// its kernels, picks the matching gateway build, and writes the gateway's
// files under outpost/ with a first-boot hook for both Raspberry Pi OS
// generations — cloud-init user-data (Trixie and later) and firstrun.sh run
// from cmdline.txt (Bookworm) — plus the I2C and 1-Wire lines in config.txt.
// Both hooks run the same outpost/setup.sh, which `outpost-gateway install`
// also runs on a Pi that is already up. The generated files are
// text/template files under templates/.
package provision
