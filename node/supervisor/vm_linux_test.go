//go:build linux

package supervisor

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHasBootArg(t *testing.T) {
	cl := "root=/dev/vda rw console=ttyS0 init=/usr/local/bin/kubeforge-init kubeforge.vm=1\n"
	if !hasBootArg(cl, VMBootArg) {
		t.Errorf("%q has %s", cl, VMBootArg)
	}
	if hasBootArg("root=/dev/vda kubeforge.vm=10", VMBootArg) {
		t.Error("kubeforge.vm=10 is not kubeforge.vm=1")
	}
}

func seedTar(t *testing.T, files map[string]string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, content := range files {
		if strings.HasSuffix(name, "/") {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o700}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o600, Size: int64(len(content))}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(content))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestUnpackSeedOnce(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	dev := filepath.Join(dir, "vdb")
	// The seed disk is the archive followed by zeros up to the volume's size, and stale bytes.
	disk := append(seedTar(t, map[string]string{"root/.ssh/": "", "root/.ssh/authorized_keys": "key\n", "etc/kubeforge/vm-network.json": "{}"}), make([]byte, 4096)...)
	disk = append(disk, []byte("stale data after the archive")...)
	if err := os.WriteFile(dev, disk, 0o600); err != nil {
		t.Fatal(err)
	}
	var logs []string
	logf := func(f string, a ...any) { logs = append(logs, f) }
	if err := unpackSeed(dev, root, logf); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "root/.ssh/authorized_keys"))
	if err != nil || string(b) != "key\n" {
		t.Fatalf("authorized_keys: %q %v", b, err)
	}
	if st, err := os.Stat(filepath.Join(root, "root/.ssh")); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("root/.ssh mode: %v %v", st.Mode(), err)
	}
	// Changed since the first boot: a second boot with the same seed keeps the change.
	if err := os.WriteFile(filepath.Join(root, "etc/kubeforge/vm-network.json"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unpackSeed(dev, root, logf); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/kubeforge/vm-network.json")); string(b) != "changed" {
		t.Errorf("the same seed was unpacked again: %q", b)
	}
	// No seed disk: nothing to do.
	if err := unpackSeed(filepath.Join(dir, "missing"), root, logf); err != nil {
		t.Errorf("missing seed: %v", err)
	}
}

func TestExtractTarStaysInRoot(t *testing.T) {
	root := t.TempDir()
	if _, err := extractTar(bytes.NewReader(seedTar(t, map[string]string{"../../escape": "x"})), root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "escape")); err != nil {
		t.Errorf("../../escape should land at root/escape: %v", err)
	}
}
