package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"kubeforge.dev/kubeforge/cluster/trace"
	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/safe"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/provision"
)

// TraceOptions select what `kubeforge trace` shows.
type TraceOptions struct {
	// Namespace: only the steps of this namespace (and of cluster-scoped objects); "" for all.
	Namespace string
	// Object: one object and what is made from it: NAME or KIND/NAME (deployment/web); "" for all.
	Object string
	// Following, when set, is called once the audit log of every running control plane is
	// followed: every write the API servers answer from then on is a step.
	Following func(controlPlanes []string)
	// Why adds the scheduler's reasons: a step of verb trace.VerbSchedule per scheduling
	// attempt, read from the scheduler's own log, whose verbosity is raised to
	// trace.SchedulerVerbosity while the trace runs (and set back to the cluster's when it ends).
	Why bool
}

// maxAuditLine bounds one audit event (a pod with its request and response is a few KiB; a
// Node's full status with its images tens of KiB).
const maxAuditLine = 8 << 20

// Trace follows the API server's audit log on every running control plane (through the driver's
// exec: `tail -F` in the node, so the host needs no route to it) and calls step for each write
// it logs that the options select, as the API servers answer them, until ctx ends or step fails.
func (c *Cluster) Trace(ctx context.Context, o TraceOptions, step func(trace.Step) error) error {
	filter, err := trace.NewFilter(o.Namespace, o.Object)
	if err != nil {
		return kferr.Usage("%v", err)
	}
	if c.hasRec {
		for _, flag := range []string{"audit-policy-file", "audit-log-path"} {
			if v, ok := c.rec.Spec.ExtraArgs[spec.ComponentAPIServer][flag]; ok {
				return kferr.Usage("cluster %q sets the API server's --%s=%s (extraArgs): trace reads the audit log kubeforge configures, at %s; make the cluster without that extra arg",
					c.name, flag, v, contract.AuditLogPath)
			}
		}
	}
	nodes, err := c.machines(ctx)
	if err != nil {
		return err
	}
	type followed struct {
		n      provision.Node
		offset int64
	}
	var cps []followed
	var names []string
	for _, n := range nodes {
		if n.Role() != string(spec.RoleControlPlane) {
			continue
		}
		if st, err := n.State(ctx); err != nil || st != provision.StateRunning {
			continue
		}
		offset, err := auditLogEnd(ctx, c.name, n)
		if err != nil {
			return err
		}
		cps = append(cps, followed{n, offset})
		names = append(names, n.Name())
	}
	if len(cps) == 0 {
		return kferr.Environment(fmt.Sprintf("`kubeforge start --name %s`", c.name),
			"cluster %q has no running control plane to trace", c.name)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, ctx := errgroup.WithContext(ctx)
	steps := make(chan trace.Step)
	for _, cp := range cps {
		pr, pw := io.Pipe()
		safe.Go(g, func() error {
			// tail -F follows the log by name across the API server's rotations; -c +N starts
			// right after what was there when we looked, so nothing written since is missed.
			err := cp.n.Run(ctx, provision.Cmd{
				Args:   []string{"tail", "-F", "-c", "+" + strconv.FormatInt(cp.offset+1, 10), contract.AuditLogPath},
				Stdout: pw,
			})
			pw.CloseWithError(err)
			if ctx.Err() != nil {
				return nil
			}
			if err == nil {
				err = errors.New("tail ended")
			}
			return fmt.Errorf("following the audit log of %s: %w", cp.n.Name(), err)
		})
		safe.Go(g, func() error {
			defer pr.Close()
			sc := bufio.NewScanner(pr)
			sc.Buffer(make([]byte, 0, 64<<10), maxAuditLine)
			for sc.Scan() {
				ev, err := trace.ParseAudit(sc.Bytes())
				if err != nil {
					continue // a line cut short by a rotation: no step to show
				}
				s, ok := trace.FromAudit(ev)
				if !ok {
					continue
				}
				select {
				case steps <- s:
				case <-ctx.Done():
					return nil
				}
			}
			if err := sc.Err(); err != nil && ctx.Err() == nil {
				return fmt.Errorf("reading the audit log of %s: %w", cp.n.Name(), err)
			}
			return nil
		})
	}
	if o.Why {
		level := "0" // klog's default: kubeforge sets none
		if c.hasRec {
			if v, ok := c.rec.Spec.ExtraArgs[spec.ComponentScheduler]["v"]; ok {
				level = v
			}
		}
		var following sync.WaitGroup
		for _, cp := range cps {
			following.Add(1)
			safe.Go(g, func() error { return c.followScheduler(ctx, cp.n, level, steps, following.Done) })
		}
		following.Wait()
	}
	if o.Following != nil {
		o.Following(names)
	}
	safe.Go(g, func() error {
		for {
			select {
			case s := <-steps:
				if !filter.Keep(s) {
					continue
				}
				if err := step(s); err != nil {
					return err
				}
			case <-ctx.Done():
				return nil
			}
		}
	})
	return g.Wait()
}

// TraceAgain is Trace that outlives the cluster's control plane: when Trace ends (the cluster
// was stopped, its control plane's machine went down) or cannot begin (no control plane runs),
// waiting is called with why and Trace is tried again every interval, until ctx ends; the
// steps written while no control plane ran are not in any audit log followed. A usage error (a
// bad OBJECT, an API server whose audit log was moved) or an error of step ends it.
func (c *Cluster) TraceAgain(ctx context.Context, o TraceOptions, interval time.Duration, waiting func(error), step func(trace.Step) error) error {
	var stepErr error
	for {
		err := c.Trace(ctx, o, func(s trace.Step) error {
			if err := step(s); err != nil {
				stepErr = err
				return err
			}
			return nil
		})
		switch {
		case ctx.Err() != nil:
			return nil
		case stepErr != nil:
			return stepErr
		case kferr.Code(err) == kferr.ExitUsage:
			return err
		}
		if err == nil {
			err = errors.New("the audit log's stream ended")
		}
		waiting(err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// auditLogEnd returns the size of n's audit log: where following it starts.
func auditLogEnd(ctx context.Context, cluster string, n provision.Node) (int64, error) {
	out, err := provision.Output(ctx, n, "sh", "-c",
		`test -f `+contract.AuditPolicyPath+` || exit 3; stat -c %s `+contract.AuditLogPath+` 2>/dev/null || echo 0`)
	if err != nil {
		var re *provision.RunError
		if errors.As(err, &re) && re.ExitCode == 3 {
			return 0, kferr.Environment(fmt.Sprintf("make the cluster again with this kubeforge: `kubeforge delete --name %s && kubeforge start --name %s`", cluster, cluster),
				"the API server of %s writes no audit log, which trace reads: cluster %q was made by an older kubeforge", n.Name(), cluster)
		}
		return 0, fmt.Errorf("looking at the audit log of %s: %w", n.Name(), err)
	}
	size, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("the size of the audit log of %s: %q: %w", n.Name(), out, err)
	}
	return size, nil
}

// schedulerRaise is how often followScheduler sets the scheduler's verbosity again: another
// trace ending may have set it back, a restarted scheduler starts at its flag's.
const schedulerRaise = 15 * time.Second

// followScheduler raises the verbosity of the scheduler of control plane n to
// trace.SchedulerVerbosity, follows its log (crictl logs -f, through the driver's exec; again
// when the scheduler restarts) and sends a step per scheduling attempt, until ctx ends; then it
// sets the verbosity back to level. ready is called once the log is followed from before the
// raise (or followScheduler gave up). Only the leader schedules: the other control planes' logs
// have no attempts.
func (c *Cluster) followScheduler(ctx context.Context, n provision.Node, level string, steps chan<- trace.Step, ready func()) error {
	var readyOnce sync.Once
	defer readyOnce.Do(ready)
	setV := func(ctx context.Context, v string) error {
		_, err := provision.Output(ctx, n, contract.NodeBinary, "verbosity", spec.ComponentScheduler, v)
		return err
	}
	raised := false
	defer func() {
		if !raised {
			return
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
		defer cancel()
		if err := setV(rctx, level); err != nil {
			c.p.log.Warnf("the scheduler of %s may still log at verbosity %s (until it restarts): setting it back to %s: %v",
				n.Name(), trace.SchedulerVerbosity, level, err)
		}
	}()
	parser := trace.NewSchedulerLog(time.Now().UTC().Year())
	for failures := 0; ctx.Err() == nil; {
		// The log from a little before the raise (a VM's clock may lag the host's): no attempt
		// made once the trace says it follows is missed.
		since := time.Now().Add(-2 * time.Second)
		id, err := latestContainer(ctx, n, spec.ComponentScheduler)
		if err == nil && id == "" {
			err = errors.New("no kube-scheduler container")
		}
		if err == nil {
			if err = setV(ctx, trace.SchedulerVerbosity); err == nil {
				raised = true
			}
		}
		if err != nil && strings.Contains(err.Error(), "unknown component") {
			return kferr.Environment("make the cluster again with this kubeforge (kubeforge delete, then start), or trace without --why",
				"trace --why: node %s was made by an older kubeforge, whose node binary cannot change the scheduler's verbosity", n.Name())
		}
		if err != nil {
			if failures++; failures == 15 { // 30 s: the scheduler (re)starting takes less
				c.p.log.Warnf("trace --why: cannot raise the verbosity of the scheduler of %s yet (%v); still trying", n.Name(), err)
				readyOnce.Do(ready)
			}
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
			}
			continue
		}
		failures = 0
		fctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		pr, pw := io.Pipe()
		wg.Add(2)
		go func() {
			defer wg.Done()
			// klog writes to stderr: crictl logs prints the container's stderr on its own.
			err := n.Run(fctx, provision.Cmd{Args: []string{"crictl", "logs", "-f",
				"--since", fmt.Sprintf("%d.%09d", since.Unix(), since.Nanosecond()), id}, Stdout: pw, Stderr: pw})
			pw.CloseWithError(err)
		}()
		go func() {
			defer wg.Done()
			t := time.NewTicker(schedulerRaise)
			defer t.Stop()
			for {
				select {
				case <-fctx.Done():
					return
				case <-t.C:
					_ = setV(fctx, trace.SchedulerVerbosity)
				}
			}
		}()
		readyOnce.Do(ready)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 0, 64<<10), maxAuditLine)
		for sc.Scan() {
			s, ok := parser.Line(sc.Text())
			if !ok {
				continue
			}
			select {
			case steps <- s:
			case <-ctx.Done():
			}
		}
		stop()
		pr.Close()
		wg.Wait() // no raise after the restore
		// The container ended (a restart): look for its successor, unless the trace ended.
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return nil
}
