// Package apiretry retries a request to an API server that is still starting: one that does not
// serve yet, answers 5xx or 429, or has not made the namespace the request is for.
package apiretry

import (
	"context"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Final reports whether err is one a starting API server will keep giving: the request itself is
// wrong (invalid, malformed, a method or a media type the server has not). One Invalid is not:
// a Service's ClusterIP refused because the server's Service IP allocator has not yet read the
// default ServiceCIDR ("failed to allocate IP 10.96.0.10: the provided network does not match the
// current range"), seen once in a few hundred starts.
func Final(err error) bool {
	if apierrors.IsInvalid(err) && strings.Contains(err.Error(), serviceCIDRNotSynced) {
		return false
	}
	return apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || apierrors.IsMethodNotSupported(err) ||
		apierrors.IsNotAcceptable(err) || apierrors.IsUnsupportedMediaType(err) || apierrors.IsRequestEntityTooLargeError(err)
}

// serviceCIDRNotSynced is the API server's IP allocator's ErrMismatchedNetwork.
const serviceCIDRNotSynced = "the provided network does not match the current range"

// Until runs do at once and then every interval until it returns nil, a Final error (returned
// as is) or ctx ends; then it returns ctx's error with do's last one (the last that ctx's end did
// not cut short, which says why the server refused).
func Until(ctx context.Context, interval time.Duration, do func(context.Context) error) error {
	var last error
	err := wait.PollUntilContextCancel(ctx, interval, true, func(ctx context.Context) (bool, error) {
		e := do(ctx)
		if e != nil && ctx.Err() != nil && last != nil {
			return false, nil
		}
		last = e
		if last != nil && Final(last) {
			return false, last
		}
		return last == nil, nil
	})
	switch {
	case err == nil:
		return nil
	case last != nil && Final(last):
		return last
	case last == nil:
		return err
	}
	return fmt.Errorf("%w (last: %w)", err, last)
}
