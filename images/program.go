package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"kubeforge.dev/kubeforge/images/oci"
	"kubeforge.dev/kubeforge/images/rootfs"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/safe"
	"kubeforge.dev/kubeforge/internal/ui"
	"kubeforge.dev/kubeforge/provision"
)

// ProgramImage is the image of one Go program built from its module (an add-on's pod image, the
// local registry's container image), made here with no registry involved, as the node image's
// preloaded images are.
type ProgramImage struct {
	// Program names the binary: bin/programs/<Program>-<Version> under the artifacts directory,
	// built by `make bin/programs/<Program>-<Version>` (images/images.mk).
	Program, Version string
	// Estimate says how long a cold build of the program takes, for the progress line.
	Estimate string
	// Spec makes the image's description from the binary's path.
	Spec func(binary string) oci.Spec
}

// Ref is the image's name, as the add-on's pods refer to it.
func (a ProgramImage) Ref() string { return a.Spec("").Ref }

// ProgramBinary is where an add-on program's binary lives under artifacts.
func ProgramBinary(artifacts string, a ProgramImage) string {
	return filepath.Join(artifacts, "bin", "programs", a.Program+"-"+a.Version)
}

// EnsureProgramImage builds the add-on's program when it is missing (once, with make, in the
// source tree artifacts is) and its image archive when it is not cached ($KUBEFORGE_CACHE/programs),
// and returns the archive's path and the image's ID (the digest of its config, as containerd
// names it).
func EnsureProgramImage(ctx context.Context, artifacts string, a ProgramImage, log *ui.Logger) (archive, id string, err error) {
	bin := ProgramBinary(artifacts, a)
	rel, err := filepath.Rel(artifacts, bin)
	if err != nil {
		return "", "", err
	}
	if err := ensureMade(ctx, artifacts, bin, rel, fmt.Sprintf("%s %s", a.Program, a.Version), a.Estimate, log); err != nil {
		return "", "", err
	}
	spec := a.Spec(bin)
	cacheDir := filepath.Join(rootfs.CacheDir(), "programs")
	key, err := specKey(rootfs.CacheDir(), spec)
	if err != nil {
		return "", "", fmt.Errorf("image %s: %w", spec.Ref, err)
	}
	archive = filepath.Join(cacheDir, a.Program+"-"+key[:24]+".tar")
	if b, err := os.ReadFile(archive + ".id"); err == nil {
		if _, err := os.Stat(archive); err == nil {
			return archive, strings.TrimSpace(string(b)), nil
		}
	}
	img, err := oci.Image(spec)
	if err != nil {
		return "", "", fmt.Errorf("image %s: %w", spec.Ref, err)
	}
	digest, err := img.ConfigName()
	if err != nil {
		return "", "", fmt.Errorf("image %s: %w", spec.Ref, err)
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", "", kferr.Environment("set KUBEFORGE_CACHE to a writable directory", "making the add-on image cache: %v", err)
	}
	tmp, err := os.CreateTemp(cacheDir, ".tmp-")
	if err != nil {
		return "", "", err
	}
	defer os.Remove(tmp.Name())
	werr := oci.Write(tmp, spec)
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return "", "", fmt.Errorf("writing image %s: %w", spec.Ref, werr)
	}
	if err := os.Rename(tmp.Name(), archive); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(archive+".id", []byte(digest.String()+"\n"), 0o644); err != nil {
		return "", "", err
	}
	return archive, digest.String(), nil
}

// ImportArchive imports a docker-archive tarball holding image ref (ID id) into every node of
// nodes that does not have it yet, in parallel.
func ImportArchive(ctx context.Context, nodes []provision.Node, ref, id, archive string) error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		safe.GoWait(&wg, func(err error) { errs[i] = err }, func() {
			if got, _ := NodeImageID(ctx, n, ref); got == id {
				return
			}
			errs[i] = importInto(ctx, n, ref, id, archive)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ensureMade runs `make <target>` in the source tree artifacts unless bin exists.
func ensureMade(ctx context.Context, artifacts, bin, target, what, estimate string, log *ui.Logger) error {
	if _, err := os.Stat(bin); err == nil {
		return nil
	}
	return runMake(ctx, artifacts, []string{target}, what, estimate, log)
}

// BundledProgramArchive is where `kubeforge bundle load` puts the archive of program image
// program-version ($KUBEFORGE_CACHE/programs/<program>-<version>-bundled.tar, its image ID in
// the same name + ".id"): found by name and version alone, for a machine that has no binary of
// the program to hash (no source tree, no Go toolchain).
func BundledProgramArchive(program, version string) string {
	return filepath.Join(rootfs.CacheDir(), "programs", program+"-"+version+"-bundled.tar")
}

// BundledProgramImage is the archive and image ID a bundle loaded for a, if any.
func BundledProgramImage(a ProgramImage) (archive, id string, ok bool) {
	archive = BundledProgramArchive(a.Program, a.Version)
	b, err := os.ReadFile(archive + ".id")
	if err != nil {
		return "", "", false
	}
	if _, err := os.Stat(archive); err != nil {
		return "", "", false
	}
	return archive, strings.TrimSpace(string(b)), true
}

// SaveBundledProgram writes a bundle's program image archive (image ID id) where
// BundledProgramImage finds it, by temporary file and rename; remove undoes it.
func SaveBundledProgram(program, version, id string, content io.Reader) (remove func(), err error) {
	archive := BundledProgramArchive(program, version)
	if err := os.MkdirAll(filepath.Dir(archive), 0o755); err != nil {
		return nil, kferr.Environment("set KUBEFORGE_CACHE to a writable directory", "making the program image cache: %v", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(archive), ".tmp-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	_, werr := io.Copy(tmp, content)
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, fmt.Errorf("writing %s: %w", archive, werr)
	}
	if err := os.Rename(tmp.Name(), archive); err != nil {
		return nil, err
	}
	if err := os.WriteFile(archive+".id", []byte(id+"\n"), 0o644); err != nil {
		os.Remove(archive)
		return nil, err
	}
	return func() { os.Remove(archive + ".id"); os.Remove(archive) }, nil
}
