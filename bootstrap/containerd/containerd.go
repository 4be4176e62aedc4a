// Package containerd renders the node's container runtime setup: containerd 2.x's config.toml and
// the supervisor services that run containerd and import the node image's preloaded images.
//
// It is imported by the host side (which combines these services with the kubelet's and copies
// the files into the node), so it stays light: stdlib and the supervisor's types only.
package containerd

import (
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"sort"
	"strings"

	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/contract/cniconf"
	"kubeforge.dev/kubeforge/contract/services"
)

// Paths and names inside a node.
const (
	// ContainerdPath and CtrPath are where the node image installs containerd and ctr.
	ContainerdPath = "/usr/local/bin/containerd"
	CtrPath        = "/usr/local/bin/ctr"
	// ImagesNamespace is the containerd namespace the CRI plugin (and so the kubelet) uses.
	ImagesNamespace = "k8s.io"
	// ImportDoneMarker and ImportAddonsDoneMarker record which image archives were imported
	// into this node's /var volume.
	ImportDoneMarker       = contract.StateDir + "/images-imported"
	ImportAddonsDoneMarker = contract.StateDir + "/addon-images-imported"

	// Service names, for the host's After lists: the kubelet comes after containerd and the
	// boot images; the addon images are imported meanwhile (their pods come seconds later, once
	// the API server runs and the addons are applied).
	ServiceContainerd        = "containerd"
	ServiceImportImages      = "import-images"
	ServiceImportAddonImages = "import-addon-images"
)

// Defaults of Options.
const (
	DefaultSandboxImage      = "kubeforge.local/pause:3.10"
	DefaultCNIBinDir         = cniconf.BinDir
	DefaultCNIConfDir        = cniconf.DefaultConfDir
	DefaultSnapshotter       = "overlayfs"
	DefaultRegistryConfigDir = "/etc/containerd/certs.d"
	DefaultRoot              = "/var/lib/containerd"
	DefaultState             = "/run/containerd"
)

// Options are the node-specific settings of containerd. Zero values mean the defaults above.
type Options struct {
	// SandboxImage is the pause image, pinned so the kubelet's image GC never removes it; it is
	// preloaded (never pulled).
	SandboxImage string
	// CNIBinDir and CNIConfDir are where the CNI plugins and the node's network config are.
	CNIBinDir, CNIConfDir string
	// HTTPProxy, HTTPSProxy and NoProxy are passed to containerd (image pulls) as environment.
	HTTPProxy, HTTPSProxy, NoProxy string
	// RegistryConfigDir holds hosts.toml files for registry mirrors (containerd's config_path).
	RegistryConfigDir string
	// Root and State are containerd's persistent (on the node's /var volume: overlayfs does not
	// work on the container's own overlay) and runtime directories.
	Root, State string
	// LogLevel is containerd's log level ("info" when empty).
	LogLevel string
	// ImagesDir overrides where the preloaded archives are (ImagesDir when empty).
	ImagesDir string
}

func (o Options) withDefaults() Options {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.SandboxImage, DefaultSandboxImage)
	def(&o.CNIBinDir, DefaultCNIBinDir)
	def(&o.CNIConfDir, DefaultCNIConfDir)
	def(&o.RegistryConfigDir, DefaultRegistryConfigDir)
	def(&o.Root, DefaultRoot)
	def(&o.State, DefaultState)
	def(&o.LogLevel, "info")
	def(&o.ImagesDir, contract.ImagesDir)
	return o
}

var logLevels = map[string]bool{"trace": true, "debug": true, "info": true, "warn": true, "error": true, "fatal": true, "panic": true}

func (o Options) validate() error {
	for what, p := range map[string]string{"CNIBinDir": o.CNIBinDir, "CNIConfDir": o.CNIConfDir, "RegistryConfigDir": o.RegistryConfigDir, "Root": o.Root, "State": o.State, "ImagesDir": o.ImagesDir} {
		if !path.IsAbs(p) {
			return fmt.Errorf("containerd options: %s %q must be an absolute path", what, p)
		}
	}
	if !logLevels[o.LogLevel] {
		return fmt.Errorf("containerd options: unknown log level %q", o.LogLevel)
	}
	if strings.ContainsAny(o.SandboxImage, " \t\n\"'") {
		return fmt.Errorf("containerd options: bad sandbox image %q", o.SandboxImage)
	}
	return nil
}

// Plugin IDs of containerd 2.x (config version 3), from containerd v2.4's source.
const (
	pluginCRIRuntime = "io.containerd.cri.v1.runtime"
	pluginCRIImages  = "io.containerd.cri.v1.images"
)

