package supervisor

import (
	"os"
	"path/filepath"
	"testing"
)

// TestFingerprintContent: archives of the same names and sizes but other contents (a node image
// of another release over a kept /var) have another fingerprint; the same files the same one.
func TestFingerprintContent(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	glob := filepath.Join(dir, "*.tar")
	write("kube-components.tar", "tag of release A")
	write("pause.tar", "pause")
	a, err := Fingerprint(glob)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := Fingerprint(glob); again != a {
		t.Errorf("the same files: %s, then %s", a, again)
	}
	write("kube-components.tar", "tag of release B")
	b, err := Fingerprint(glob)
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Errorf("an archive of the same name and size with other content keeps fingerprint %s", a)
	}
	write("other.txt", "not matched")
	if c, _ := Fingerprint(glob); c != b {
		t.Errorf("a file the glob does not match changed the fingerprint")
	}
	if e, err := Fingerprint(filepath.Join(dir, "none", "*.tar")); err != nil || e == "" {
		t.Errorf("no match: %q, %v; want the empty set's fingerprint", e, err)
	}
}
