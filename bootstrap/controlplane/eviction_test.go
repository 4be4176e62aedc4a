package controlplane

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestEvictionArgs(t *testing.T) {
	if EvictionArgs(0) != nil {
		t.Errorf("zero timeout should keep upstream's defaults")
	}
	for _, tc := range []struct {
		d          time.Duration
		grace, tol string
	}{
		{20 * time.Second, "16s", "4"},
		{30 * time.Second, "16s", "14"},
		{60 * time.Second, "30s", "30"},
		{10 * time.Minute, "50s", "550"},
	} {
		got := EvictionArgs(tc.d)
		want := map[string]map[string]string{
			"kube-controller-manager": {"node-monitor-grace-period": tc.grace},
			"kube-apiserver":          {"default-not-ready-toleration-seconds": tc.tol, "default-unreachable-toleration-seconds": tc.tol},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("EvictionArgs(%s) = %v, want %v", tc.d, got, want)
		}
	}
}

func TestEvictionArgsInManifests(t *testing.T) {
	c := testConfig()
	c.ExtraArgs = EvictionArgs(30 * time.Second)
	ms, err := Manifests(c)
	if err != nil {
		t.Fatal(err)
	}
	if s := string(ms["kube-controller-manager.yaml"]); !strings.Contains(s, "--node-monitor-grace-period=16s") {
		t.Errorf("controller-manager lacks the grace period:\n%s", s)
	}
	if s := string(ms["kube-apiserver.yaml"]); !strings.Contains(s, "--default-unreachable-toleration-seconds=14") {
		t.Errorf("apiserver lacks the toleration:\n%s", s)
	}
}
