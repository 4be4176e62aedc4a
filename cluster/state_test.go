package cluster

import (
	"maps"
	"os"
	"path/filepath"
	"testing"

	"kubeforge.dev/kubeforge/internal/spec"
)

func TestRecordedClusters(t *testing.T) {
	home := t.TempDir()
	if got, err := RecordedClusters(filepath.Join(home, "missing")); err != nil || len(got) != 0 {
		t.Fatalf("no state directory: %v %v", got, err)
	}
	for name, driver := range map[string]string{"a": spec.DriverDocker, "b": spec.DriverKVM, "old": ""} {
		if err := dirsFor(home, name).save(Record{Spec: spec.Cluster{Name: name, Driver: driver}}); err != nil {
			t.Fatal(err)
		}
	}
	// Not clusters: a directory without a record, a name kubeforge refuses, a file.
	for _, d := range []string{"norecord", "Not_A_Name"} {
		if err := os.MkdirAll(filepath.Join(home, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(home, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := RecordedClusters(home)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a": spec.DriverDocker, "b": spec.DriverKVM, "old": spec.DriverDocker}
	if !maps.Equal(got, want) {
		t.Errorf("RecordedClusters = %v, want %v", got, want)
	}
}
