package layer

import (
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func lutimes(p string, tm time.Time) error {
	ts := unix.NsecToTimespec(tm.UnixNano())
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}

func mkfifo(p string) error { return syscall.Mkfifo(p, 0o644) }

func itoa(i int) string   { return strconv.Itoa(i) }
func otoa(m int64) string { return strconv.FormatInt(m, 8) }
