package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"go.yaml.in/yaml/v3"

	"kubeforge.dev/kubeforge/images"
	"kubeforge.dev/kubeforge/images/bundle"
	"kubeforge.dev/kubeforge/internal/config"
	"kubeforge.dev/kubeforge/internal/kferr"
	"kubeforge.dev/kubeforge/internal/spec"
	"kubeforge.dev/kubeforge/internal/versions"
)

// BundleSaveOptions say what `kubeforge bundle save` puts into a bundle.
type BundleSaveOptions struct {
	// File is the bundle to write (replaced atomically when it exists).
	File string
	// Spec is the cluster the bundle is for (the config file's, or the defaults): its
	// KubernetesVersion (exact), Image (a node image to take instead of building one), Name,
	// Addons and Registry (their program images go in when they are built here).
	Spec spec.Cluster
	// Config is the config file's text, nil without --config.
	Config []byte
	// Images are workload images from the host's Docker.
	Images []string
}

// BundleSaved is the result of SaveBundle.
type BundleSaved struct {
	File              string   `json:"file"`
	Size              int64    `json:"size"`
	KubernetesVersion string   `json:"kubernetesVersion"`
	NodeImage         string   `json:"nodeImage"`
	Images            []string `json:"images"`
	Programs          []string `json:"programs"`
	// MissingPrograms are program images the config needs that are not built here: a machine
	// loading the bundle needs the source tree, Go and the network for them.
	MissingPrograms []string `json:"missingPrograms"`
	Config          bool     `json:"config"`
	Seconds         float64  `json:"seconds"`
}

// BundleLoaded is the result of LoadBundle.
type BundleLoaded struct {
	File              string   `json:"file"`
	Name              string   `json:"name"`
	KubernetesVersion string   `json:"kubernetesVersion"`
	NodeImage         string   `json:"nodeImage"`
	Images            []string `json:"images"`
	Programs          []string `json:"programs"`
	// Config is the cluster config written for `kubeforge start --config`.
	Config string `json:"config"`
	// ClusterName is the name start gives the cluster.
	ClusterName string `json:"clusterName"`
	// Next are the commands to run next, in order.
	Next    []string `json:"next"`
	Seconds float64  `json:"seconds"`
}

// BundlesDir is where `bundle load` writes each bundle's config: $KUBEFORGE_HOME/bundles.d (not
// a DNS label, so never a cluster's directory).
func (p *Provider) BundlesDir() string { return filepath.Join(string(p.home), "bundles.d") }

var nonLabel = regexp.MustCompile(`[^a-z0-9-]+`)

// bundleName makes a DNS label of a bundle file's base name.
func bundleName(file string) string {
	b := strings.ToLower(filepath.Base(file))
	if i := strings.IndexByte(b, '.'); i > 0 {
		b = b[:i]
	}
	b = strings.Trim(nonLabel.ReplaceAllString(b, "-"), "-")
	if len(b) > 40 {
		b = strings.Trim(b[:40], "-")
	}
	if b == "" {
		return "bundle"
	}
	return b
}

// bundlePrograms are the program images a cluster of spec s runs: its add-ons' and the local
// registry's.
func bundlePrograms(s spec.Cluster) ([]images.ProgramImage, error) {
	as, err := findAddons(s.Addons)
	if err != nil {
		return nil, err
	}
	var out []images.ProgramImage
	for _, a := range as {
		out = append(out, a.images...)
	}
	if s.Registry {
		out = append(out, registryImage())
	}
	return out, nil
}