// ContainerdConfig renders /etc/containerd/config.toml (config version 3, read by containerd
// 2.0 through 2.4, which migrates it to its version 4 in memory):
//   - the overlayfs snapshotter (on the node's /var volume);
//   - runc through the v2 shim, SystemdCgroup = false (the kubelet uses cgroupfs; no systemd);
//   - restrict_oom_score_adj = true: inside a container without CAP_SYS_RESOURCE, runc cannot
//     lower a process's oom_score_adj, and without this sandboxes fail with "can't get final
//     child's PID from pipe: EOF";
//   - the sandbox image pinned to the preloaded pause image;
//   - the CNI directories; discard_unpacked_layers = false (keeps the layers of preloaded
//     images, so they can be re-exported and re-unpacked).
func ContainerdConfig(o Options) ([]byte, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	var w tomlWriter
	w.comment("containerd config for a kubeforge node; generated by kubeforge, do not edit.")
	w.kv("version", 3)
	w.kv("root", o.Root)
	w.kv("state", o.State)
	w.kv("oom_score", 0)

	w.table("debug")
	w.kv("level", o.LogLevel)

	w.table("plugins", pluginCRIRuntime)
	w.kv("enable_selinux", false)
	w.kv("restrict_oom_score_adj", true)
	w.kv("tolerate_missing_hugetlb_controller", true)
	w.kv("disable_hugetlb_controller", true)
	w.kv("enable_unprivileged_ports", true)
	w.kv("enable_unprivileged_icmp", true)

	w.table("plugins", pluginCRIRuntime, "containerd")
	w.kv("default_runtime_name", "runc")

	w.table("plugins", pluginCRIRuntime, "containerd", "runtimes", "runc")
	w.kv("runtime_type", "io.containerd.runc.v2")
	w.kv("sandboxer", "podsandbox")

	w.table("plugins", pluginCRIRuntime, "containerd", "runtimes", "runc", "options")
	w.kv("SystemdCgroup", false)

	w.table("plugins", pluginCRIRuntime, "cni")
	w.kv("bin_dirs", []string{o.CNIBinDir})
	w.kv("conf_dir", o.CNIConfDir)
	w.kv("max_conf_num", 1)

	w.table("plugins", pluginCRIImages)
	w.kv("snapshotter", DefaultSnapshotter)
	w.kv("discard_unpacked_layers", false)

	w.table("plugins", pluginCRIImages, "pinned_images")
	w.kv("sandbox", o.SandboxImage)

	w.table("plugins", pluginCRIImages, "registry")
	w.kv("config_path", o.RegistryConfigDir)
	return []byte(w.String()), nil
}

// ContainerdService is the supervisor service that runs containerd; it is ready when its socket
// exists.
func ContainerdService(o Options) services.Service {
	o = o.withDefaults()
	return services.Service{
		Name:      ServiceContainerd,
		Path:      ContainerdPath,
		Args:      []string{"--config", contract.ContainerdConfigPath},
		Env:       proxyEnv(o),
		ReadyPath: contract.ContainerdSocket,
		Restart:   services.RestartAlways,
	}
}

func proxyEnv(o Options) map[string]string {
	env := map[string]string{}
	set := func(name, v string) {
		if v != "" {
			env[name] = v
			env[strings.ToLower(name)] = v
		}
	}
	set("HTTP_PROXY", o.HTTPProxy)
	set("HTTPS_PROXY", o.HTTPSProxy)
	set("NO_PROXY", o.NoProxy)
	if len(env) == 0 {
		return nil
	}
	return env
}

// importScript imports every archive of a directory into the CRI namespace, concurrently. Run
// by /bin/sh with the directory as $1.
const importScript = `set -eu
n=0 pids=
for f in "$1"/*.tar; do
	[ -e "$f" ] || continue
	echo "importing $f"
	` + CtrPath + ` --address ` + contract.ContainerdSocket + ` --namespace ` + ImagesNamespace + ` images import --all-platforms "$f" &
	pids="$pids $!"
	n=$((n+1))
done
failed=0
for p in $pids; do wait "$p" || failed=$((failed+1)); done
if [ "$failed" -ne 0 ]; then echo "$failed of $n image archive(s) in $1 failed to import" >&2; exit 1; fi
echo "imported $n image archive(s) from $1"
`

