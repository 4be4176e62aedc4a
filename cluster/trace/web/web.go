// Package web serves `kubeforge trace --web`: the steps of a trace, live, as a local web page
// drawing the diagram workshops teach (kubectl, the API server, etcd, the controller manager,
// the scheduler, one box per node with its kubelet and pods), each step animated as it happens,
// a timeline and the selected step's details.
//
// The server knows nothing of clusters: it is fed steps (Publish), the trace's state
// (SetState: following, or waiting for a stopped cluster) and a function listing the nodes.
// Pages get the steps over Server-Sent Events (GET /events: one JSON trace.Step per event,
// the steps of the last minutes first, then each step as it is published) and the nodes from
// GET /api/nodes. Every asset is embedded: the page works offline.
package web

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"kubeforge.dev/kubeforge/cluster/trace"
)

//go:embed assets
var assets embed.FS

// Defaults of the replay ring: a new page gets the steps of the last 10 minutes, at most 5000.
const (
	DefaultMaxSteps = 5000
	DefaultMaxAge   = 10 * time.Minute
)

// subscriberBuffer is how many steps a page may lag behind before it is dropped (its browser
// reconnects and resumes after the last step it got: Last-Event-ID).
const subscriberBuffer = 1024

// keepAlive is how often an idle event stream gets a comment, so proxies and browsers keep it.
const keepAlive = 15 * time.Second

// Node is one node's box on the page.
type Node struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// State is the machine's state as its driver says it (running, stopped...).
	State string `json:"state"`
}

// State is what the trace is doing, shown on the page.
type State struct {
	// Phase: "connecting", "following" (steps arrive as the API server answers), "waiting"
	// (the cluster's control plane is stopped: the trace follows it again once it is back).
	Phase   string `json:"phase"`
	Message string `json:"message,omitempty"`
}

// Options configure a Server.
type Options struct {
	// Cluster is the cluster's name, shown in the page's title.
	Cluster string
	// Scope says which steps the trace keeps ("namespace default", "deployment/web"...).
	Scope string
	// Nodes lists the cluster's nodes; nil lists none.
	Nodes func(context.Context) ([]Node, error)
	// MaxSteps and MaxAge bound the replay ring (0: the defaults).
	MaxSteps int
	MaxAge   time.Duration
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
}

// event is one step with its sequence number (the SSE id).
type event struct {
	id   uint64
	step trace.Step
	at   time.Time // when it was published (the ring's age)
}

// Server is the web page's server.
type Server struct {
	o Options

	mu     sync.Mutex
	ring   []event // oldest first
	nextID uint64
	state  State
	subs   map[*subscriber]struct{}
}

type subscriber struct {
	steps   chan event
	state   chan State
	dropped chan struct{} // closed when the page lagged too far behind
}

// New returns a server with no steps.
func New(o Options) *Server {
	if o.MaxSteps <= 0 {
		o.MaxSteps = DefaultMaxSteps
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Server{o: o, nextID: 1, state: State{Phase: "connecting"}, subs: map[*subscriber]struct{}{}}
}

// Publish records s in the replay ring and sends it to every page.
func (s *Server) Publish(st trace.Step) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ev := event{id: s.nextID, step: st, at: s.o.Now()}
	s.nextID++
	s.ring = append(s.ring, ev)
	s.trimLocked()
	for sub := range s.subs {
		select {
		case sub.steps <- ev:
		default:
			// Too far behind: drop it; its EventSource reconnects with Last-Event-ID.
			delete(s.subs, sub)
			close(sub.dropped)
		}
	}
}

// trimLocked drops the steps beyond MaxSteps and those older than MaxAge.
func (s *Server) trimLocked() {
	drop := 0
	if n := len(s.ring) - s.o.MaxSteps; n > 0 {
		drop = n
	}
	oldest := s.o.Now().Add(-s.o.MaxAge)
	for drop < len(s.ring) && s.ring[drop].at.Before(oldest) {
		drop++
	}
	if drop > 0 {
		s.ring = append(s.ring[:0:0], s.ring[drop:]...)
	}
}

// Steps returns the steps of the replay ring, oldest first.
func (s *Server) Steps() []trace.Step {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trimLocked()
	out := make([]trace.Step, len(s.ring))
	for i, ev := range s.ring {
		out[i] = ev.step
	}
	return out
}

// SetState tells every page what the trace does now; a change also has the pages list the
// nodes again (a cluster that comes back may have other machines running).
func (s *Server) SetState(st State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st == s.state {
		return
	}
	s.state = st
	for sub := range s.subs {
		select {
		case <-sub.state: // keep only the newest
		default:
		}
		sub.state <- st
	}
}

// subscribe returns the steps after lastID (all kept steps for 0) and a subscriber for the next.
func (s *Server) subscribe(lastID uint64) ([]event, State, *subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trimLocked()
	var replay []event
	for _, ev := range s.ring {
		if ev.id > lastID {
			replay = append(replay, ev)
		}
	}
	sub := &subscriber{
		steps:   make(chan event, subscriberBuffer),
		state:   make(chan State, 1),
		dropped: make(chan struct{}),
	}
	s.subs[sub] = struct{}{}
	return replay, s.state, sub
}

