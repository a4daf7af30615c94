package gateway

import "golang.org/x/sys/unix"

// kernelSynced asks the kernel whether NTP (systemd-timesyncd, chrony)
// declared the clock synchronised.
func kernelSynced() bool {
	var tx unix.Timex
	state, err := unix.Adjtimex(&tx)
	if err != nil {
		return false
	}
	return state != unix.TIME_ERROR && tx.Status&unix.STA_UNSYNC == 0
}
