package provision

import (
	"fmt"
	"regexp"
	"strings"

	"kubeforge.dev/kubeforge/internal/spec"
)

// Names read back from a machine's labels (Docker labels, libvirt metadata) are whatever anyone
// with access to the backend wrote there: they become paths ($KUBEFORGE_HOME/<cluster>), Docker
// and libvirt object names and command arguments. Drivers check them with CheckClusterLabel and
// CheckNodeLabel before returning them, and skip the objects that fail.

// MaxNodeNameLen is the longest node name: a DNS label (it is the machine's hostname).
const MaxNodeNameLen = 63

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// CheckClusterLabel returns an error unless cluster is a valid cluster name (spec.ValidateName).
func CheckClusterLabel(cluster string) error {
	if err := spec.ValidateName(cluster); err != nil {
		return fmt.Errorf("cluster label %q: %w", cluster, err)
	}
	return nil
}

// CheckNodeLabel returns an error unless cluster is a valid cluster name and node a name of one
// of its machines: a DNS label of at most MaxNodeNameLen characters that is the cluster's name or
// starts with it and a '-' (<cluster>, <cluster>-mNN, <cluster>-lb).
func CheckNodeLabel(cluster, node string) error {
	if err := CheckClusterLabel(cluster); err != nil {
		return err
	}
	if len(node) == 0 || len(node) > MaxNodeNameLen || !dnsLabel.MatchString(node) {
		return fmt.Errorf("node label %q: not a DNS label of 1-%d lower-case letters, digits and '-'", node, MaxNodeNameLen)
	}
	if node != cluster && !strings.HasPrefix(node, cluster+"-") {
		return fmt.Errorf("node label %q: not a node name of cluster %q (%s or %s-...)", node, cluster, cluster, cluster)
	}
	return nil
}
