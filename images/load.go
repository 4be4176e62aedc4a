package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/docker/docker/client"

	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/safe"
	"kubeforge.dev/kubeforge/internal/ui"
	"kubeforge.dev/kubeforge/provision"
)

// ImportCommand is how a node imports a docker-archive tarball from its standard input into the
// namespace the kubelet's containerd uses.
var ImportCommand = []string{"ctr", "--namespace=k8s.io", "images", "import", "--all-platforms", "-"}

var imageIDPattern = regexp.MustCompile(`^(sha256:)?[0-9a-f]{12,64}$`)

// Load copies images from the host's Docker into the nodes' containerd, for
// `kubeforge image load IMAGE...`. A node that already has an image (the same image ID under
// the same name) is skipped; the others get it in parallel. Every image is saved from Docker once.
func Load(ctx context.Context, cli *client.Client, nodes []provision.Node, refs []string, l *ui.Logger) error {
	if l == nil {
		l = ui.Discard()
	}
	if len(nodes) == 0 {
		return kferr.Usage("no nodes to load images into")
	}
	var errs []error
	for _, ref := range refs {
		if err := loadOne(ctx, cli, nodes, ref, l); err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
		}
	}
	return errors.Join(errs...)
}

func loadOne(ctx context.Context, cli *client.Client, nodes []provision.Node, ref string, l *ui.Logger) error {
	if imageIDPattern.MatchString(ref) {
		return kferr.Usage("image %s: give it by name (repository:tag), not by ID, so the pods can refer to it", ref)
	}
	insp, err := cli.ImageInspect(ctx, ref)
	if client.IsErrNotFound(err) {
		return kferr.WithHint(fmt.Errorf("image %s is not in the local Docker", ref), kferr.ExitUsage,
			"build or pull it first (docker build -t "+ref+" . / docker pull "+ref+"); `docker images` lists what is there")
	}
	if err != nil {
		return kferr.WithHint(fmt.Errorf("image %s: %w", ref, err), kferr.ExitEnvironment, "is Docker running? try: docker info")
	}
	id := insp.ID

	// Which nodes need it?
	need := make([]bool, len(nodes))
	checkErrs := make([]error, len(nodes)) // panics
	var wg sync.WaitGroup
	for i, n := range nodes {
		safe.GoWait(&wg, func(err error) { checkErrs[i] = err }, func() {
			nodeID, _ := NodeImageID(ctx, n, ref)
			need[i] = nodeID != id
			if !need[i] {
				l.Debugf("image %s is already on node %s", ref, n.Name())
			}
		})
	}
	wg.Wait()
	if err := errors.Join(checkErrs...); err != nil {
		return err
	}
	var targets []provision.Node
	for i, n := range nodes {
		if need[i] {
			targets = append(targets, n)
		}
	}
	if len(targets) == 0 {
		l.Infof(" • Image %s is already on every node", ref)
		return nil
	}

	step := l.Step(fmt.Sprintf("Loading image %s into %s", ref, nodeNames(targets)))
	archive, err := saveToTemp(ctx, cli, ref)
	if err != nil {
		return step.Done(err)
	}
	defer os.Remove(archive)

	errs := make([]error, len(targets))
	for i, n := range targets {
		safe.GoWait(&wg, func(err error) { errs[i] = err }, func() {
			errs[i] = importInto(ctx, n, ref, id, archive)
		})
	}
	wg.Wait()
	return step.Done(errors.Join(errs...))
}

