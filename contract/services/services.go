// Package services is the schema of a node's services.json: the services the host asks a node's
// supervisor (kubeforge-init, node/supervisor) to run, their order, restarts and readiness. The
// host renders it (bootstrap), the node reads it; it imports only the standard library.
package services

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"kubeforge.dev/kubeforge/contract"
)

// Defaults applied by Config.Normalize.
const (
	DefaultStopGracePeriod = 10 * time.Second
	DefaultReadyTimeout    = 60 * time.Second
)

// Restart policies.
const (
	// RestartAlways restarts a long-running service whenever it exits (the default for them).
	RestartAlways = "always"
	// RestartOnFailure restarts only after a non-zero exit or a death by signal (the default for
	// oneshot services).
	RestartOnFailure = "on-failure"
	// RestartNever leaves the service down once it exits.
	RestartNever = "never"
)

// Config is the schema of services.json.
type Config struct {
	// Services to run. Order in the file does not matter: After decides it.
	Services []Service `json:"services"`
	// StopGracePeriod is how long each service gets between SIGTERM and SIGKILL on shutdown
	// ("10s" when empty). Services are stopped in reverse dependency order, those without a
	// dependency between them in parallel, so a full stop can take one grace period per level.
	StopGracePeriod Duration `json:"stopGracePeriod,omitempty"`
	// NodeCPUWeight is the cgroup v2 cpu.weight (1-10000) of the node's own processes: the
	// supervisor, its services and what they start outside the pods' cgroups (containerd's
	// shims). 0 leaves the default, 100. The kubelet gives all pods together a weight of about
	// 40 per CPU (79 on 2 CPUs), so on a starved node the node's agents come first; an emulated
	// VM sets this low so that the control plane's pods do (see bootstrap.NodeFiles).
	NodeCPUWeight int `json:"nodeCPUWeight,omitempty"`
}

