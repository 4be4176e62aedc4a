// Package state is what kubeforge keeps of its clusters on the host, in $KUBEFORGE_HOME: one
// directory per cluster holding its record (cluster.json: how it was made), its PKI, its
// kubeconfigs, the driver's own files, and the lock that serialises the operations that change
// it. Only the orchestrator (cluster) uses it.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"kubeforge.dev/kubeforge/internal/fsutil"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
)

// HomeEnv names the state directory's environment variable.
const HomeEnv = "KUBEFORGE_HOME"

// DefaultHome returns kubeforge's state directory: $KUBEFORGE_HOME, else ~/.kubeforge.
func DefaultHome() (string, error) {
	if h := os.Getenv(HomeEnv); h != "" {
		return h, nil
	}
	u, err := os.UserHomeDir()
	if err != nil {
		return "", kferr.Environment("set KUBEFORGE_HOME to a directory kubeforge may write", "finding the home directory: %v", err)
	}
	return filepath.Join(u, ".kubeforge"), nil
}

// Record is what kubeforge remembers of a cluster it made ($KUBEFORGE_HOME/<name>/cluster.json).
// The driver's labels say what exists; the record says how it was made.
type Record struct {
	Spec          spec.Cluster `json:"spec"`
	Image         string       `json:"image"`
	APIServerPort int          `json:"apiServerPort"`
	// APIServerHost is where the host reaches the API server: empty for 127.0.0.1 (a published
	// port), the control-plane endpoint's address for drivers with direct access (VMs).
	APIServerHost string    `json:"apiServerHost,omitempty"`
	Created       time.Time `json:"created"`
	// Complete is set when create finished; a cluster without it is the remains of a failed
	// start (kept with --keep-on-failure, or interrupted).
	Complete bool `json:"complete"`
	// Images are the images loaded with `kubeforge image load`: nodes added later get them too.
	Images []string `json:"images,omitempty"`
}

// Driver is the driver the cluster was made with (docker for records older than the field).
func (r Record) Driver() string {
	if r.Spec.Driver == "" {
		return spec.DriverDocker
	}
	return r.Spec.Driver
}

// APIServerURL is the API server's address as the host reaches it.
func (r Record) APIServerURL() string { return APIServerURL(r.APIServerHost, r.APIServerPort) }

// APIServerURL is https://host:port, host defaulting to 127.0.0.1.
func APIServerURL(host string, port int) string {
	if host == "" {
		host = "127.0.0.1"
	}
	return "https://" + net.JoinHostPort(host, strconv.Itoa(port))
}

// Home is a state directory.
type Home string

// Dir is the state directory of cluster name. The name must be valid (spec.ValidateName): it
// becomes a path, and a name read back from a label or a directory listing is checked first.
func (h Home) Dir(name string) (Dir, error) {
	if err := spec.ValidateName(name); err != nil {
		return Dir{}, kferr.Usage("%v", err)
	}
	return Dir{Root: filepath.Join(string(h), name), Name: name}, nil
}

// Clusters maps each cluster with a readable record to the driver it was made with, and lists
// apart the directories of clusters whose record is missing or unreadable (a start interrupted
// before it wrote one, a damaged file): they can still be deleted.
func (h Home) Clusters() (recorded map[string]string, unreadable []string, err error) {
	entries, err := os.ReadDir(string(h))
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("listing the clusters in %s: %w", h, err)
	}
	recorded = map[string]string{}
	for _, e := range entries {
		if !e.IsDir() || spec.ValidateName(e.Name()) != nil {
			continue
		}
		d := Dir{Root: filepath.Join(string(h), e.Name()), Name: e.Name()}
		rec, ok, err := d.Load()
		switch {
		case err != nil:
			unreadable = append(unreadable, e.Name())
		case ok:
			recorded[e.Name()] = rec.Driver()
		}
	}
	return recorded, unreadable, nil
}

// Dir is one cluster's state directory.
type Dir struct {
	Root string
	Name string
}

func (d Dir) PKI() string        { return filepath.Join(d.Root, "pki") }
func (d Dir) Kubeconfig() string { return filepath.Join(d.Root, "kubeconfig") }
func (d Dir) SuperAdmin() string { return filepath.Join(d.Root, "super-admin.conf") }
func (d Dir) RecordFile() string { return filepath.Join(d.Root, "cluster.json") }

// Machines is a directory for the driver's own state of the cluster (a VM cluster's SSH keys).
func (d Dir) Machines() string { return filepath.Join(d.Root, "machines") }

// Exists tells whether the directory exists.
func (d Dir) Exists() bool {
	_, err := os.Stat(d.Root)
	return err == nil
}

// Save writes the record (atomically, private).
func (d Dir) Save(r Record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return WriteFile(d.RecordFile(), b)
}

// Load reads the record; ok is false when there is none. A record that cannot be read or parsed
// is an error that says so and how to get rid of it.
func (d Dir) Load() (rec Record, ok bool, err error) {
	b, err := os.ReadFile(d.RecordFile())
	if errors.Is(err, os.ErrNotExist) {
		return rec, false, nil
	}
	if err == nil {
		err = json.Unmarshal(b, &rec)
	}
	if err != nil {
		return rec, false, kferr.Environment(fmt.Sprintf("`kubeforge delete --name %s` removes the cluster without it", d.Name),
			"the record of cluster %q (%s) is damaged: %v", d.Name, d.RecordFile(), err)
	}
	return rec, true, nil
}

// Remove deletes the cluster's state directory, the lock file included: a holder of the lock
// keeps it until it unlocks, and the next one finds the file gone and makes a new one.
func (d Dir) Remove() error { return os.RemoveAll(d.Root) }

// WriteFile writes kubeforge state: private files in private directories, replaced atomically.
func WriteFile(path string, b []byte) error {
	return fsutil.WriteFileAtomic(path, b, 0o600, 0o700)
}
