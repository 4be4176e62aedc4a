package supervisor

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Mount is one line of /proc/self/mountinfo.
type Mount struct {
	ID, Parent int
	Root       string
	MountPoint string
	// Options are the per-mount options (ro, nosuid, relatime...).
	Options []string
	// Optional are the optional fields (shared:N, master:N...).
	Optional []string
	FSType   string
	Source   string
	// SuperOptions are the super block options (for cgroup v1: the controllers).
	SuperOptions []string
}

// ReadOnly tells whether the mount point itself is read-only.
func (m Mount) ReadOnly() bool { return hasOpt(m.Options, "ro") }

func hasOpt(opts []string, o string) bool {
	for _, x := range opts {
		if x == o {
			return true
		}
	}
	return false
}

// ParseMountInfo parses the format of /proc/<pid>/mountinfo (see proc(5)).
func ParseMountInfo(r io.Reader) ([]Mount, error) {
	var out []Mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 10 || sep < 0 || len(f) < sep+3 {
			return nil, fmt.Errorf("mountinfo: malformed line %q", line)
		}
		id, err1 := strconv.Atoi(f[0])
		parent, err2 := strconv.Atoi(f[1])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("mountinfo: malformed ids in %q", line)
		}
		m := Mount{
			ID:         id,
			Parent:     parent,
			Root:       unescapeMount(f[3]),
			MountPoint: unescapeMount(f[4]),
			Options:    strings.Split(f[5], ","),
			Optional:   f[6:sep],
			FSType:     f[sep+1],
			Source:     unescapeMount(f[sep+2]),
		}
		if len(f) > sep+3 {
			m.SuperOptions = strings.Split(f[sep+3], ",")
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// ReadMountInfo reads and parses /proc/self/mountinfo.
func ReadMountInfo() ([]Mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseMountInfo(f)
}

// unescapeMount undoes the octal escapes (\040 for a space) of mountinfo fields.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// topMount returns the last (topmost) mount at a mount point, if any.
func topMount(mounts []Mount, mountPoint string) (Mount, bool) {
	var found Mount
	ok := false
	for _, m := range mounts {
		if m.MountPoint == mountPoint {
			found, ok = m, true
		}
	}
	return found, ok
}

// CgroupV1RemountTargets returns the cgroup mounts under /sys/fs/cgroup that are read-only and
// need a bind remount rw (cgroup v1 controllers, plus a hybrid host's cgroup2 "unified" mount).
func CgroupV1RemountTargets(mounts []Mount) []Mount {
	var out []Mount
	for _, m := range mounts {
		if (m.FSType == "cgroup" || m.FSType == "cgroup2") && strings.HasPrefix(m.MountPoint, "/sys/fs/cgroup/") && m.ReadOnly() {
			out = append(out, m)
		}
	}
	return out
}
