package controlplane

import (
	"strconv"
	"time"
)

// Bounds of the node controller's grace period when a pod eviction timeout is set: at least two
// of the kubelet's 10 s status/lease renewals minus a little, at most upstream's default.
const (
	minNodeMonitorGrace = 16 * time.Second
	maxNodeMonitorGrace = 50 * time.Second
)

// EvictionArgs returns the component flags that make pods on a node that stopped answering
// evicted (and so recreated elsewhere by their controllers) about d after it stopped: the
// controller-manager marks the node NotReady/Unreachable after its grace period (half of d,
// between 16 s and upstream's 50 s), and the API server gives new pods NoExecute tolerations of
// the rest. d is at most 1h; d of zero returns nil (upstream's 50 s + 300 s).
func EvictionArgs(d time.Duration) map[string]map[string]string {
	if d <= 0 {
		return nil
	}
	grace := min(max(d/2, minNodeMonitorGrace), maxNodeMonitorGrace)
	tol := int64((d - grace + time.Second - 1) / time.Second)
	if tol < 0 {
		tol = 0
	}
	secs := strconv.FormatInt(tol, 10)
	return map[string]map[string]string{
		"kube-controller-manager": {"node-monitor-grace-period": grace.String()},
		"kube-apiserver": {
			"default-not-ready-toleration-seconds":   secs,
			"default-unreachable-toleration-seconds": secs,
		},
	}
}
