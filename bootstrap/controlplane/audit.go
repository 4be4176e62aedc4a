package controlplane

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"sigs.k8s.io/yaml"

	"kubeforge.dev/kubeforge/contract"
)

// Audit log rotation: the API server keeps AuditLogMaxSizeMB per file and AuditLogMaxBackups
// rotated files, so the log never takes more than about 30 MB of the node's /var.
const (
	AuditLogMaxSizeMB  = "10"
	AuditLogMaxBackups = "2"
)

// auditArgs are the API server's audit flags: the policy, and a JSON-lines log file written in
// the request path (the default blocking mode: a line is in the file when the client gets its
// answer, which `kubeforge trace` relies on to show steps as they happen).
func auditArgs() map[string]string {
	return map[string]string{
		"audit-policy-file":   contract.AuditPolicyPath,
		"audit-log-path":      contract.AuditLogPath,
		"audit-log-format":    "json",
		"audit-log-maxsize":   AuditLogMaxSizeMB,
		"audit-log-maxbackup": AuditLogMaxBackups,
	}
}

// AuditPolicy is the API server's audit policy: only the writes that make up the life of a
// workload (pods and their binding, status and eviction; deployments and replicasets with their
// status and scale; events; nodes' creation, deletion, taints and the node controller's status
// updates), once each (at ResponseComplete), without managedFields. Pods, workloads and events
// are logged with their request and response: the response is the stored object, which carries
// the name the API server generated (pods of a ReplicaSet have none in the request), its
// resourceVersion and its owner. Node updates are logged with the request only (what changed; a
// Node's full status lists every image), and the kubelets' own node status reports (heartbeats
// every 10 s) not at all. Everything else, reads and watches, leases included, is not logged:
// they are most of the API server's requests.
func AuditPolicy() ([]byte, error) {
	writes := []string{"create", "update", "patch", "delete"}
	p := auditv1.Policy{
		TypeMeta:          metav1.TypeMeta{APIVersion: auditv1.SchemeGroupVersion.String(), Kind: "Policy"},
		OmitStages:        []auditv1.Stage{auditv1.StageRequestReceived, auditv1.StageResponseStarted},
		OmitManagedFields: true,
		Rules: []auditv1.PolicyRule{
			{
				Level: auditv1.LevelRequestResponse,
				Verbs: writes,
				Resources: []auditv1.GroupResources{
					{Group: "", Resources: []string{"pods", "pods/binding", "pods/status", "pods/eviction", "events"}},
					{Group: "apps", Resources: []string{"deployments", "deployments/status", "deployments/scale",
						"replicasets", "replicasets/status", "replicasets/scale"}},
					{Group: "events.k8s.io", Resources: []string{"events"}},
				},
			},
			{
				// The kubelets' node status reports (every 10 s, mostly heartbeats).
				Level:      auditv1.LevelNone,
				UserGroups: []string{"system:nodes"},
				Resources:  []auditv1.GroupResources{{Group: "", Resources: []string{"nodes/status"}}},
			},
			{
				Level:     auditv1.LevelRequest,
				Verbs:     []string{"update", "patch"},
				Resources: []auditv1.GroupResources{{Group: "", Resources: []string{"nodes", "nodes/status"}}},
			},
			{
				Level:     auditv1.LevelMetadata,
				Verbs:     []string{"create", "delete"},
				Resources: []auditv1.GroupResources{{Group: "", Resources: []string{"nodes"}}},
			},
			{Level: auditv1.LevelNone},
		},
	}
	b, err := yaml.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("rendering the audit policy: %w", err)
	}
	return b, nil
}