// Service is one process the supervisor runs.
type Service struct {
	// Name identifies the service; also its log file name (/var/log/kubeforge/<name>.log) and
	// the prefix of its lines on the supervisor's stdout. Letters, digits, '.', '_' and '-'.
	Name string `json:"name"`
	// Path is the absolute path of the program.
	Path string `json:"path"`
	// Args are the arguments after the program name.
	Args []string `json:"args,omitempty"`
	// Env is added to (and overrides) the supervisor's own environment.
	Env map[string]string `json:"env,omitempty"`
	// After names the services that must be ready before this one starts.
	After []string `json:"after,omitempty"`
	// ReadyPath is a file or socket whose existence means the service is ready. A long-running
	// service without one is ready as soon as it has started.
	ReadyPath string `json:"readyPath,omitempty"`
	// ReadyTimeout bounds the wait for ReadyPath ("60s" when empty); a service that is not ready
	// in time is killed and restarted according to Restart.
	ReadyTimeout Duration `json:"readyTimeout,omitempty"`
	// Oneshot services run to completion; they are ready once they exited with status 0.
	Oneshot bool `json:"oneshot,omitempty"`
	// DoneMarker (oneshot only) is a file: while it is present (and matches DoneKey) the
	// service is skipped and counts as ready; it is written after a successful run.
	DoneMarker string `json:"doneMarker,omitempty"`
	// DoneKey (oneshot only, optional) is a glob: the names and sizes of the files it matches
	// are fingerprinted into DoneMarker, and a marker whose fingerprint differs does not count,
	// so that, say, a new node image with other image archives imports them again.
	DoneKey string `json:"doneKey,omitempty"`
	// Restart is "always", "on-failure" or "never". Long-running services default to "always",
	// oneshot ones to "on-failure" ("always" means "on-failure" for them). Restarts back off
	// from 1s, doubling up to 10s; the back-off resets after 30s of healthy running.
	Restart string `json:"restart,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("10s", "1m30s") in JSON.
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string, or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var secs float64
		if err2 := json.Unmarshal(b, &secs); err2 != nil {
			return fmt.Errorf("duration must be a string like \"10s\" or a number of seconds, got %s", b)
		}
		*d = Duration(secs * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("bad duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// LoadConfig reads, validates and normalizes a services file.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading services file: %w", err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("services file %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig decodes a services file strictly (unknown fields are errors, so a typo does not
// go unnoticed), then validates and normalizes it.
func ParseConfig(b []byte) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("decoding JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("decoding JSON: trailing data after the config object")
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c.Normalize()
	return &c, nil
}

// Marshal encodes the config as indented JSON, as the host writes it.
func (c *Config) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Validate checks names, paths, policies and the dependency graph (unknown names, cycles).
func (c *Config) Validate() error {
	var errs []error
	if c.NodeCPUWeight < 0 || c.NodeCPUWeight > 10000 {
		errs = append(errs, fmt.Errorf("nodeCPUWeight %d: want 1 to 10000, or 0 for the default", c.NodeCPUWeight))
	}
	seen := map[string]bool{}
	for i, s := range c.Services {
		what := fmt.Sprintf("service %d (%q)", i, s.Name)
		if !nameRE.MatchString(s.Name) {
			errs = append(errs, fmt.Errorf("%s: name must match %s", what, nameRE))
		}
		if s.Name == contract.SupervisorLogName {
			errs = append(errs, fmt.Errorf("%s: name %q is reserved for the supervisor's own log", what, s.Name))
		}
		if seen[s.Name] {
			errs = append(errs, fmt.Errorf("%s: duplicate name", what))
		}
		seen[s.Name] = true
		if !filepath.IsAbs(s.Path) {
			errs = append(errs, fmt.Errorf("%s: path %q must be absolute", what, s.Path))
		}
		switch s.Restart {
		case "", RestartAlways, RestartOnFailure, RestartNever:
		default:
			errs = append(errs, fmt.Errorf("%s: restart %q must be %q, %q or %q", what, s.Restart, RestartAlways, RestartOnFailure, RestartNever))
		}
		if !s.Oneshot && (s.DoneMarker != "" || s.DoneKey != "") {
			errs = append(errs, fmt.Errorf("%s: doneMarker/doneKey are for oneshot services only", what))
		}
		if s.DoneKey != "" && s.DoneMarker == "" {
			errs = append(errs, fmt.Errorf("%s: doneKey needs a doneMarker", what))
		}
		if s.DoneKey != "" {
			if _, err := filepath.Match(s.DoneKey, ""); err != nil {
				errs = append(errs, fmt.Errorf("%s: doneKey %q: %w", what, s.DoneKey, err))
			}
		}
		for _, p := range []string{s.ReadyPath, s.DoneMarker} {
			if p != "" && !filepath.IsAbs(p) {
				errs = append(errs, fmt.Errorf("%s: %q must be an absolute path", what, p))
			}
		}
		if s.Oneshot && s.ReadyPath != "" {
			errs = append(errs, fmt.Errorf("%s: a oneshot service is ready when it exits 0; readyPath is not used", what))
		}
		if s.ReadyTimeout < 0 {
			errs = append(errs, fmt.Errorf("%s: readyTimeout must not be negative", what))
		}
		for k := range s.Env {
			if k == "" || strings.ContainsAny(k, "=\x00") {
				errs = append(errs, fmt.Errorf("%s: bad environment variable name %q", what, k))
			}
		}
	}
	if c.StopGracePeriod < 0 {
		errs = append(errs, errors.New("stopGracePeriod must not be negative"))
	}
	for _, s := range c.Services {
		for _, dep := range s.After {
			if !seen[dep] {
				errs = append(errs, fmt.Errorf("service %q: after: unknown service %q", s.Name, dep))
			}
			if dep == s.Name {
				errs = append(errs, fmt.Errorf("service %q: after: depends on itself", s.Name))
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if _, err := c.Levels(); err != nil {
		return err
	}
	return nil
}

// Normalize fills in defaults: restart policies, ready timeout, grace period.
func (c *Config) Normalize() {
	if c.StopGracePeriod == 0 {
		c.StopGracePeriod = Duration(DefaultStopGracePeriod)
	}
	for i := range c.Services {
		s := &c.Services[i]
		if s.Restart == "" {
			s.Restart = RestartAlways
			if s.Oneshot {
				s.Restart = RestartOnFailure
			}
		}
		if s.Oneshot && s.Restart == RestartAlways {
			s.Restart = RestartOnFailure
		}
		if s.ReadyTimeout == 0 {
			s.ReadyTimeout = Duration(DefaultReadyTimeout)
		}
	}
}

// Levels groups the services by dependency depth: level 0 has no After, level n depends on
// something at level n-1 at most. Services of one level can start in parallel once the previous
// levels are ready; shutdown goes through the levels backwards. Names are sorted in a level.
func (c *Config) Levels() ([][]string, error) {
	byName := map[string]*Service{}
	for i := range c.Services {
		byName[c.Services[i].Name] = &c.Services[i]
	}
	depth := map[string]int{}
	const visiting = -1
	var visit func(name string, path []string) (int, error)
	visit = func(name string, path []string) (int, error) {
		if d, ok := depth[name]; ok {
			if d == visiting {
				return 0, fmt.Errorf("dependency cycle: %s -> %s", strings.Join(path, " -> "), name)
			}
			return d, nil
		}
		s, ok := byName[name]
		if !ok {
			return 0, fmt.Errorf("unknown service %q", name)
		}
		depth[name] = visiting
		d := 0
		for _, dep := range s.After {
			dd, err := visit(dep, append(path, name))
			if err != nil {
				return 0, err
			}
			if dd+1 > d {
				d = dd + 1
			}
		}
		depth[name] = d
		return d, nil
	}
	var levels [][]string
	for _, s := range c.Services {
		d, err := visit(s.Name, nil)
		if err != nil {
			return nil, err
		}
		for len(levels) <= d {
			levels = append(levels, nil)
		}
	}
	for name, d := range depth {
		levels[d] = append(levels[d], name)
	}
	for _, l := range levels {
		sort.Strings(l)
	}
	return levels, nil
}

// Service returns the named service, or nil.
func (c *Config) Service(name string) *Service {
	for i := range c.Services {
		if c.Services[i].Name == name {
			return &c.Services[i]
		}
	}
	return nil
}

// Dependents returns, for each service, the names of the services that list it in After.
func (c *Config) Dependents() map[string][]string {
	out := map[string][]string{}
	for _, s := range c.Services {
		for _, dep := range s.After {
			out[dep] = append(out[dep], s.Name)
		}
	}
	for _, v := range out {
		sort.Strings(v)
	}
	return out
}
