package cluster

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
	"kubeforge.dev/kubeforge/internal/spec"
)

// Home returns kubeforge's state directory: $KUBEFORGE_HOME, else ~/.kubeforge.
func Home() (string, error) {
	if h := os.Getenv("KUBEFORGE_HOME"); h != "" {
		return h, nil
	}
	u, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("finding the home directory (set KUBEFORGE_HOME): %w", err)
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

// Dirs of one cluster's state.
type Dirs struct{ Root string }

func (d Dirs) PKI() string        { return filepath.Join(d.Root, "pki") }
func (d Dirs) Kubeconfig() string { return filepath.Join(d.Root, "kubeconfig") }
func (d Dirs) SuperAdmin() string { return filepath.Join(d.Root, "super-admin.conf") }
func (d Dirs) RecordFile() string { return filepath.Join(d.Root, "cluster.json") }

func dirsFor(home, name string) Dirs { return Dirs{Root: filepath.Join(home, name)} }

func (d Dirs) save(r Record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(d.RecordFile(), b, 0o600)
}

func (d Dirs) load() (Record, error) {
	var r Record
	b, err := os.ReadFile(d.RecordFile())
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(b, &r)
}

// writeFileAtomic writes kubeforge state: private files in private directories.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	return fsutil.WriteFileAtomic(path, b, mode, 0o700)
}

// APIServerURL is the API server's address as the host reaches it.
func (r Record) APIServerURL() string { return apiServerURL(r.APIServerHost, r.APIServerPort) }

func apiServerURL(host string, port int) string {
	if host == "" {
		host = "127.0.0.1"
	}
	return "https://" + net.JoinHostPort(host, strconv.Itoa(port))
}

// RecordedClusters maps each cluster with a record in the state directory home (Home() when
// empty) to the driver it was made with.
func RecordedClusters(home string) (map[string]string, error) {
	if home == "" {
		h, err := Home()
		if err != nil {
			return nil, err
		}
		home = h
	}
	entries, err := os.ReadDir(home)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing the clusters in %s: %w", home, err)
	}
	out := map[string]string{}
	for _, e := range entries {
		if !e.IsDir() || spec.ValidateName(e.Name()) != nil {
			continue
		}
		rec, err := dirsFor(home, e.Name()).load()
		if err != nil {
			continue // a directory without a (readable) record is not a cluster
		}
		d := rec.Spec.Driver
		if d == "" {
			d = spec.DriverDocker
		}
		out[e.Name()] = d
	}
	return out, nil
}

// LoadRecord reads the record of cluster name from the state directory home (Home() when
// empty); ok is false when there is none.
func LoadRecord(home, name string) (rec Record, ok bool, err error) {
	if home == "" {
		if home, err = Home(); err != nil {
			return rec, false, err
		}
	}
	rec, err = dirsFor(home, name).load()
	if errors.Is(err, os.ErrNotExist) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, fmt.Errorf("reading the record of cluster %s: %w", name, err)
	}
	return rec, true, nil
}

// MachineDir is a directory for the driver's own state of cluster name (a VM cluster's SSH
// keys), removed with the cluster.
func MachineDir(home, name string) (string, error) {
	if home == "" {
		h, err := Home()
		if err != nil {
			return "", err
		}
		home = h
	}
	return filepath.Join(dirsFor(home, name).Root, "machines"), nil
}
