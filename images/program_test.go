package images

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kubeforge.dev/kubeforge/images/oci"
	"kubeforge.dev/kubeforge/internal/kferr"
)

func TestEnsureProgramImage(t *testing.T) {
	t.Setenv("KUBEFORGE_CACHE", t.TempDir())
	artifacts := t.TempDir()
	a := ProgramImage{Program: "hello", Version: "v1.2.3", Spec: func(bin string) oci.Spec {
		return oci.Program(oci.Registry+"/hello:v1.2.3", "hello", bin, "--flag")
	}}
	bin := ProgramBinary(artifacts, a)
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho hello\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	archive, id, err := EnsureProgramImage(t.Context(), artifacts, a, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(id, "sha256:") || len(id) != len("sha256:")+64 {
		t.Errorf("id %q", id)
	}
	if st, err := os.Stat(archive); err != nil || st.Size() == 0 {
		t.Fatalf("archive %s: %v", archive, err)
	}
	// The same inputs give the same image (ID), from the cache.
	archive2, id2, err := EnsureProgramImage(t.Context(), artifacts, a, nil)
	if err != nil || archive2 != archive || id2 != id {
		t.Errorf("second call: %s %s %v; first: %s %s", archive2, id2, err, archive, id)
	}
	// Another binary is another image.
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho bye\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, id3, err := EnsureProgramImage(t.Context(), artifacts, a, nil)
	if err != nil || id3 == id {
		t.Errorf("changed binary: id %s (was %s), %v", id3, id, err)
	}
	if a.Ref() != "kubeforge.local/hello:v1.2.3" {
		t.Errorf("Ref() = %q", a.Ref())
	}
}

func TestEnsureProgramImageNotASourceTree(t *testing.T) {
	t.Setenv("KUBEFORGE_CACHE", t.TempDir())
	a := ProgramImage{Program: "hello", Version: "v1", Spec: func(bin string) oci.Spec { return oci.Program("kubeforge.local/hello:v1", "hello", bin) }}
	_, _, err := EnsureProgramImage(t.Context(), t.TempDir(), a, nil)
	if err == nil || !strings.Contains(err.Error(), "not a kubeforge source tree") || !strings.Contains(kferr.Hint(err), "make bin/programs/hello-v1") {
		t.Errorf("err = %v; want it to say the binary is missing and how to build it", err)
	}
}
