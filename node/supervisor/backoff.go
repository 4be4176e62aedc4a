package supervisor

import (
	"time"

	"kubeforge.dev/kubeforge/contract/services"
)

// Restart back-off: the first restart waits BackoffInitial, each further one twice the previous
// wait up to BackoffMax; a run that lasted BackoffReset or longer counts as healthy and starts
// the sequence over.
const (
	BackoffInitial = 1 * time.Second
	BackoffMax     = 10 * time.Second
	BackoffReset   = 30 * time.Second
)

// NextBackoff returns how long to wait before restarting a service whose previous wait was prev
// (0 if it has not been restarted yet) and whose last run lasted ran.
func NextBackoff(prev, ran time.Duration) time.Duration {
	if prev <= 0 || ran >= BackoffReset {
		return BackoffInitial
	}
	next := prev * 2
	if next > BackoffMax {
		next = BackoffMax
	}
	return next
}

// ShouldRestart applies a restart policy to how a run ended: success is an exit with status 0.
func ShouldRestart(policy string, oneshot, success bool) bool {
	switch policy {
	case services.RestartNever:
		return false
	case services.RestartOnFailure:
		return !success
	default: // always
		if oneshot {
			return !success
		}
		return true
	}
}
