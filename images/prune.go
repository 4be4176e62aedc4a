package images

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"kubeforge.dev/kubeforge/contract/vmimage"
	"kubeforge.dev/kubeforge/internal/ui"
)

// Prune removes the node images (kubeforge.local/node:*) other than those in keep. An image a
// container still uses, even a stopped one, is left alone: Docker refuses to remove it, and
// Prune says so only in verbose output. It returns the references removed.
func Prune(ctx context.Context, cli *client.Client, keep []string, l *ui.Logger) ([]string, error) {
	if l == nil {
		l = ui.Discard()
	}
	kept := map[string]bool{}
	for _, k := range keep {
		kept[k] = true
	}
	list, err := cli.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("reference", NodeRepo))})
	if err != nil {
		return nil, fmt.Errorf("listing node images: %w", err)
	}
	var removed []string
	for _, img := range list {
		for _, tag := range img.RepoTags {
			if kept[tag] || !strings.HasPrefix(tag, NodeRepo+":") {
				continue
			}
			if _, err := cli.ImageRemove(ctx, tag, image.RemoveOptions{PruneChildren: true}); err != nil {
				l.Debugf("keeping %s: %v", tag, err)
				continue
			}
			removed = append(removed, tag)
		}
	}
	return removed, nil
}

// PruneVMImages removes the cached VM images (the directories next to current, the one the
// current binaries make) other than current and those in keep (the images recorded clusters were
// made from: `node add` uses them), and returns the directories removed. Builds in progress
// (hidden work directories) and directories that are not VM images are left alone.
func PruneVMImages(current string, keep []string) ([]string, error) {
	parent := filepath.Dir(current)
	entries, err := os.ReadDir(parent)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing the VM image cache: %w", err)
	}
	kept := map[string]bool{filepath.Clean(current): true}
	for _, k := range keep {
		kept[filepath.Clean(k)] = true
	}
	var removed []string
	for _, e := range entries {
		dir := filepath.Join(parent, e.Name())
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") || kept[dir] {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, vmimage.File)); err != nil {
			continue // not a VM image
		}
		if err := os.RemoveAll(dir); err != nil {
			return removed, fmt.Errorf("removing the VM image %s: %w", dir, err)
		}
		removed = append(removed, dir)
	}
	return removed, nil
}
