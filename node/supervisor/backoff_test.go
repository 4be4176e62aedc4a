package supervisor

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"kubeforge.dev/kubeforge/contract/services"
)

func TestBackoff(t *testing.T) {
	var seq []time.Duration
	d := time.Duration(0)
	for i := 0; i < 6; i++ {
		d = NextBackoff(d, time.Second)
		seq = append(seq, d)
	}
	want := []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	if !reflect.DeepEqual(seq, want) {
		t.Errorf("back-off sequence %v, want %v", seq, want)
	}
	if got := NextBackoff(10*time.Second, 30*time.Second); got != time.Second {
		t.Errorf("after 30s of healthy running the back-off should reset, got %v", got)
	}
	if got := NextBackoff(4*time.Second, 29*time.Second); got != 8*time.Second {
		t.Errorf("a 29s run should not reset the back-off, got %v", got)
	}
}

func TestShouldRestart(t *testing.T) {
	cases := []struct {
		policy           string
		oneshot, success bool
		want             bool
	}{
		{services.RestartAlways, false, true, true},
		{services.RestartAlways, false, false, true},
		{services.RestartAlways, true, true, false},
		{services.RestartAlways, true, false, true},
		{services.RestartOnFailure, false, true, false},
		{services.RestartOnFailure, false, false, true},
		{services.RestartOnFailure, true, false, true},
		{services.RestartNever, false, false, false},
		{services.RestartNever, true, false, false},
	}
	for _, c := range cases {
		if got := ShouldRestart(c.policy, c.oneshot, c.success); got != c.want {
			t.Errorf("ShouldRestart(%s, oneshot=%v, success=%v) = %v", c.policy, c.oneshot, c.success, got)
		}
	}
}

func TestDoneMarker(t *testing.T) {
	dir := t.TempDir()
	images := filepath.Join(dir, "images")
	os.Mkdir(images, 0o755)
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(images, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := &services.Service{Name: "import", Oneshot: true, DoneMarker: filepath.Join(dir, "state", "imported"), DoneKey: filepath.Join(images, "*.tar")}
	done, fp0, err := markerDone(s)
	if err != nil || done {
		t.Fatalf("no marker yet: done=%v err=%v", done, err)
	}
	write("a.tar", "aaaa")
	done, fp1, _ := markerDone(s)
	if done || fp1 == fp0 {
		t.Fatalf("a new archive must change the fingerprint")
	}
	if err := writeMarker(s, fp1); err != nil {
		t.Fatal(err)
	}
	if done, _, _ := markerDone(s); !done {
		t.Fatal("marker written for the same archives must count")
	}
	write("notes.txt", "ignored: does not match")
	if done, _, _ := markerDone(s); !done {
		t.Fatal("files outside the glob must not matter")
	}
	write("a.tar", "aaaaa") // same name, other size: a new node image
	if done, _, _ := markerDone(s); done {
		t.Fatal("a resized archive must invalidate the marker")
	}
	// Without a key, presence is enough.
	s2 := &services.Service{Name: "x", Oneshot: true, DoneMarker: filepath.Join(dir, "state", "x")}
	if done, _, _ := markerDone(s2); done {
		t.Fatal("no marker yet")
	}
	if err := writeMarker(s2, ""); err != nil {
		t.Fatal(err)
	}
	if done, _, _ := markerDone(s2); !done {
		t.Fatal("marker present")
	}
}
