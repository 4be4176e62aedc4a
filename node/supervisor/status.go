package supervisor

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"kubeforge.dev/kubeforge/internal/fsutil"
)

// Supervisor phases.
const (
	PhaseSetup         = "setup"              // preparing the node
	PhaseWaitingConfig = "waiting-for-config" // no services file yet
	PhaseRunning       = "running"            // services started (some may still be waiting)
	PhaseStopping      = "stopping"           // shutdown in progress
	PhaseStopped       = "stopped"            // all services stopped, about to exit
	PhaseFailed        = "failed"             // setup or configuration failed; see Error
)

// Service states.
const (
	StateWaiting  = "waiting"  // for the services in After to be ready
	StateStarting = "starting" // running, not ready yet (ReadyPath missing, or oneshot running)
	StateRunning  = "running"  // running and ready
	StateBackoff  = "backoff"  // exited, restarting after a delay
	StateDone     = "done"     // oneshot finished with status 0 (or skipped: marker present)
	StateExited   = "exited"   // long-running service exited and its policy does not restart it
	StateFailed   = "failed"   // exited unsuccessfully and its policy does not restart it
	StateStopping = "stopping" // being stopped by the supervisor
	StateStopped  = "stopped"  // stopped by the supervisor (or never started before shutdown)
)

// Status is the schema of status.json, which the supervisor rewrites (atomically) on every change.
type Status struct {
	Phase string `json:"phase"`
	// Error says why the phase is "failed".
	Error     string    `json:"error,omitempty"`
	PID       int       `json:"pid"`
	StartedAt time.Time `json:"startedAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	// Order lists the services in start order (by dependency level, then name).
	Order    []string                 `json:"order,omitempty"`
	Services map[string]ServiceStatus `json:"services"`
}

// ServiceStatus is the state of one service.
type ServiceStatus struct {
	State string `json:"state"`
	// PID of the running process, 0 when none.
	PID int `json:"pid,omitempty"`
	// Ready is true once the service has been ready (it stays true across restarts).
	Ready bool `json:"ready"`
	// Restarts counts the starts after the first one.
	Restarts  int        `json:"restarts"`
	StartedAt *time.Time `json:"startedAt,omitempty"`
	LastExit  *Exit      `json:"lastExit,omitempty"`
	// Message is the latest noteworthy event (start error, readiness timeout, skipped run).
	Message string `json:"message,omitempty"`
}

// Exit describes how a process ended.
type Exit struct {
	// Code is the exit status, or -1 if the process was killed by a signal.
	Code int `json:"code"`
	// Signal names the signal that killed the process, if any ("SIGKILL").
	Signal string    `json:"signal,omitempty"`
	At     time.Time `json:"at"`
}

// Success tells whether the process exited with status 0.
func (e *Exit) Success() bool { return e != nil && e.Code == 0 && e.Signal == "" }

func (e *Exit) String() string {
	if e == nil {
		return ""
	}
	if e.Signal != "" {
		return "killed by " + e.Signal
	}
	return fmt.Sprintf("exit %d", e.Code)
}

// ReadStatus reads a status file.
func ReadStatus(path string) (*Status, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var st Status
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", path, err)
	}
	return &st, nil
}

// WriteStatus writes a status file atomically.
func WriteStatus(path string, st *Status) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, append(b, '\n'), 0o644, 0o755)
}

// FormatStatus writes a human-readable table of st.
func FormatStatus(w io.Writer, st *Status, now time.Time) error {
	fmt.Fprintf(w, "supervisor: %s (pid %d, up %s)\n", st.Phase, st.PID, now.Sub(st.StartedAt).Round(time.Second))
	if st.Error != "" {
		fmt.Fprintf(w, "error: %s\n", st.Error)
	}
	names := append([]string(nil), st.Order...)
	listed := map[string]bool{}
	for _, n := range names {
		listed[n] = true
	}
	for n := range st.Services {
		if !listed[n] {
			names = append(names, n)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tSTATE\tPID\tRESTARTS\tUPTIME\tLAST EXIT\tMESSAGE")
	for _, n := range names {
		s, ok := st.Services[n]
		if !ok {
			continue
		}
		pid, up := "-", "-"
		if s.PID > 0 {
			pid = fmt.Sprint(s.PID)
			if s.StartedAt != nil {
				up = now.Sub(*s.StartedAt).Round(time.Second).String()
			}
		}
		last := "-"
		if s.LastExit != nil {
			last = s.LastExit.String() + " " + s.LastExit.At.Format(time.TimeOnly)
		}
		msg := strings.ReplaceAll(s.Message, "\n", " ")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", n, s.State, pid, s.Restarts, up, last, msg)
	}
	return tw.Flush()
}