// NodeImageID returns the ID (sha256 of the config) of image ref in a node's containerd, as the
// kubelet sees it; "" when the node does not have it.
func NodeImageID(ctx context.Context, n provision.Node, ref string) (string, error) {
	out, err := provision.Output(ctx, n, "crictl", "inspecti", "-o", "json", ref)
	if err != nil {
		return "", err
	}
	var v struct {
		Status struct {
			ID string `json:"id"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return "", fmt.Errorf("crictl inspecti %s on node %s: %w", ref, n.Name(), err)
	}
	return v.Status.ID, nil
}

func importInto(ctx context.Context, n provision.Node, ref, id, archive string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := n.Run(ctx, provision.Cmd{Args: ImportCommand, Stdin: f}); err != nil {
		return kferr.WithHint(fmt.Errorf("loading image %s into node %s: %w", ref, n.Name(), err), kferr.ExitEnvironment,
			"is the node running? kubeforge status; its containerd log: kubeforge logs "+n.Name())
	}
	got, err := NodeImageID(ctx, n, ref)
	if err != nil {
		return fmt.Errorf("image %s was imported into node %s but the kubelet's runtime does not see it: %w", ref, n.Name(), err)
	}
	if got != id {
		return fmt.Errorf("image %s in node %s has ID %s after the import, Docker's is %s", ref, n.Name(), got, id)
	}
	return nil
}

func saveToTemp(ctx context.Context, cli *client.Client, ref string) (string, error) {
	rc, err := cli.ImageSave(ctx, []string{ref})
	if err != nil {
		return "", fmt.Errorf("docker save %s: %w", ref, err)
	}
	defer rc.Close()
	f, err := os.CreateTemp("", "kubeforge-image-*.tar")
	if err != nil {
		return "", err
	}
	_, err = io.Copy(f, rc)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", kferr.WithHint(fmt.Errorf("docker save %s: %w", ref, err), kferr.ExitEnvironment,
			"is there room in "+os.TempDir()+"? set TMPDIR to a larger disk")
	}
	return f.Name(), nil
}

func nodeNames(nodes []provision.Node) string {
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Name()
	}
	if len(names) == 1 {
		return "node " + names[0]
	}
	return "nodes " + strings.Join(names, ", ")
}

// NodeImage is an image in the nodes' containerd, as `kubeforge image ls` shows it.
type NodeImage struct {
	Ref   string   `json:"ref"`
	ID    string   `json:"id"`
	Size  uint64   `json:"size"`
	Nodes []string `json:"nodes"` // the nodes that have it (this ID under this name)
}

// List returns the images of the nodes' containerd (the CRI namespace the kubelet uses), one
// entry per name and ID, sorted by name. Stopped nodes are skipped.
func List(ctx context.Context, nodes []provision.Node) ([]NodeImage, error) {
	type key struct{ ref, id string }
	var (
		mu   sync.Mutex
		all  = map[key]*NodeImage{}
		errs []error
		wg   sync.WaitGroup
	)
	for _, n := range nodes {
		if st, err := n.State(ctx); err != nil || st != provision.StateRunning {
			continue
		}
		fail := func(err error) {
			mu.Lock()
			defer mu.Unlock()
			errs = append(errs, fmt.Errorf("listing the images of node %s: %w", n.Name(), err))
		}
		safe.GoWait(&wg, fail, func() {
			out, err := provision.Output(ctx, n, "crictl", "images", "-o", "json")
			var v struct {
				Images []struct {
					ID       string   `json:"id"`
					RepoTags []string `json:"repoTags"`
					Size     string   `json:"size"`
				} `json:"images"`
			}
			if err == nil {
				err = json.Unmarshal([]byte(out), &v)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("listing the images of node %s: %w", n.Name(), err))
				return
			}
			for _, img := range v.Images {
				var size uint64
				fmt.Sscan(img.Size, &size)
				for _, ref := range img.RepoTags {
					k := key{ref, img.ID}
					if all[k] == nil {
						all[k] = &NodeImage{Ref: ref, ID: img.ID, Size: size}
					}
					all[k].Nodes = append(all[k].Nodes, n.Name())
				}
			}
		})
	}
	wg.Wait()
	out := make([]NodeImage, 0, len(all))
	for _, v := range all {
		sort.Strings(v.Nodes)
		out = append(out, *v)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Ref != out[j].Ref {
			return out[i].Ref < out[j].Ref
		}
		return out[i].ID < out[j].ID
	})
	return out, errors.Join(errs...)
}
