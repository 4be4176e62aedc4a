package controlplane

import (
	"testing"

	"k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"kubeforge.dev/kubeforge/contract"
)

// TestAuditPolicy loads the policy with the API server's own reader and asks its evaluator what
// level each kind of request gets: the writes `kubeforge trace` shows are logged with their
// stored object, reads and the frequent writes (leases) are not logged at all.
func TestAuditPolicy(t *testing.T) {
	b, err := AuditPolicy()
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.LoadPolicyFromBytes(b)
	if err != nil {
		t.Fatalf("the API server refuses the policy: %v\n%s", err, b)
	}
	if !p.OmitManagedFields {
		t.Error("managedFields are logged")
	}
	eval := policy.NewPolicyRuleEvaluator(p)
	for _, tc := range []struct {
		verb, group, resource, sub string
		want                       audit.Level
	}{
		{"create", "apps", "deployments", "", audit.LevelRequestResponse},
		{"create", "apps", "replicasets", "", audit.LevelRequestResponse},
		{"update", "apps", "replicasets", "status", audit.LevelRequestResponse},
		{"create", "", "pods", "", audit.LevelRequestResponse},
		{"create", "", "pods", "binding", audit.LevelRequestResponse},
		{"patch", "", "pods", "status", audit.LevelRequestResponse},
		{"delete", "", "pods", "", audit.LevelRequestResponse},
		{"create", "", "events", "", audit.LevelRequestResponse},
		{"patch", "", "nodes", "status", audit.LevelRequest},
		{"update", "", "nodes", "", audit.LevelRequest},
		{"create", "", "nodes", "", audit.LevelMetadata},
		{"get", "", "pods", "", audit.LevelNone},
		{"list", "", "pods", "", audit.LevelNone},
		{"watch", "apps", "deployments", "", audit.LevelNone},
		{"update", "coordination.k8s.io", "leases", "", audit.LevelNone},
		{"create", "", "configmaps", "", audit.LevelNone},
		{"create", "", "secrets", "", audit.LevelNone},
	} {
		attrs := authorizer.AttributesRecord{
			User: &user.DefaultInfo{Name: "system:admin"}, Verb: tc.verb, APIGroup: tc.group,
			Resource: tc.resource, Subresource: tc.sub, Namespace: "default", ResourceRequest: true,
		}
		got := eval.EvaluatePolicyRule(attrs)
		if tc.resource == "nodes" && tc.sub == "status" {
			// A kubelet's own report is a heartbeat: not logged.
			kubelet := attrs
			kubelet.User = &user.DefaultInfo{Name: "system:node:n1", Groups: []string{"system:nodes"}}
			if l := eval.EvaluatePolicyRule(kubelet).Level; l != audit.LevelNone {
				t.Errorf("a kubelet's node status: level %s, want None", l)
			}
		}
		if got.Level != tc.want {
			t.Errorf("%s %s/%s %s: level %s, want %s", tc.verb, tc.group, tc.resource, tc.sub, got.Level, tc.want)
		}
		if tc.want != audit.LevelNone {
			for _, s := range []audit.Stage{audit.StageRequestReceived, audit.StageResponseStarted} {
				found := false
				for _, o := range got.OmitStages {
					found = found || o == s
				}
				if !found {
					t.Errorf("%s %s: stage %s is logged", tc.verb, tc.resource, s)
				}
			}
		}
	}
}

func TestAPIServerAudit(t *testing.T) {
	f := flags(t, pods(t, testConfig())["kube-apiserver"])
	for k, want := range map[string]string{
		"audit-policy-file":   contract.AuditPolicyPath,
		"audit-log-path":      contract.AuditLogPath,
		"audit-log-format":    "json",
		"audit-log-maxsize":   AuditLogMaxSizeMB,
		"audit-log-maxbackup": AuditLogMaxBackups,
	} {
		if f[k] != want {
			t.Errorf("--%s=%q, want %q", k, f[k], want)
		}
	}
}