// SaveBundle writes one file holding the node image of o.Spec's Kubernetes version (built when
// missing, as start would), the workload images o.Images from the host's Docker, the program
// images the config's add-ons and registry run when they are built here, and the config. Every
// image is checked before anything is written; the file appears only complete.
func (p *Provider) SaveBundle(ctx context.Context, o BundleSaveOptions) (BundleSaved, error) {
	t0 := time.Now()
	res := BundleSaved{File: o.File, KubernetesVersion: o.Spec.KubernetesVersion, Images: []string{}, Programs: []string{}, MissingPrograms: []string{}}
	if o.Spec.Driver != "" && o.Spec.Driver != spec.DriverDocker {
		return res, kferr.Usage("a bundle holds a Docker node image: VM clusters (--driver %s) cannot use one", o.Spec.Driver)
	}
	d, err := p.dockerDriver(ctx)
	if err != nil {
		return res, err
	}
	cli := d.Client()
	ids := map[string]string{}
	for _, r := range o.Images {
		insp, err := cli.ImageInspect(ctx, r)
		if client.IsErrNotFound(err) {
			return res, kferr.Usage("image %s is not in the host's Docker: build it (`docker build -t %s .`) or pull it (`docker pull %s`) first", r, r, r)
		}
		if err != nil {
			return res, fmt.Errorf("inspecting image %s: %w", r, err)
		}
		ids[r] = insp.ID
	}
	progs, err := bundlePrograms(o.Spec)
	if err != nil {
		return res, err
	}
	dir := filepath.Dir(o.File)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return res, kferr.Usage("cannot write %s: directory %s does not exist", o.File, dir)
	}

	node, err := dockerNodeImage(ctx, p, o.Spec)
	if err != nil {
		return res, err
	}
	insp, err := cli.ImageInspect(ctx, node)
	if err != nil {
		return res, fmt.Errorf("inspecting node image %s: %w", node, err)
	}
	if insp.Config != nil {
		if v := insp.Config.Labels[images.LabelKubernetesVersion]; v != "" && v != o.Spec.KubernetesVersion {
			return res, kferr.Usage("node image %s is of Kubernetes %s, not %s: name the version with --kubernetes-version or kubernetesVersion: in the config", node, v, o.Spec.KubernetesVersion)
		}
	}
	res.NodeImage = node

	stage, err := os.MkdirTemp(dir, ".kubeforge-bundle-")
	if err != nil {
		return res, kferr.Environment("save the bundle into a writable directory with room for it twice (its members are staged next to it)", "staging the bundle: %v", err)
	}
	defer os.RemoveAll(stage)
	st := &bundle.Stager{Dir: stage}
	m := bundle.Manifest{Created: time.Now().UTC().Truncate(time.Second), Name: bundleName(o.File), KubernetesVersion: o.Spec.KubernetesVersion}
	if o.Spec.Name != spec.DefaultName {
		m.ClusterName = o.Spec.Name
	}

	save := func(what, ref, member string) error {
		step := p.log.Step(fmt.Sprintf("Saving %s %s", what, ref))
		mb, err := st.Add(member, func(w io.Writer) error {
			rc, err := cli.ImageSave(ctx, []string{ref})
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.Copy(w, rc)
			return err
		})
		if err != nil {
			return step.Done(fmt.Errorf("docker save %s: %w", ref, err))
		}
		step.Done(nil)
		p.log.Debugf("%s: %.1f MB", member, float64(mb.Size)/1e6)
		return nil
	}
	if err := save("node image", node, "node.tar"); err != nil {
		return res, err
	}
	m.NodeImage = bundle.Image{Ref: node, ID: insp.ID, Member: "node.tar"}
	for i, r := range o.Images {
		member := fmt.Sprintf("image-%d.tar", i+1)
		if err := save("image", r, member); err != nil {
			return res, err
		}
		m.Images = append(m.Images, bundle.Image{Ref: r, ID: ids[r], Member: member})
		res.Images = append(res.Images, r)
	}

	artifacts, aerr := p.ArtifactsDir()
	for _, im := range progs {
		archive, id, ok := "", "", false
		if aerr == nil {
			if _, err := os.Stat(images.ProgramBinary(artifacts, im)); err == nil {
				if archive, id, err = images.EnsureProgramImage(ctx, artifacts, im, p.log); err != nil {
					return res, err
				}
				ok = true
			}
		}
		if !ok {
			archive, id, ok = images.BundledProgramImage(im)
		}
		if !ok {
			p.log.Warnf("image %s is not built here, so it is not in the bundle: a machine loading it needs the source tree, Go and the network to enable it (build it first: make bin/programs/%s-%s)", im.Ref(), im.Program, im.Version)
			res.MissingPrograms = append(res.MissingPrograms, im.Ref())
			continue
		}
		member := "program-" + im.Program + ".tar"
		step := p.log.Step("Adding image " + im.Ref())
		_, err := st.Add(member, func(w io.Writer) error {
			f, err := os.Open(archive)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(w, f)
			return err
		})
		if step.Done(err) != nil {
			return res, err
		}
		m.Programs = append(m.Programs, bundle.Program{Program: im.Program, Version: im.Version, Ref: im.Ref(), ID: id, Member: member})
		res.Programs = append(res.Programs, im.Ref())
	}
	if o.Config != nil {
		if _, err := st.Add("cluster.yaml", func(w io.Writer) error { _, err := w.Write(o.Config); return err }); err != nil {
			return res, err
		}
		m.Config = "cluster.yaml"
		res.Config = true
	}

	step := p.log.Step("Writing " + o.File)
	tmp, err := os.CreateTemp(dir, ".kubeforge-bundle-*.tmp")
	if err != nil {
		return res, step.Done(err)
	}
	defer os.Remove(tmp.Name())
	werr := st.Write(tmp, m)
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), o.File)
	}
	if werr != nil {
		return res, step.Done(kferr.Environment("free some disk space where the bundle goes (it needs room for the bundle twice while saving)", "writing %s: %v", o.File, werr))
	}
	step.Done(nil)
	if fi, err := os.Stat(o.File); err == nil {
		res.Size = fi.Size()
	}
	res.Seconds = time.Since(t0).Seconds()
	return res, nil
}

