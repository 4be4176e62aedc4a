// Package buildinfo is what `make` stamps into bin/kubeforge with -ldflags -X: kubeforge's
// version (git describe), the commit and the build date. Only the host CLI is stamped: the node
// binaries (kubeforge-node, kubeforge-init) stay independent of the commit, so that a new commit
// does not change the node image's content hash.
package buildinfo

import "runtime/debug"

// Set by the Makefile (HOST_LDFLAGS); a plain `go build` leaves them as they are here.
var (
	// Version is `git describe --tags --always --dirty`, or "devel" outside a git checkout.
	Version = "devel"
	// Commit is the full commit hash the binary was built from.
	Commit = ""
	// Date is when the binary was built, RFC 3339 in UTC.
	Date = ""
)

// Info is the build's identity.
type Info struct {
	Version string `json:"version"`
	Commit  string `json:"commit,omitempty"`
	Date    string `json:"buildDate,omitempty"`
}

// Get returns the stamped values. An unstamped binary (go build, go run) takes the commit from
// the Go toolchain's VCS stamp when it has one.
func Get() Info {
	i := Info{Version: Version, Commit: Commit, Date: Date}
	if i.Version == "" {
		i.Version = "devel"
	}
	if i.Commit == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			i.Commit = vcsCommit(bi.Settings)
		}
	}
	return i
}

// vcsCommit is the commit of the toolchain's VCS settings, "-dirty" when the tree was modified.
func vcsCommit(settings []debug.BuildSetting) string {
	var rev string
	dirty := false
	for _, s := range settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev != "" && dirty {
		rev += "-dirty"
	}
	return rev
}
