package contract

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
)

// maxMachineName is the longest machine name (a DNS label, as node names are).
const maxMachineName = 63

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// ServiceLBName is the load-balancer machine of Service namespace/name (uid) in cluster:
// <cluster>-svc-<namespace>-<name> when that is a DNS label of at most 63 characters, else
// <cluster>-svc-<12 hex digits of a hash of the namespace, name and uid>. The host (kubeforge
// service --url) and the cloud provider both derive it.
func ServiceLBName(cluster, namespace, name, uid string) string {
	n := cluster + "-svc-" + namespace + "-" + name
	if len(n) <= maxMachineName && dnsLabel.MatchString(n) {
		return n
	}
	h := sha256.Sum256([]byte(namespace + "/" + name + "/" + uid))
	return cluster + "-svc-" + hex.EncodeToString(h[:6])
}
