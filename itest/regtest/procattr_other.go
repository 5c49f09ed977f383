//go:build itest && !linux

package regtest

import "syscall"

// procAttr returns nil off Linux, where there is no parent-death signal;
// t.Cleanup still stops the daemons when the test ends normally.
func procAttr() *syscall.SysProcAttr {
	return nil
}
