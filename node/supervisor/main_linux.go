//go:build linux

package supervisor

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/contract/services"
)

// Main is kubeforge-init's default command: node setup (as PID 1), then the services of the
// services file until SIGTERM or SIGINT. It returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("kubeforge-init", flag.ContinueOnError)
	fl.SetOutput(stderr)
	configPath := fl.String("config", contract.ServicesPath, "services file")
	statusPath := fl.String("status-file", contract.StatusPath, "status file to maintain")
	logDir := fl.String("log-dir", contract.LogDir, "directory of the services' log files")
	setup := fl.String("setup", "auto", "node setup: auto (only as PID 1), true or false")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	if fl.NArg() > 0 {
		fmt.Fprintf(stderr, "kubeforge-init: unexpected argument %q\n", fl.Arg(0))
		return 2
	}
	doSetup := false
	switch *setup {
	case "auto":
		doSetup = os.Getpid() == 1
	case "true":
		doSetup = true
	case "false":
	default:
		fmt.Fprintf(stderr, "kubeforge-init: -setup must be auto, true or false\n")
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGTERM, unix.SIGINT)
	defer stop()
	// A closed stdout (the container runtime's log pipe) must not kill PID 1 with SIGPIPE:
	// handle the signal (not ignore it, which the services would inherit) so writes just fail.
	signal.Notify(make(chan os.Signal, 1), unix.SIGPIPE)
	con := &console{w: stdout}
	if lf, err := openLogFile(filepath.Join(*logDir, contract.SupervisorLogName+".log"), MaxLogSize); err == nil {
		con.own = lf
	}

	// Reap from the start: processes left by "docker exec" are reparented to PID 1 too.
	reap := newReaper()
	reapCtx, stopReaper := context.WithCancel(context.Background())
	reaperDone := make(chan struct{})
	go func() { defer close(reaperDone); reap.run(reapCtx) }()
	defer func() { stopReaper(); <-reaperDone }()
	if os.Getpid() != 1 {
		_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	}
	started := time.Now()
	phase := func(p string, err error) {
		st := &Status{Phase: p, PID: os.Getpid(), StartedAt: started, UpdatedAt: time.Now(), Services: map[string]ServiceStatus{}}
		if err != nil {
			st.Error = err.Error()
		}
		if werr := WriteStatus(*statusPath, st); werr != nil && doSetup {
			con.logf("writing status: %v", werr)
		}
	}

	// A VM node's init: boot (file systems, seed, network), SSH server, and a power-off at the end
	// instead of an exit (the kernel panics when PID 1 exits).
	vm := doSetup && os.Getpid() == 1 && IsVM()
	if vm {
		phase(PhaseSetup, nil)
		con.logf("VM boot")
		if err := bootVM(reap, con.logf); err != nil {
			con.logf("%v", err)
			phase(PhaseFailed, err)
			// Keep the SSH server up if it can start, so that the failure can be looked at.
		}
		if lf, err := openLogFile(filepath.Join(*logDir, contract.SupervisorLogName+".log"), MaxLogSize); err == nil && con.own == nil {
			con.own = lf
		}
		sshCtx, stopSSHD := context.WithCancel(context.Background())
		sshdDone := make(chan struct{})
		go func() { defer close(sshdDone); runSSHD(sshCtx, reap, *logDir, con.logf) }()
		defer func() {
			stopSSHD()
			<-sshdDone
			powerOff(con.logf)
		}()
	}
	if doSetup {
		phase(PhaseSetup, nil)
		con.logf("node setup")
		if err := Setup(SetupOptions{Logf: con.logf, VM: vm}); err != nil {
			con.logf("%v", err)
			phase(PhaseFailed, err)
			if vm {
				<-ctx.Done()
			}
			return 1
		}
	}

	cfg, err := waitConfig(ctx, *configPath, con, func() { phase(PhaseWaitingConfig, nil) })
	if err != nil {
		if errors.Is(err, context.Canceled) {
			con.logf("stopped before any service started")
			return 0
		}
		con.logf("%v", err)
		phase(PhaseFailed, err)
		if vm {
			<-ctx.Done()
		}
		return 1
	}
	if doSetup && cfg.NodeCPUWeight > 0 {
		if err := setNodeCPUWeight(cgroupRoot, cfg.NodeCPUWeight); err != nil {
			con.logf("setup: %v (the node's services keep the default CPU weight)", err)
		} else {
			con.logf("setup: node services' cpu.weight %d", cfg.NodeCPUWeight)
		}
	}
	sup, err := New(cfg, Options{StatusPath: *statusPath, LogDir: *logDir, Stdout: stdout, KillAll: os.Getpid() == 1, reaper: reap, console: con})
	if err != nil {
		con.logf("%v", err)
		phase(PhaseFailed, err)
		return 1
	}
	sup.status.StartedAt = started
	if err := sup.Run(ctx); err != nil {
		con.logf("%v", err)
		return 1
	}
	return 0
}

// waitConfig loads the services file, waiting for it to appear if the host has not written it
// yet. A file that does not parse is read again for a short while (it may be half written).
func waitConfig(ctx context.Context, path string, con *console, waiting func()) (*services.Config, error) {
	announced := false
	var firstBad time.Time
	for {
		cfg, err := services.LoadConfig(path)
		if err == nil {
			return cfg, nil
		}
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if !announced {
				con.logf("waiting for %s", path)
				waiting()
				announced = true
			}
		default:
			if firstBad.IsZero() {
				firstBad = time.Now()
			} else if time.Since(firstBad) > 2*time.Second {
				return nil, err
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// SetupMain is "kubeforge-init setup": it runs the node setup alone (again), for debugging a
// node; setup is idempotent.
func SetupMain(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("kubeforge-init setup", flag.ContinueOnError)
	fl.SetOutput(stderr)
	if err := fl.Parse(args); err != nil {
		return 2
	}
	con := &console{w: stdout}
	if err := Setup(SetupOptions{Logf: con.logf}); err != nil {
		fmt.Fprintf(stderr, "kubeforge-init setup: %v\n", err)
		return 1
	}
	return 0
}

// StatusMain is "kubeforge-init status": it prints the status file as a table, or as JSON with
// -json.
func StatusMain(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("kubeforge-init status", flag.ContinueOnError)
	fl.SetOutput(stderr)
	path := fl.String("status-file", contract.StatusPath, "status file to read")
	asJSON := fl.Bool("json", false, "print the status file as JSON")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	if *asJSON {
		b, err := os.ReadFile(*path)
		if err != nil {
			fmt.Fprintf(stderr, "kubeforge-init status: %v\n", err)
			return 1
		}
		_, _ = stdout.Write(b)
		return 0
	}
	st, err := ReadStatus(*path)
	if err != nil {
		fmt.Fprintf(stderr, "kubeforge-init status: %v\n", err)
		return 1
	}
	if err := FormatStatus(stdout, st, time.Now()); err != nil {
		return 1
	}
	return 0
}
