package cluster

import (
	"context"
	"strings"
	"testing"

	"kubeforge.dev/kubeforge/cluster/internal/state"
	"kubeforge.dev/kubeforge/cluster/trace"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
)

// TestTraceRefusedWithoutItsAuditLog: extraArgs that move the API server's audit log (or its
// policy) leave trace nothing to read: refused at once as a usage error naming the flag.
func TestTraceRefusedWithoutItsAuditLog(t *testing.T) {
	for _, flag := range []string{"audit-log-path", "audit-policy-file"} {
		c := &Cluster{name: "kf", hasRec: true, rec: state.Record{Spec: spec.Cluster{
			ExtraArgs: map[string]map[string]string{spec.ComponentAPIServer: {flag: "-"}},
		}}}
		err := c.Trace(context.Background(), TraceOptions{}, func(trace.Step) error { return nil })
		if err == nil || kferr.Code(err) != kferr.ExitUsage || !strings.Contains(err.Error(), "--"+flag) {
			t.Errorf("%s: %v (exit %d)", flag, err, kferr.Code(err))
		}
	}
	c := &Cluster{name: "kf"}
	if err := c.Trace(context.Background(), TraceOptions{Object: "svc/web"}, nil); kferr.Code(err) != kferr.ExitUsage {
		t.Errorf("OBJECT svc/web: %v", err)
	}
}