// LoadBundle makes what a bundle holds available to `start` on this machine, with no network
// and no build: its node image and workload images into the host's Docker, its program images
// into the cache, its config (with the node image and version pinned) into BundlesDir. The
// whole file is checked (manifest, every member's size and sha256) before anything changes,
// and a failure afterwards undoes what this load did.
func (p *Provider) LoadBundle(ctx context.Context, file string) (res BundleLoaded, err error) {
	t0 := time.Now()
	res = BundleLoaded{File: file, Images: []string{}, Programs: []string{}}
	r, err := bundle.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return res, kferr.Usage("there is no file %s: name the bundle `kubeforge bundle save` wrote", file)
	}
	var de *bundle.DamagedError
	if errors.As(err, &de) {
		return res, kferr.WithHint(err, kferr.ExitUsage, "copy the bundle again from where it was saved (`kubeforge bundle save` writes it)")
	}
	if err != nil {
		return res, err
	}
	m := r.Manifest
	res.KubernetesVersion, res.NodeImage = m.KubernetesVersion, m.NodeImage.Ref
	if rel, err := versions.Resolve(m.KubernetesVersion); err != nil || rel.Kubernetes != m.KubernetesVersion {
		return res, kferr.Usage("%s is for Kubernetes %s, which this kubeforge does not run (it runs %s): load it with the kubeforge it was saved with, or save it again with this one",
			file, m.KubernetesVersion, strings.Join(versions.Names(), ", "))
	}
	name := m.Name
	if bundleName(name) != name {
		name = "bundle"
	}
	res.Name = name
	d, err := p.dockerDriver(ctx)
	if err != nil {
		return res, err
	}
	cli := d.Client()

	step := p.log.Step(fmt.Sprintf("Checking %s (%.0f MB, %d members)", file, float64(r.Size)/1e6, len(m.Members)))
	var src []byte
	err = r.Each(func(mb bundle.Member, content io.Reader) error {
		if m.Config == "" || mb.Name != m.Config {
			return nil
		}
		b, err := io.ReadAll(io.LimitReader(content, config.MaxSize+1))
		src = b
		return err
	})
	if err != nil {
		if errors.As(err, &de) {
			err = kferr.WithHint(err, kferr.ExitUsage, "copy the bundle again from where it was saved (`kubeforge bundle save` writes it)")
		}
		return res, step.Done(err)
	}
	step.Done(nil)
	cfgText, clusterName, err := bundleConfig(file, src, m)
	if err != nil {
		return res, err
	}
	res.ClusterName = clusterName

	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	byMember := map[string]func(io.Reader) error{}
	loadImage := func(what string, im bundle.Image) {
		byMember[im.Member] = func(content io.Reader) error {
			before, berr := cli.ImageInspect(ctx, im.Ref)
			if berr == nil && before.ID == im.ID {
				p.log.Infof(" • %s %s is already in Docker", what, im.Ref)
				return nil
			}
			step := p.log.Step(fmt.Sprintf("Loading %s %s into Docker", what, im.Ref))
			if berr == nil {
				oldID := before.ID
				undo = append(undo, func() { _ = cli.ImageTag(context.Background(), oldID, im.Ref) })
			} else {
				undo = append(undo, func() {
					_, _ = cli.ImageRemove(context.Background(), im.Ref, image.RemoveOptions{PruneChildren: true})
				})
			}
			return step.Done(d.LoadImage(ctx, im.Ref, im.ID, content))
		}
	}
	loadImage("node image", m.NodeImage)
	for _, im := range m.Images {
		loadImage("image", im)
		res.Images = append(res.Images, im.Ref)
	}
	for _, pr := range m.Programs {
		byMember[pr.Member] = func(content io.Reader) error {
			step := p.log.Step("Caching image " + pr.Ref)
			remove, err := images.SaveBundledProgram(pr.Program, pr.Version, pr.ID, content)
			if err == nil {
				undo = append(undo, remove)
			}
			return step.Done(err)
		}
		res.Programs = append(res.Programs, pr.Ref)
	}
	err = r.Each(func(mb bundle.Member, content io.Reader) error {
		if fn := byMember[mb.Name]; fn != nil {
			return fn(content)
		}
		return nil
	})
	if err != nil {
		if errors.As(err, &de) {
			err = kferr.WithHint(err, kferr.ExitUsage, "the file changed while it was loaded: copy it again and load it again")
		}
		return res, err
	}

	cfgDir := filepath.Join(p.BundlesDir(), name)
	res.Config = filepath.Join(cfgDir, "cluster.yaml")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		return res, kferr.Environment("set KUBEFORGE_HOME to a writable directory", "writing the bundle's config: %v", err)
	}
	if err := os.WriteFile(res.Config, cfgText, 0o644); err != nil {
		return res, kferr.Environment("set KUBEFORGE_HOME to a writable directory", "writing the bundle's config: %v", err)
	}
	res.Next = []string{"kubeforge start --config " + res.Config}
	if len(res.Images) > 0 {
		cmd := "kubeforge image load"
		if clusterName != spec.DefaultName {
			cmd += " --name " + clusterName
		}
		res.Next = append(res.Next, cmd+" "+strings.Join(res.Images, " "))
	}
	res.Seconds = time.Since(t0).Seconds()
	return res, nil
}

