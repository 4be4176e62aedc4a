package vmimage

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoad(t *testing.T) {
	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "image build --kind vm") {
		t.Errorf("an empty directory: %v", err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, File), []byte(`{"key":"k","kernelVersion":"6.1.0"}`), 0o644)
	im, err := Load(dir)
	if err != nil || im.Disk != filepath.Join(dir, "disk.qcow2") || im.KernelVersion != "6.1.0" {
		t.Errorf("Load = %+v, %v", im, err)
	}
}
