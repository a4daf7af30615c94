package updater

import "syscall"

// sysProcAttr kills the worker if the supervisor dies: a worker must never
// run unsupervised next to the one a restarted supervisor starts.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
