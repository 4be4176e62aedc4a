package contract

import (
	"strings"
	"testing"
)

func TestServiceLBName(t *testing.T) {
	if n := ServiceLBName("kf", "default", "web", "u1"); n != "kf-svc-default-web" {
		t.Errorf("ServiceLBName = %q", n)
	}
	long := strings.Repeat("a", 60)
	a, b := ServiceLBName("kf", "default", long, "u1"), ServiceLBName("kf", "default", long, "u2")
	if len(a) > 63 || !strings.HasPrefix(a, "kf-svc-") || a == b {
		t.Errorf("long names: %q, %q: want distinct DNS labels of <= 63 characters", a, b)
	}
}
