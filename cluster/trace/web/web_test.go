package web

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"kubeforge.dev/kubeforge/cluster/trace"
)

// recorded returns the steps of ../testdata/audit.log: a real `kubectl create deployment web
// --replicas=3` on a 3-node cluster, as the API server logged it.
func recorded(t *testing.T) []trace.Step {
	t.Helper()
	f, err := os.Open("../testdata/audit.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []trace.Step
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		ev, err := trace.ParseAudit(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if s, ok := trace.FromAudit(ev); ok {
			out = append(out, s)
		}
	}
	if len(out) < 7 {
		t.Fatalf("only %d steps in testdata/audit.log", len(out))
	}
	return out
}

// sseEvent is one Server-Sent Event as a browser's EventSource sees it.
type sseEvent struct {
	typ, id, data string
}

// readEvents parses the text/event-stream of r into ch until it ends.
func readEvents(r io.Reader, ch chan<- sseEvent) {
	defer close(ch)
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.data != "" || ev.typ != "" {
				if ev.typ == "" {
					ev.typ = "message"
				}
				ch <- ev
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, ":"), strings.HasPrefix(line, "retry: "):
		case strings.HasPrefix(line, "event: "):
			ev.typ = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "id: "):
			ev.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: "):
			if ev.data != "" {
				ev.data += "\n"
			}
			ev.data += strings.TrimPrefix(line, "data: ")
		default:
			ch <- sseEvent{typ: "BAD LINE", data: line}
		}
	}
}

// stream opens /events (after lastID when not "") and returns its events.
func stream(t *testing.T, ctx context.Context, url, lastID string) <-chan sseEvent {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", url+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /events: %s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	ch := make(chan sseEvent, 100)
	go readEvents(resp.Body, ch)
	return ch
}

func next(t *testing.T, ch <-chan sseEvent) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("the event stream ended")
		}
		if ev.typ == "BAD LINE" {
			t.Fatalf("a line of the event stream that is no SSE field: %q", ev.data)
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5 s")
	}
	return sseEvent{}
}

func stepOf(t *testing.T, ev sseEvent) trace.Step {
	t.Helper()
	if ev.typ != "message" {
		t.Fatalf("want a step (a message event), got event %q: %s", ev.typ, ev.data)
	}
	var s trace.Step
	if err := json.Unmarshal([]byte(ev.data), &s); err != nil {
		t.Fatalf("a step's data is no trace.Step: %v: %s", err, ev.data)
	}
	return s
}

