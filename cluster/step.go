package cluster

import (
	"context"
	"errors"
	"slices"
	"time"

	"kubeforge.dev/kubeforge/internal/kferr"
)

// step is one named action of a create, resume or node add, over the one state value those
// share (build); undo (optional) reverts what run made, when a later step fails.
type step struct {
	name string // the progress line; empty runs it without one
	run  func(ctx context.Context, b *build) error
	undo func(ctx context.Context, b *build) error
}

// undoTimeout bounds the undos of a failed run: they run even when ctx was cancelled (Ctrl-C).
const undoTimeout = 2 * time.Minute

// runSteps executes steps in order, showing each with its duration. When one fails, the undos of
// the steps that ran (the failed one included: it may have done part of its work) run in
// reverse, unless keep is set.
func (p *Provider) runSteps(ctx context.Context, b *build, steps []step, keep bool) error {
	var done []step
	for _, s := range steps {
		done = append(done, s)
		var err error
		if s.name != "" {
			st := p.log.Step(s.name)
			err = st.Done(s.run(ctx, b))
		} else {
			err = s.run(ctx, b)
		}
		if err == nil {
			continue
		}
		// A step cut short by the deadline (a Docker call, a copy) failed for lack of time.
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && kferr.Code(err) != kferr.ExitTimeout {
			err = kferr.Timeout("retry with a longer --wait, or with --keep-on-failure to look at what was made",
				"timed out waiting for step %q to finish: %v", s.name, err)
		}
		if keep {
			p.log.Warnf("keeping what was created (--keep-on-failure); remove it with `kubeforge delete --name %s`", b.spec.Name)
			return err
		}
		if errors.Is(ctx.Err(), context.Canceled) && slices.ContainsFunc(done, func(s step) bool { return s.undo != nil }) {
			p.log.Warnf("interrupted: undoing what was made (Ctrl-C again to quit at once)")
		}
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
		defer cancel()
		for i := len(done) - 1; i >= 0; i-- {
			if done[i].undo == nil {
				continue
			}
			if uerr := done[i].undo(uctx, b); uerr != nil {
				p.log.Warnf("cleaning up after the failure: %v", uerr)
			}
		}
		return err
	}
	return nil
}
