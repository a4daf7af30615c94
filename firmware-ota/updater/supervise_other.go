//go:build !linux

package updater

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
