package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestVCSCommit(t *testing.T) {
	rev := debug.BuildSetting{Key: "vcs.revision", Value: "abc123"}
	cases := []struct {
		settings []debug.BuildSetting
		want     string
	}{
		{nil, ""},
		{[]debug.BuildSetting{rev}, "abc123"},
		{[]debug.BuildSetting{rev, {Key: "vcs.modified", Value: "false"}}, "abc123"},
		{[]debug.BuildSetting{{Key: "vcs.modified", Value: "true"}, rev}, "abc123-dirty"},
		{[]debug.BuildSetting{{Key: "vcs.modified", Value: "true"}}, ""},
	}
	for _, c := range cases {
		if got := vcsCommit(c.settings); got != c.want {
			t.Errorf("vcsCommit(%v) = %q, want %q", c.settings, got, c.want)
		}
	}
}

func TestGetStamped(t *testing.T) {
	v, c, d := Version, Commit, Date
	t.Cleanup(func() { Version, Commit, Date = v, c, d })
	Version, Commit, Date = "v1.2.3", "deadbeef", "2026-01-02T03:04:05Z"
	if got, want := Get(), (Info{"v1.2.3", "deadbeef", "2026-01-02T03:04:05Z"}); got != want {
		t.Errorf("Get() = %+v, want %+v", got, want)
	}
	Version = ""
	if got := Get().Version; got != "devel" {
		t.Errorf("empty Version: Get().Version = %q, want devel", got)
	}
}
