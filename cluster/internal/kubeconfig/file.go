package kubeconfig

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"kubeforge.dev/kubeforge/internal/fsutil"
	"kubeforge.dev/kubeforge/internal/kferr"
)

// errNothing tells edit that there is no file to edit and none is to be made.
var errNothing = errors.New("nothing to edit")

// edit applies fn to the kubeconfig at path under its lock and writes the result back when fn
// reports a change. With create, a missing file (and its directory) is made; without, a missing
// file is left missing. The lock file is removed on every return.
func edit(ctx context.Context, path string, create bool, fn func(*clientcmdapi.Config) (bool, error)) (err error) {
	if !create {
		if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
			return nil // nor its directory, maybe, where the lock would go
		}
	} else if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return kferr.Environment("check the permissions of "+filepath.Dir(path),
			"making the directory of kubeconfig %s: %w", path, err)
	}
	unlock, err := lock(ctx, path)
	if err != nil {
		return err
	}
	defer func() {
		if uerr := unlock(); err == nil {
			err = uerr
		}
	}()

	target, fi, err := resolve(path, create)
	if errors.Is(err, errNothing) {
		return nil
	}
	if err != nil {
		return err
	}
	cfg, mode := clientcmdapi.NewConfig(), fs.FileMode(0o600)
	if fi != nil {
		mode = fi.Mode().Perm()
		if cfg, err = clientcmd.LoadFromFile(target); err != nil {
			return kferr.Environment(
				"fix the file, or move it away and re-run (a new one is then made); it was not changed",
				"kubeconfig %s is not a valid kubeconfig: %w", describe(path, target), err)
		}
	}
	changed, err := fn(cfg)
	if err != nil || !changed {
		return err
	}
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("encoding kubeconfig %s: %w", path, err)
	}
	// Through a temporary file next to the target and a rename: readers see the old or the new
	// file, never a part, and a symbolic link stays a link.
	if err := fsutil.WriteFileAtomic(target, b, mode, 0o700); err != nil {
		return kferr.Environment("check the permissions of "+filepath.Dir(target),
			"writing kubeconfig %s: %w", describe(path, target), err)
	}
	return nil
}

// resolve returns the file that path names, following symbolic links to the end (a dotfiles
// repository's link stays a link, its target is written), and the target's FileInfo, nil when
// there is no such file yet. A dangling link or a loop is an error, or errNothing without create
// (there is nothing to remove from); so is a target that is not a regular file (/dev/null).
func resolve(path string, create bool) (string, fs.FileInfo, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		if !create {
			return "", nil, errNothing
		}
		return path, nil, nil
	}
	if err != nil {
		return "", nil, kferr.Environment("check the file and its directory", "reading kubeconfig %s: %w", path, err)
	}
	target := path
	if fi.Mode()&fs.ModeSymlink != 0 {
		target, err = filepath.EvalSymlinks(path)
		if err != nil {
			if !create {
				return "", nil, errNothing
			}
			link, _ := os.Readlink(path)
			if errors.Is(err, fs.ErrNotExist) {
				return "", nil, kferr.Environment(
					"create the file it points to (touch it), or replace the link",
					"kubeconfig %s is a symbolic link to %s, which does not exist (a dangling link)", path, link)
			}
			return "", nil, kferr.Environment(
				"fix the chain of links (a loop?), or replace the link with a file",
				"kubeconfig %s is a symbolic link (to %s) that does not resolve: %w", path, link, err)
		}
		if fi, err = os.Stat(target); err != nil {
			return "", nil, kferr.Environment("check the file and its directory", "reading kubeconfig %s: %w", describe(path, target), err)
		}
	}
	if !fi.Mode().IsRegular() {
		if !create {
			return "", nil, errNothing
		}
		return "", nil, kferr.Environment(
			"point KUBECONFIG at a regular file, or use `kubeforge kubeconfig` to get the cluster's kubeconfig",
			"kubeconfig %s is not a regular file (%s): kubeforge cannot add its context there", describe(path, target), fi.Mode().Type())
	}
	return target, fi, nil
}

// describe names path, and its target when path is a symbolic link.
func describe(path, target string) string {
	if target == "" || target == path {
		return path
	}
	return path + " (-> " + target + ")"
}
