package images

import (
	"context"
	"fmt"
	"strings"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

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
