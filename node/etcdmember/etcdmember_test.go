package etcdmember

import "testing"

func TestInitialCluster(t *testing.T) {
	list := []*memberInfo{
		{id: 2, name: "kf-m02", peerURLs: []string{"https://10.0.0.3:2380"}},
		{id: 1, name: "kf", peerURLs: []string{"https://10.0.0.2:2380"}},
		{id: 3, name: "", peerURLs: []string{"https://10.0.0.5:2380"}}, // added, not started
		{id: 4, name: "", peerURLs: []string{"https://10.0.0.9:2380"}}, // someone else's pending add
	}
	got := InitialCluster(members(list, "kf-m04", "https://10.0.0.5:2380"))
	want := "kf=https://10.0.0.2:2380,kf-m02=https://10.0.0.3:2380,kf-m04=https://10.0.0.5:2380"
	if got != want {
		t.Errorf("InitialCluster = %q, want %q", got, want)
	}
	if got := InitialCluster(nil); got != "" {
		t.Errorf("empty = %q", got)
	}
}