// bundleConfig is the config `bundle load` writes: the bundle's own (or an empty one) with
// kubernetesVersion and image set to the bundle's, checked as `start --config` would read it;
// and the cluster name it gives.
func bundleConfig(file string, src []byte, m bundle.Manifest) ([]byte, string, error) {
	out, err := pinConfig(src, m)
	if err != nil {
		return nil, "", kferr.Usage("the config in %s: %v", file, err)
	}
	f, err := config.Parse(out, "cluster.yaml")
	if err != nil {
		return nil, "", kferr.Usage("the config in %s: %v", file, err)
	}
	s, err := f.ToSpec()
	if err != nil {
		return nil, "", kferr.Usage("the config in %s: %v", file, err)
	}
	return out, s.Name, nil
}

// pinConfig sets kubernetesVersion and image in config text src (a new file when src is empty),
// keeping its other settings and comments.
func pinConfig(src []byte, m bundle.Manifest) ([]byte, error) {
	header := fmt.Sprintf("# Written by `kubeforge bundle load` from bundle %q (saved %s):\n# kubeforge start --config THIS_FILE uses the node image it loaded into Docker.\n",
		m.Name, m.Created.Format(time.RFC3339))
	if len(bytes.TrimSpace(src)) == 0 {
		src = []byte("apiVersion: " + config.APIVersion + "\nkind: " + config.Kind + "\n")
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("not a mapping")
	}
	root := doc.Content[0]
	set := func(key, value string) {
		for i := 0; i+1 < len(root.Content); i += 2 {
			if root.Content[i].Value == key {
				root.Content[i+1] = &yaml.Node{Kind: yaml.ScalarNode, Value: value}
				return
			}
		}
		root.Content = append(root.Content,
			&yaml.Node{Kind: yaml.ScalarNode, Value: key},
			&yaml.Node{Kind: yaml.ScalarNode, Value: value})
	}
	set("kubernetesVersion", m.KubernetesVersion)
	set("image", m.NodeImage.Ref)
	var buf bytes.Buffer
	buf.WriteString(header)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), enc.Close()
}
