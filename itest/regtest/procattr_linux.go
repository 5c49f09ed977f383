//go:build itest && linux

package regtest

import "syscall"

// procAttr makes the kernel kill a daemon when the test binary dies, so a
// crashed or killed `go test` never leaves btcd or lnd running in CI.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
