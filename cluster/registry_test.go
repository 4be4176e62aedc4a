package cluster

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"kubeforge.dev/kubeforge/images/oci"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
)

// images/images.mk builds the registry's version, into the binary ProgramImage names.
func TestRegistryVersionMatchesMakefile(t *testing.T) {
	out, err := exec.Command("make", "-s", "--no-print-directory", "-C", "..", "print-program-versions").CombinedOutput()
	if err != nil {
		t.Fatalf("make print-program-versions: %v\n%s", err, out)
	}
	im := registryImage()
	if !strings.Contains(string(out), im.Program+" "+im.Version+"\n") {
		t.Errorf("images.mk builds %q; the registry is %s %s", out, im.Program, im.Version)
	}
	if im.Ref() != "kubeforge.local/registry:"+RegistryVersion {
		t.Errorf("registry image %s", im.Ref())
	}
}

// The registry's image: the program, serving the config the image holds, which stores on the
// data volume's directory, listens on :5000 and allows deletes.
func TestRegistryImage(t *testing.T) {
	s := registryImage().Spec("/bin/registry-v3.0.0")
	if strings.Join(s.Entrypoint, " ") != "/registry" || strings.Join(s.Cmd, " ") != "serve "+registryConfigPath {
		t.Errorf("entrypoint %q cmd %q", s.Entrypoint, s.Cmd)
	}
	if !strings.Contains(strings.Join(s.Env, " "), "OTEL_TRACES_EXPORTER=none") || !strings.Contains(strings.Join(s.Env, " "), oci.DefaultPath) {
		t.Errorf("env %q", s.Env)
	}
	var conf []byte
	for _, e := range s.Entries {
		if e.Path == registryConfigPath {
			conf = e.Data
		}
	}
	var c struct {
		Storage struct {
			Filesystem struct {
				Rootdirectory string `json:"rootdirectory"`
			} `json:"filesystem"`
			Delete struct {
				Enabled bool `json:"enabled"`
			} `json:"delete"`
		} `json:"storage"`
		HTTP struct {
			Addr string `json:"addr"`
		} `json:"http"`
	}
	if err := yaml.Unmarshal(conf, &c); err != nil {
		t.Fatal(err)
	}
	if c.Storage.Filesystem.Rootdirectory != "/var/lib/registry" || !c.Storage.Delete.Enabled || c.HTTP.Addr != ":5000" {
		t.Errorf("config %+v\n%s", c, conf)
	}
}

// --registry on a VM cluster is refused before anything is made: the registry is Docker-only.
func TestRegistryDockerOnly(t *testing.T) {
	p, err := New(Options{Home: t.TempDir(), UserKubeconfig: t.TempDir() + "/config"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := spec.Default("vm")
	c.Driver, c.Registry = spec.DriverKVM, true
	_, err = p.Create(context.Background(), c, CreateOptions{})
	if kferr.Code(err) != kferr.ExitUsage || !strings.Contains(err.Error(), "Docker-only") {
		t.Fatalf("Create(kvm, registry) = %v (code %d), want a usage error saying Docker-only", err, kferr.Code(err))
	}
}