func (s *Server) unsubscribe(sub *subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.subs, sub)
}

// Listen listens on 127.0.0.1:port (0: any free port): the page is for this machine only.
func Listen(port int) (net.Listener, error) {
	if port < 0 || port > 65535 {
		return nil, fmt.Errorf("port %d: want 0 (any free port) to 65535", port)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("listening on 127.0.0.1:%d for the trace's web page: %w", port, err)
	}
	return ln, nil
}

// URL is the page's address on ln.
func URL(ln net.Listener) string { return "http://" + ln.Addr().String() + "/" }

// Serve serves the page on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
		}
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		_ = hs.Close()
	}()
	err := hs.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Handler serves the page, its assets, /events and /api/*.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded directory is part of the binary
	}
	mux.Handle("GET /", noCache(http.FileServerFS(static)))
	mux.HandleFunc("GET /events", s.events)
	mux.HandleFunc("GET /api/nodes", s.nodes)
	mux.HandleFunc("GET /api/steps", s.steps)
	mux.HandleFunc("GET /api/info", s.info)
	return localOnly(mux)
}

// localOnly refuses requests whose Host is not this machine's loopback address (a page of
// another site reaching the port through DNS rebinding names its own host).
func localOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		switch strings.Trim(host, "[]") {
		case "127.0.0.1", "localhost", "::1":
		default:
			http.Error(w, "the trace's web page answers only to 127.0.0.1 and localhost", http.StatusForbidden)
			return
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:")
		h.ServeHTTP(w, r)
	})
}

func noCache(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

// NodesAnswer is what GET /api/nodes answers.
type NodesAnswer struct {
	Nodes []Node `json:"nodes"`
	Error string `json:"error,omitempty"`
}

func (s *Server) nodes(w http.ResponseWriter, r *http.Request) {
	a := NodesAnswer{Nodes: []Node{}}
	if s.o.Nodes != nil {
		ns, err := s.o.Nodes(r.Context())
		if err != nil {
			a.Error = err.Error()
		}
		if ns != nil {
			a.Nodes = ns
		}
	}
	writeJSON(w, a)
}

func (s *Server) steps(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, s.Steps())
}

// Info is what GET /api/info answers: what the page shows.
type Info struct {
	Cluster  string `json:"cluster"`
	Scope    string `json:"scope"`
	MaxSteps int    `json:"maxSteps"`
	MaxAge   int    `json:"maxAgeSeconds"`
	State    State  `json:"state"`
}

func (s *Server) info(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	st := s.state
	s.mu.Unlock()
	writeJSON(w, Info{Cluster: s.o.Cluster, Scope: s.o.Scope, MaxSteps: s.o.MaxSteps, MaxAge: int(s.o.MaxAge / time.Second), State: st})
}

// events streams the steps: first those of the ring after Last-Event-ID (all of them for a new
// page), then "event: replayed", then each step as it is published. Each step is one event, its
// data the step's JSON (trace.Step's field names), its id the step's sequence number. "event:
// state" carries the trace's State, "event: nodes" asks the page to list the nodes again.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	var last uint64
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		last, _ = strconv.ParseUint(v, 10, 64)
	}
	replay, st, sub := s.subscribe(last)
	defer s.unsubscribe(sub)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprint(w, "retry: 2000\n\n"); err != nil {
		return
	}
	if writeEvent(w, "state", 0, st) != nil {
		return
	}
	for _, ev := range replay {
		if writeEvent(w, "", ev.id, ev.step) != nil {
			return
		}
	}
	if writeEvent(w, "replayed", 0, map[string]int{"steps": len(replay)}) != nil {
		return
	}
	fl.Flush()
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case <-sub.dropped:
			return
		case ev := <-sub.steps:
			err = writeEvent(w, "", ev.id, ev.step)
			// Send what else is there at once, in one flush.
			for more := true; more && err == nil; {
				select {
				case ev := <-sub.steps:
					err = writeEvent(w, "", ev.id, ev.step)
				default:
					more = false
				}
			}
		case st := <-sub.state:
			// A state change also has the page list the nodes again, after the state.
			if err = writeEvent(w, "state", 0, st); err == nil {
				err = writeEvent(w, "nodes", 0, struct{}{})
			}
		case <-tick.C:
			_, err = fmt.Fprint(w, ": keep-alive\n\n")
		}
		if err != nil {
			return
		}
		fl.Flush()
	}
}

// writeEvent writes one SSE event: its type (none: a step, "message"), its id (0: none) and
// its data, JSON on one line.
func writeEvent(w http.ResponseWriter, typ string, id uint64, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var sb strings.Builder
	if typ != "" {
		sb.WriteString("event: " + typ + "\n")
	}
	if id != 0 {
		sb.WriteString("id: " + strconv.FormatUint(id, 10) + "\n")
	}
	sb.WriteString("data: ")
	sb.Write(b)
	sb.WriteString("\n\n")
	_, err = fmt.Fprint(w, sb.String())
	return err
}
