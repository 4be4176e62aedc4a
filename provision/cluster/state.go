package cluster

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
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
	Created       time.Time    `json:"created"`
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
