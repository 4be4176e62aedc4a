// Package fsutil holds small file helpers shared by the host CLI and the node supervisor (standard
// library only, so the supervisor stays small).
package fsutil

import (
	"os"
	"path/filepath"
)

// WriteFileAtomic writes b to path through a temporary file in the same directory and a rename,
// so readers see the old or the new content, never a part, even after a crash. Missing directories are created with
// dirMode.
func WriteFileAtomic(path string, b []byte, mode, dirMode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
