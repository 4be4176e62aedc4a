// Package testimage makes the test tiers' container image without a registry: a tiny image of
// the host's static busybox, imported into the host's Docker (from where `kubeforge image load`
// copies it into the nodes).
package testimage

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// Busybox is the test image's name.
const Busybox = "kubeforge.local/busybox:e2e"

// BusyboxPath is where Debian's busybox-static puts its static binary.
const BusyboxPath = "/bin/busybox"

// busyboxApplets are the commands the tests run in a pod.
var busyboxApplets = []string{"sh", "sleep", "echo", "nslookup", "cat", "ls", "nc", "hostname"}

// BuildBusybox imports Busybox into the Docker behind cli from BusyboxPath. Its layer is the
// same bytes each time (fixed modification times), so the image ID is stable.
func BuildBusybox(ctx context.Context, cli *client.Client) error {
	bb, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return fmt.Errorf("the test image needs Debian's busybox-static (apt-get install -y busybox-static): %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	write := func(h *tar.Header, body []byte) error {
		h.ModTime = time.Unix(0, 0)
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(body)
		return err
	}
	for _, d := range []string{"bin/", "etc/", "tmp/"} {
		if err := write(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755}, nil); err != nil {
			return err
		}
	}
	if err := write(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bb))}, bb); err != nil {
		return err
	}
	for _, l := range busyboxApplets {
		if err := write(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + l, Linkname: "busybox"}, nil); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	rc, err := cli.ImageImport(ctx, image.ImportSource{Source: &buf, SourceName: "-"}, Busybox,
		image.ImportOptions{Changes: []string{`ENV PATH=/bin`, `CMD ["/bin/sh"]`}})
	if err != nil {
		return fmt.Errorf("importing %s: %w", Busybox, err)
	}
	defer rc.Close()
	out, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("importing %s: %w", Busybox, err)
	}
	if strings.Contains(string(out), `"error"`) {
		return fmt.Errorf("importing %s: %s", Busybox, out)
	}
	return nil
}
