package images

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/docker/docker/client"

	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/ui"
	"kubeforge.dev/kubeforge/provision"
)

// fakeDocker answers the two calls Load makes: image inspect and image save.
func fakeDocker(t *testing.T, images map[string]string, archive []byte, saves *int) *client.Client {
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		switch {
		case strings.HasSuffix(p, "/images/get"):
			mu.Lock()
			*saves++
			mu.Unlock()
			w.Write(archive)
		case strings.Contains(p, "/images/") && strings.HasSuffix(p, "/json"):
			name := strings.TrimSuffix(p[strings.Index(p, "/images/")+len("/images/"):], "/json")
			id, ok := images[name]
			if !ok {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusNotFound)
				fmt.Fprintf(w, `{"message":"No such image: %s"}`, name)
				return
			}
			fmt.Fprintf(w, `{"Id":%q,"RepoTags":[%q]}`, id, name)
		default:
			http.Error(w, "unexpected "+p, http.StatusTeapot)
		}
	}))
	t.Cleanup(srv.Close)
	cli, err := client.NewClientWithOpts(client.WithHost("tcp://"+strings.TrimPrefix(srv.URL, "http://")), client.WithVersion("1.41"))
	if err != nil {
		t.Fatal(err)
	}
	return cli
}

// fakeNode is a node whose containerd is a map from name to image ID.
type fakeNode struct {
	name     string
	mu       sync.Mutex
	images   map[string]string
	imported [][]byte
	importID string // the ID an import gives
	failCtr  bool
}

func (n *fakeNode) Name() string           { return n.name }
func (n *fakeNode) Role() string           { return "worker" }
func (n *fakeNode) IP() netip.Addr         { return netip.Addr{} }
func (n *fakeNode) APIServerHostPort() int { return 0 }
func (n *fakeNode) State(context.Context) (provision.State, error) {
	return provision.StateRunning, nil
}
func (n *fakeNode) Start(context.Context) error              { return nil }
func (n *fakeNode) Stop(context.Context) error               { return nil }
func (n *fakeNode) CopyTar(context.Context, io.Reader) error { return nil }
func (n *fakeNode) ReadFile(context.Context, string) ([]byte, error) {
	return nil, errors.New("no")
}
func (n *fakeNode) Logs(context.Context, io.Writer, bool) error { return nil }

func (n *fakeNode) Run(ctx context.Context, cmd provision.Cmd) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	args := strings.Join(cmd.Args, " ")
	switch {
	case strings.HasPrefix(args, "crictl inspecti -o json "):
		ref := cmd.Args[len(cmd.Args)-1]
		id, ok := n.images[ref]
		if !ok {
			return &provision.RunError{Node: n.name, Args: cmd.Args, ExitCode: 1, Output: "no such image " + ref}
		}
		fmt.Fprintf(cmd.Stdout, `{"status":{"id":%q,"repoTags":[%q]},"info":{}}`, id, ref)
		return nil
	case args == strings.Join(ImportCommand, " "):
		b, err := io.ReadAll(cmd.Stdin)
		if err != nil {
			return err
		}
		if n.failCtr {
			return &provision.RunError{Node: n.name, Args: cmd.Args, ExitCode: 1, Output: "ctr: failed to connect"}
		}
		n.imported = append(n.imported, b)
		for ref := range n.pending() {
			n.images[ref] = n.importID
		}
		return nil
	}
	return fmt.Errorf("unexpected command %q", args)
}

// pending: every import in these tests is of the image named in the archive "tag" line.
func (n *fakeNode) pending() map[string]bool {
	last := n.imported[len(n.imported)-1]
	return map[string]bool{strings.TrimPrefix(string(last), "archive of "): true}
}

const idApp = "sha256:1111111111111111111111111111111111111111111111111111111111111111"

func TestLoadSkipsNodesThatHaveTheImage(t *testing.T) {
	saves := 0
	cli := fakeDocker(t, map[string]string{"app:v1": idApp}, []byte("archive of app:v1"), &saves)
	has := &fakeNode{name: "kf-control-plane", images: map[string]string{"app:v1": idApp}, importID: idApp}
	stale := &fakeNode{name: "kf-worker", images: map[string]string{"app:v1": "sha256:old"}, importID: idApp}
	none := &fakeNode{name: "kf-worker2", images: map[string]string{}, importID: idApp}
	var log bytes.Buffer
	err := Load(t.Context(), cli, []provision.Node{has, stale, none}, []string{"app:v1"}, ui.New(&log, true))
	if err != nil {
		t.Fatal(err)
	}
	if len(has.imported) != 0 {
		t.Error("imported into a node that had the image")
	}
	for _, n := range []*fakeNode{stale, none} {
		if len(n.imported) != 1 || string(n.imported[0]) != "archive of app:v1" {
			t.Errorf("node %s got %q", n.name, n.imported)
		}
	}
	if saves != 1 {
		t.Errorf("docker save called %d times, want once", saves)
	}
	if !strings.Contains(log.String(), "kf-worker, kf-worker2") {
		t.Errorf("progress does not name the nodes: %s", log.String())
	}

	// A second load does nothing.
	saves = 0
	if err := Load(t.Context(), cli, []provision.Node{has, stale, none}, []string{"app:v1"}, nil); err != nil {
		t.Fatal(err)
	}
	if saves != 0 || len(stale.imported) != 1 {
		t.Errorf("second load saved %d times, imported again: %d", saves, len(stale.imported))
	}
}

func TestLoadErrors(t *testing.T) {
	saves := 0
	cli := fakeDocker(t, map[string]string{"app:v1": idApp}, []byte("archive of app:v1"), &saves)

	// Not in Docker: names the image and says what to do.
	n := &fakeNode{name: "kf-control-plane", images: map[string]string{}, importID: idApp}
	err := Load(t.Context(), cli, []provision.Node{n}, []string{"missing:v9"}, nil)
	if err == nil || !strings.Contains(err.Error(), "missing:v9") {
		t.Fatalf("err = %v", err)
	}
	var ke *kferr.Error
	if !errors.As(err, &ke) || !strings.Contains(ke.Hint, "docker images") {
		t.Errorf("no hint: %#v", err)
	}

	// An ID instead of a name.
	if err := Load(t.Context(), cli, []provision.Node{n}, []string{"sha256:0123456789abcdef"}, nil); kferr.Code(err) != kferr.ExitUsage {
		t.Errorf("ID: err = %v", err)
	}

	// The import fails: the error names the image and the node.
	bad := &fakeNode{name: "kf-worker", images: map[string]string{}, importID: idApp, failCtr: true}
	err = Load(t.Context(), cli, []provision.Node{bad}, []string{"app:v1"}, nil)
	if err == nil || !strings.Contains(err.Error(), "app:v1") || !strings.Contains(err.Error(), "kf-worker") {
		t.Fatalf("err = %v", err)
	}

	// The import gives another ID than Docker's.
	odd := &fakeNode{name: "kf-worker3", images: map[string]string{}, importID: "sha256:other"}
	err = Load(t.Context(), cli, []provision.Node{odd}, []string{"app:v1"}, nil)
	if err == nil || !strings.Contains(err.Error(), "sha256:other") {
		t.Fatalf("err = %v", err)
	}

	if err := Load(t.Context(), cli, nil, []string{"app:v1"}, nil); err == nil {
		t.Error("no error without nodes")
	}
}