// ImportImagesService is a oneshot service that imports the boot images (ImagesDir/boot/*.tar:
// pause and the control-plane components) into containerd's k8s.io namespace once per node
// volume: its done marker is keyed by the archives' names and sizes, so a node started from a
// new node image (other archives) imports again. The kubelet comes after it.
func ImportImagesService(o Options) services.Service {
	o = o.withDefaults()
	dir := path.Join(o.ImagesDir, contract.BootImagesSubdir)
	return importService(ServiceImportImages, dir, ImportDoneMarker)
}

// ImportAddonImagesService imports the other preloaded archives (ImagesDir/*.tar) the same way,
// alongside the kubelet's start.
func ImportAddonImagesService(o Options) services.Service {
	o = o.withDefaults()
	return importService(ServiceImportAddonImages, o.ImagesDir, ImportAddonsDoneMarker)
}

func importService(name, dir, marker string) services.Service {
	return services.Service{
		Name:       name,
		Path:       "/bin/sh",
		Args:       []string{"-c", importScript, "kubeforge-" + name, dir},
		After:      []string{ServiceContainerd},
		Oneshot:    true,
		DoneMarker: marker,
		DoneKey:    path.Join(dir, "*.tar"),
		Restart:    services.RestartOnFailure,
	}
}

// Services returns the runtime's services (containerd, then the image imports), for the host to
// combine with the kubelet's (which should come After ServiceContainerd and ServiceImportImages).
func Services(o Options) []services.Service {
	return []services.Service{ContainerdService(o), ImportImagesService(o), ImportAddonImagesService(o)}
}

// tomlWriter emits the small subset of TOML the config needs, in a fixed order.
type tomlWriter struct{ b strings.Builder }

func (w *tomlWriter) String() string { return w.b.String() }

func (w *tomlWriter) comment(s string) { w.b.WriteString("# " + s + "\n") }

func (w *tomlWriter) table(keys ...string) {
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = tomlKey(k)
	}
	w.b.WriteString("\n[" + strings.Join(parts, ".") + "]\n")
}

func (w *tomlWriter) kv(key string, v any) {
	w.b.WriteString(tomlKey(key) + " = " + tomlValue(v) + "\n")
}

var bareKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func tomlKey(k string) string {
	if bareKey.MatchString(k) {
		return k
	}
	return tomlString(k)
}

func tomlValue(v any) string {
	switch x := v.(type) {
	case string:
		return tomlString(x)
	case bool:
		return fmt.Sprint(x)
	case int:
		return fmt.Sprint(x)
	case []string:
		q := make([]string, len(x))
		for i, s := range x {
			q[i] = tomlString(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	case map[string]string:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		q := make([]string, len(keys))
		for i, k := range keys {
			q[i] = tomlKey(k) + " = " + tomlString(x[k])
		}
		return "{ " + strings.Join(q, ", ") + " }"
	default:
		panic(fmt.Sprintf("tomlValue: unsupported %T", v))
	}
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\f':
			b.WriteString(`\f`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\u%04X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// RegistryMirror is the local registry as the nodes' containerd reaches it: at Addr on the
// cluster's network, for images named HostName/... (what the host pushes to, e.g.
// "localhost:5001") and Alias/... (its name on the network, "kubeforge-registry:5000").
type RegistryMirror struct {
	Addr            netip.AddrPort
	HostName, Alias string
}

// RegistryHosts renders containerd's hosts.toml of each name of the mirror, by path under dir
// (containerd's config_path, DefaultRegistryConfigDir when empty): plain HTTP to the registry's
// address, for pulls and tag resolution. containerd reads these files at every pull: they take
// effect without a restart.
func RegistryHosts(dir string, m RegistryMirror) (map[string][]byte, error) {
	if dir == "" {
		dir = DefaultRegistryConfigDir
	}
	if !m.Addr.IsValid() || m.Addr.Port() == 0 {
		return nil, fmt.Errorf("registry mirror: bad address %v", m.Addr)
	}
	url := "http://" + m.Addr.String()
	body := []byte(fmt.Sprintf(`# kubeforge's local registry (kubeforge registry list)
server = %q

[host.%q]
  capabilities = ["pull", "resolve"]
`, url, url))
	out := map[string][]byte{}
	for _, name := range []string{m.HostName, m.Alias} {
		if name == "" {
			continue
		}
		if strings.ContainsAny(name, "/ \t\n\"'") || name == "." || name == ".." {
			return nil, fmt.Errorf("registry mirror: bad host name %q", name)
		}
		out[path.Join(dir, name, "hosts.toml")] = body
	}
	return out, nil
}
