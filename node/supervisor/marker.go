package supervisor

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"kubeforge.dev/kubeforge/contract/services"
	"kubeforge.dev/kubeforge/internal/fsutil"
)

// Fingerprint hashes the paths and contents of the regular files matching glob (sorted), so that
// a done marker written for one set of files does not count for another: a node made anew from
// another node image over its kept /var (an upgrade) imports the new image archives, which can
// have the same names and sizes as the old ones (kube-components.tar of two patch or minor releases
// can differ only in a tag of the same length). The archives are small (the components' image holds
// no binary): hashing them costs milliseconds. No match is a valid (empty) set.
func Fingerprint(glob string) (string, error) {
	if glob == "" {
		return "", nil
	}
	matches, err := filepath.Glob(glob)
	if err != nil {
		return "", fmt.Errorf("doneKey %q: %w", glob, err)
	}
	sort.Strings(matches)
	h := sha256.New()
	for _, m := range matches {
		fi, err := os.Stat(m)
		if err != nil {
			return "", fmt.Errorf("doneKey: %w", err)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		fmt.Fprintf(h, "%s\x00%d\x00", m, fi.Size())
		if err := hashFile(h, m); err != nil {
			return "", fmt.Errorf("doneKey: %w", err)
		}
		h.Write([]byte("\n"))
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

func hashFile(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// markerDone tells whether a oneshot service's done marker is present and, when the service has a
// DoneKey, records the same fingerprint. It also returns the current fingerprint, to be written
// after a successful run.
func markerDone(s *services.Service) (done bool, fingerprint string, err error) {
	if s.DoneMarker == "" {
		return false, "", nil
	}
	fingerprint, err = Fingerprint(s.DoneKey)
	if err != nil {
		return false, "", err
	}
	f, err := os.Open(s.DoneMarker)
	if errors.Is(err, fs.ErrNotExist) {
		return false, fingerprint, nil
	}
	if err != nil {
		return false, fingerprint, fmt.Errorf("reading done marker: %w", err)
	}
	defer f.Close()
	if s.DoneKey == "" {
		return true, fingerprint, nil
	}
	line, _ := bufio.NewReader(f).ReadString('\n')
	return strings.TrimSpace(line) == fingerprint, fingerprint, nil
}

// writeMarker records a successful run of a oneshot service.
func writeMarker(s *services.Service, fingerprint string) error {
	if s.DoneMarker == "" {
		return nil
	}
	content := fingerprint + "\n"
	if s.DoneKey != "" {
		content += "# files matching " + s.DoneKey + " processed by service " + s.Name + "\n"
	}
	if err := fsutil.WriteFileAtomic(s.DoneMarker, []byte(content), 0o644, 0o755); err != nil {
		return fmt.Errorf("writing done marker: %w", err)
	}
	return nil
}
