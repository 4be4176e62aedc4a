//go:build unix

package docker

import (
	"os"
	"path/filepath"
	"syscall"
)

// hostLock takes an exclusive lock shared by every kubeforge process on this host, so that two
// of them do not pick networks at the same time: Docker's duplicate-name check is not atomic. It
// is best effort: without the lock file, the caller goes on unlocked.
func hostLock(name string) (unlock func()) {
	f, err := os.OpenFile(filepath.Join(os.TempDir(), name), os.O_RDONLY|os.O_CREATE, 0o666)
	if err != nil {
		return func() {}
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return func() {}
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}
}
