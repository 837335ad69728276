package testenv

import "syscall"

// dieWithParent makes a child get SIGKILL when the process that started it
// dies, so a crashed test leaves no daemon behind.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