// TestEvents checks the SSE framing: the state, the kept steps (one JSON trace.Step per event,
// ids counting up), "replayed", then each published step and state change as they happen.
func TestEvents(t *testing.T) {
	steps := recorded(t)
	s := New(Options{Cluster: "c"})
	for _, st := range steps[:5] {
		s.Publish(st)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := stream(t, ctx, ts.URL, "")

	if ev := next(t, ch); ev.typ != "state" || !strings.Contains(ev.data, `"phase":"connecting"`) {
		t.Fatalf("first event: %+v", ev)
	}
	for i := range 5 {
		ev := next(t, ch)
		got := stepOf(t, ev)
		if ev.id != strconv.Itoa(i+1) {
			t.Errorf("step %d has id %q", i, ev.id)
		}
		if !got.Time.Equal(steps[i].Time) || got.Component != steps[i].Component || got.EtcdKey != steps[i].EtcdKey ||
			got.ResourceVersion != steps[i].ResourceVersion || got.Name != steps[i].Name {
			t.Errorf("step %d: got %+v, want %+v", i, got, steps[i])
		}
		// The field names are trace.Step's (those of `kubeforge trace -o json`).
		var raw map[string]any
		_ = json.Unmarshal([]byte(ev.data), &raw)
		want, _ := json.Marshal(steps[i])
		var wantRaw map[string]any
		_ = json.Unmarshal(want, &wantRaw)
		if len(raw) != len(wantRaw) {
			t.Errorf("step %d: fields %v, want %v", i, raw, wantRaw)
		}
	}
	if ev := next(t, ch); ev.typ != "replayed" || ev.data != `{"steps":5}` {
		t.Fatalf("after the kept steps: %+v", ev)
	}
	s.Publish(steps[5])
	if ev := next(t, ch); ev.id != "6" || stepOf(t, ev).Name != steps[5].Name {
		t.Fatalf("a live step: %+v", ev)
	}
	s.SetState(State{Phase: "waiting", Message: "cluster c stopped"})
	if ev := next(t, ch); ev.typ != "state" || ev.data != `{"phase":"waiting","message":"cluster c stopped"}` {
		t.Fatalf("a state change: %+v", ev)
	}
	if ev := next(t, ch); ev.typ != "nodes" {
		t.Fatalf("a state change asks the page to list the nodes again: %+v", ev)
	}

	// A reconnecting page (Last-Event-ID) gets only what it missed.
	s.Publish(steps[6])
	ch2 := stream(t, ctx, ts.URL, "5")
	if ev := next(t, ch2); ev.typ != "state" || !strings.Contains(ev.data, "waiting") {
		t.Fatalf("first event after a reconnect: %+v", ev)
	}
	for _, want := range []string{"6", "7"} {
		if ev := next(t, ch2); ev.id != want {
			t.Fatalf("after Last-Event-ID 5: want id %s, got %+v", want, ev)
		}
	}
	if ev := next(t, ch2); ev.typ != "replayed" {
		t.Fatalf("after the missed steps: %+v", ev)
	}
}

// TestRingBounds checks the replay ring keeps at most MaxSteps steps, none older than MaxAge.
func TestRingBounds(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	s := New(Options{MaxSteps: 3, MaxAge: time.Minute, Now: clock})
	for i := range 5 {
		s.Publish(trace.Step{Name: strconv.Itoa(i), Verb: "create", Resource: "pods"})
	}
	names := func() string {
		var n []string
		for _, st := range s.Steps() {
			n = append(n, st.Name)
		}
		return strings.Join(n, ",")
	}
	if got := names(); got != "2,3,4" {
		t.Fatalf("MaxSteps 3 after 5 steps: kept %q", got)
	}
	advance(40 * time.Second)
	s.Publish(trace.Step{Name: "5", Verb: "create", Resource: "pods"})
	if got := names(); got != "3,4,5" {
		t.Fatalf("kept %q", got)
	}
	advance(30 * time.Second) // 3 and 4 are 70 s old now
	if got := names(); got != "5" {
		t.Fatalf("MaxAge 1m: kept %q", got)
	}
	advance(time.Hour)
	if got := names(); got != "" {
		t.Fatalf("an hour later: kept %q", got)
	}
	d := New(Options{})
	if d.o.MaxSteps != DefaultMaxSteps || d.o.MaxAge != DefaultMaxAge || DefaultMaxSteps != 5000 || DefaultMaxAge != 10*time.Minute {
		t.Errorf("defaults: %d steps, %s", d.o.MaxSteps, d.o.MaxAge)
	}
	// A new page gets what the ring holds, and no more.
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	for i := 6; i < 10; i++ {
		s.Publish(trace.Step{Name: strconv.Itoa(i), Verb: "create", Resource: "pods"})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := stream(t, ctx, ts.URL, "")
	next(t, ch) // state
	var got []string
	for {
		ev := next(t, ch)
		if ev.typ == "replayed" {
			break
		}
		got = append(got, stepOf(t, ev).Name)
	}
	if strings.Join(got, ",") != "7,8,9" {
		t.Errorf("a new page got %v, want the ring's 7,8,9", got)
	}
}

// TestSlowPageDropped checks a page that does not read is dropped, not waited for: Publish never
// blocks the trace.
func TestSlowPageDropped(t *testing.T) {
	s := New(Options{})
	_, _, sub := s.subscribe(0)
	done := make(chan struct{})
	go func() {
		for range subscriberBuffer + 10 {
			s.Publish(trace.Step{Verb: "create", Resource: "pods"})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked on a page that does not read")
	}
	select {
	case <-sub.dropped:
	default:
		t.Fatal("the page that did not read was not dropped")
	}
	if len(s.subs) != 0 {
		t.Errorf("%d subscribers left", len(s.subs))
	}
}

// TestLocalOnly checks the page listens on the loopback address only and answers only to
// requests naming it (no DNS rebinding).
func TestLocalOnly(t *testing.T) {
	ln, err := Listen(0)
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	if !addr.IP.Equal(net.IPv4(127, 0, 0, 1)) || addr.Port == 0 {
		t.Fatalf("Listen(0) listens on %s, want 127.0.0.1:<free port>", addr)
	}
	if u := URL(ln); u != "http://127.0.0.1:"+strconv.Itoa(addr.Port)+"/" {
		t.Errorf("URL: %s", u)
	}
	// The port is taken: a second Listen on it fails, naming it.
	if ln2, err := Listen(addr.Port); err == nil {
		ln2.Close()
		t.Errorf("Listen(%d) twice succeeded", addr.Port)
	} else if !strings.Contains(err.Error(), "127.0.0.1:"+strconv.Itoa(addr.Port)) {
		t.Errorf("error: %v", err)
	}
	if _, err := Listen(70000); err == nil {
		t.Error("Listen(70000) succeeded")
	}
	s := New(Options{Cluster: "c"})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()

	for host, want := range map[string]int{
		"127.0.0.1:" + strconv.Itoa(addr.Port):    200,
		"localhost:" + strconv.Itoa(addr.Port):    200,
		"evil.example:" + strconv.Itoa(addr.Port): 403,
		"192.168.1.5": 403,
	} {
		req, _ := http.NewRequest("GET", "http://"+addr.String()+"/api/info", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Host %s: %s, want %d", host, resp.Status, want)
		}
	}
	// Other addresses of this machine do not answer at all.
	if ifs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range ifs {
			ip, _, _ := net.ParseCIDR(a.String())
			if ip == nil || ip.IsLoopback() || ip.To4() == nil {
				continue
			}
			c, err := net.DialTimeout("tcp", net.JoinHostPort(ip.String(), strconv.Itoa(addr.Port)), time.Second)
			if err == nil {
				c.Close()
				t.Errorf("the page answers on %s", ip)
			}
		}
	}
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve after its context ended: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not end with its context")
	}
}

// TestAssetsAndAPI checks the embedded page and the JSON endpoints.
func TestAssetsAndAPI(t *testing.T) {
	nodes := []Node{{Name: "c", Role: "control-plane", State: "running"}, {Name: "c-m02", Role: "worker", State: "stopped"}}
	s := New(Options{Cluster: "c", Scope: "namespace default", Nodes: func(context.Context) ([]Node, error) { return nodes, nil }})
	s.Publish(trace.Step{Verb: "create", Resource: "pods", Name: "p"})
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	get := func(path string) (string, http.Header) {
		t.Helper()
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
		return string(b), resp.Header
	}
	page, _ := get("/")
	for _, want := range []string{`<svg id="diagram"`, `<ol id="timeline">`, `src="app.js"`, `href="app.css"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	// Offline: nothing is loaded from elsewhere.
	for _, f := range []string{"/", "/app.js", "/app.css"} {
		body, h := get(f)
		if strings.Contains(body, "https://") || strings.Contains(body, "//cdn") {
			t.Errorf("%s refers to another site", f)
		}
		if !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("%s: Content-Security-Policy %q", f, h.Get("Content-Security-Policy"))
		}
	}
	if _, h := get("/app.js"); !strings.Contains(h.Get("Content-Type"), "javascript") {
		t.Errorf("app.js: Content-Type %q", h.Get("Content-Type"))
	}
	body, _ := get("/api/nodes")
	var na NodesAnswer
	if err := json.Unmarshal([]byte(body), &na); err != nil || len(na.Nodes) != 2 || na.Nodes[1] != nodes[1] {
		t.Errorf("/api/nodes: %s (%v)", body, err)
	}
	body, _ = get("/api/steps")
	var st []trace.Step
	if err := json.Unmarshal([]byte(body), &st); err != nil || len(st) != 1 || st[0].Name != "p" {
		t.Errorf("/api/steps: %s (%v)", body, err)
	}
	body, _ = get("/api/info")
	if !strings.Contains(body, `"cluster":"c"`) || !strings.Contains(body, `"maxSteps":5000`) || !strings.Contains(body, `"maxAgeSeconds":600`) {
		t.Errorf("/api/info: %s", body)
	}
}
