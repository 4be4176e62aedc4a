package libvirt

import (
	"context"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"kubeforge.dev/kubeforge/contract/vmimage"
)

// ensurePool returns kubeforge's storage pool, defining, building and starting it when needed.
func (d *Driver) ensurePool(l *golibvirt.Libvirt) (golibvirt.StoragePool, error) {
	pool, err := l.StoragePoolLookupByName(PoolName)
	if notFound(err) {
		x, merr := (&libvirtxml.StoragePool{Type: "dir", Name: PoolName,
			Target: &libvirtxml.StoragePoolTarget{Path: PoolPath}}).Marshal()
		if merr != nil {
			return pool, merr
		}
		pool, err = l.StoragePoolDefineXML(x, 0)
		if err != nil {
			// Another kubeforge may have defined it meanwhile.
			if p, lerr := l.StoragePoolLookupByName(PoolName); lerr == nil {
				pool, err = p, nil
			} else {
				return pool, fmt.Errorf("defining storage pool %s: %w", PoolName, err)
			}
		} else if err := l.StoragePoolBuild(pool, 0); err != nil {
			return pool, fmt.Errorf("building storage pool %s (%s): %w", PoolName, PoolPath, err)
		}
		_ = l.StoragePoolSetAutostart(pool, 1)
	} else if err != nil {
		return pool, fmt.Errorf("looking up storage pool %s: %w", PoolName, err)
	}
	if active, err := l.StoragePoolIsActive(pool); err != nil {
		return pool, err
	} else if active != 1 {
		if err := l.StoragePoolCreate(pool, 0); err != nil {
			if active, _ := l.StoragePoolIsActive(pool); active != 1 {
				return pool, fmt.Errorf("starting storage pool %s: %w", PoolName, err)
			}
		}
	}
	return pool, nil
}

// imageVolumes are the hypervisor's paths of a VM image's files.
type imageVolumes struct{ disk, kernel, initrd string }

// ensureImageVolumes uploads the VM image's disk, kernel and initramfs into the pool unless a
// complete upload is there (a marker volume is written last, so a cut-short upload is redone).
func (d *Driver) ensureImageVolumes(ctx context.Context, l *golibvirt.Libvirt, pool golibvirt.StoragePool, im vmimage.Image) (imageVolumes, error) {
	d.imageMu.Lock()
	defer d.imageMu.Unlock()
	diskName, kernelName, initrdName, doneName := imageVolumeNames(im.Key)
	files := []struct{ name, src string }{{diskName, im.Disk}, {kernelName, im.Kernel}, {initrdName, im.Initrd}}
	if _, err := l.StorageVolLookupByName(pool, doneName); err != nil {
		if !notFound(err) {
			return imageVolumes{}, err
		}
		step := d.opts.Log.Step("Uploading VM image " + im.Key + " to libvirt's pool " + PoolName)
		for _, f := range append(files, struct{ name, src string }{doneName, ""}) {
			if err := deleteVolume(l, pool, f.name); err != nil {
				return imageVolumes{}, step.Done(err)
			}
		}
		for _, f := range files {
			if err := uploadFile(ctx, l, pool, f.name, f.src); err != nil {
				return imageVolumes{}, step.Done(err)
			}
		}
		if err := uploadBytes(l, pool, doneName, []byte(im.Key+"\n")); err != nil {
			return imageVolumes{}, step.Done(err)
		}
		step.Done(nil)
	}
	var paths []string
	for _, f := range files {
		v, err := l.StorageVolLookupByName(pool, f.name)
		if err != nil {
			return imageVolumes{}, fmt.Errorf("volume %s: %w", f.name, err)
		}
		p, err := l.StorageVolGetPath(v)
		if err != nil {
			return imageVolumes{}, err
		}
		paths = append(paths, p)
	}
	return imageVolumes{disk: paths[0], kernel: paths[1], initrd: paths[2]}, nil
}

// createRawVolume makes a raw volume of size bytes (rounded up to 1 MiB).
func createRawVolume(l *golibvirt.Libvirt, pool golibvirt.StoragePool, name string, size int64) (golibvirt.StorageVol, error) {
	capacity := uint64((size + 1<<20 - 1) &^ (1<<20 - 1))
	if capacity == 0 {
		capacity = 1 << 20
	}
	x, err := (&libvirtxml.StorageVolume{
		Name:     name,
		Capacity: &libvirtxml.StorageVolumeSize{Value: capacity, Unit: "bytes"},
		Target:   &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: "raw"}},
	}).Marshal()
	if err != nil {
		return golibvirt.StorageVol{}, err
	}
	v, err := l.StorageVolCreateXML(pool, x, 0)
	if err != nil {
		return v, fmt.Errorf("creating volume %s: %w", name, err)
	}
	return v, nil
}

// uploadFile copies a local file into a new raw volume (the bytes as they are: a qcow2 file stays
// one).
func uploadFile(ctx context.Context, l *golibvirt.Libvirt, pool golibvirt.StoragePool, name, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	v, err := createRawVolume(l, pool, name, st.Size())
	if err != nil {
		return err
	}
	if err := l.StorageVolUpload(v, f, 0, uint64(st.Size()), 0); err != nil {
		_ = l.StorageVolDelete(v, 0)
		return fmt.Errorf("uploading %s to volume %s: %w", src, name, err)
	}
	return ctx.Err()
}

// uploadBytes writes b into a new raw volume.
func uploadBytes(l *golibvirt.Libvirt, pool golibvirt.StoragePool, name string, b []byte) error {
	v, err := createRawVolume(l, pool, name, int64(len(b)))
	if err != nil {
		return err
	}
	if err := l.StorageVolUpload(v, bytesReader(b), 0, uint64(len(b)), 0); err != nil {
		_ = l.StorageVolDelete(v, 0)
		return fmt.Errorf("uploading volume %s: %w", name, err)
	}
	return nil
}

// poolVolume is a volume of kubeforge's pool: its name, path and the path of its backing file.
type poolVolume struct{ name, path, backing string }

// imageKeyPattern is a VM image key (vmimage.Image.Key): "<Kubernetes version>-<12 hex>".
var imageKeyPattern = regexp.MustCompile(`^v[0-9][0-9A-Za-z._+-]*-[0-9a-f]{12}$`)

// imageKey returns the VM image key of an uploaded image's volume (imageVolumeNames); a node's
// volume of a cluster named kubeforge-node-... is not one.
func imageKey(volume string) (string, bool) {
	rest, ok := strings.CutPrefix(volume, "kubeforge-node-")
	if !ok {
		return "", false
	}
	for _, ext := range []string{".qcow2", ".vmlinuz", ".initrd", ".complete"} {
		if key, ok := strings.CutSuffix(rest, ext); ok && imageKeyPattern.MatchString(key) {
			return key, true
		}
	}
	return "", false
}

// staleImageVolumes picks the uploaded images to remove: every image not in keep none of whose
// files is in used (the paths domains boot or run from, and the backing files of volumes). Each
// image's completion marker comes first, so an interrupted removal is uploaded again.
func staleImageVolumes(vols []poolVolume, used map[string]bool, keep []string) []string {
	byKey := map[string][]poolVolume{}
	for _, v := range vols {
		if key, ok := imageKey(v.name); ok && !slices.Contains(keep, key) {
			byKey[key] = append(byKey[key], v)
		}
	}
	var out []string
	for _, key := range slices.Sorted(maps.Keys(byKey)) {
		vs := byKey[key]
		if slices.ContainsFunc(vs, func(v poolVolume) bool { return used[v.path] }) {
			continue
		}
		slices.SortFunc(vs, func(a, b poolVolume) int {
			ac, bc := strings.HasSuffix(a.name, ".complete"), strings.HasSuffix(b.name, ".complete")
			if ac != bc {
				if ac {
					return -1
				}
				return 1
			}
			return strings.Compare(a.name, b.name)
		})
		for _, v := range vs {
			out = append(out, v.name)
		}
	}
	return out
}

// poolVolumes lists the volumes of kubeforge's storage pool after a refresh (files removed behind
// libvirt's back drop out); no pool yet means no volumes.
func poolVolumes(l *golibvirt.Libvirt) (golibvirt.StoragePool, []golibvirt.StorageVol, error) {
	pool, err := l.StoragePoolLookupByName(PoolName)
	if notFound(err) {
		return pool, nil, nil
	}
	if err != nil {
		return pool, nil, fmt.Errorf("looking up storage pool %s: %w", PoolName, err)
	}
	_ = l.StoragePoolRefresh(pool, 0)
	vols, _, err := l.StoragePoolListAllVolumes(pool, 1, 0)
	if err != nil {
		return pool, nil, fmt.Errorf("listing the volumes of pool %s: %w", PoolName, err)
	}
	return pool, vols, nil
}

// PruneImages removes from kubeforge's pool the uploaded VM images other than those keyed in keep
// (vmimage.Image.Key) that no domain on the hypervisor uses, and returns the volumes removed.
// Node disks are copy-on-write over their image's disk, so an image stays while any node made
// from it exists. It must not run while a `start` from another build uses the same hypervisor:
// a node made between the scan and the removal would lose its image.
func (d *Driver) PruneImages(ctx context.Context, keep []string) ([]string, error) {
	l, err := d.lv(ctx)
	if err != nil {
		return nil, err
	}
	d.imageMu.Lock()
	defer d.imageMu.Unlock()
	pool, vols, err := poolVolumes(l)
	if err != nil {
		return nil, err
	}
	used := map[string]bool{}
	var pvs []poolVolume
	for _, v := range vols {
		pv := poolVolume{name: v.Name}
		if pv.path, err = l.StorageVolGetPath(v); err != nil {
			if notFound(err) {
				continue // removed meanwhile
			}
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		x, err := l.StorageVolGetXMLDesc(v, 0)
		if err != nil {
			if notFound(err) {
				continue
			}
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		var vx libvirtxml.StorageVolume
		if err := vx.Unmarshal(x); err == nil && vx.BackingStore != nil {
			pv.backing = vx.BackingStore.Path
			used[pv.backing] = true
		}
		pvs = append(pvs, pv)
	}
	doms, _, err := l.ConnectListAllDomains(1, 0)
	if err != nil {
		return nil, fmt.Errorf("listing libvirt domains: %w", err)
	}
	for _, dom := range doms {
		x, err := l.DomainGetXMLDesc(dom, 0)
		if err != nil {
			if notFound(err) {
				continue
			}
			return nil, err
		}
		var dx libvirtxml.Domain
		if err := dx.Unmarshal(x); err != nil {
			return nil, fmt.Errorf("domain %s: %w", dom.Name, err)
		}
		if dx.OS != nil {
			used[dx.OS.Kernel], used[dx.OS.Initrd] = true, true
		}
		if dx.Devices != nil {
			for _, disk := range dx.Devices.Disks {
				if disk.Source != nil && disk.Source.File != nil {
					used[disk.Source.File.File] = true
				}
			}
		}
	}
	var removed []string
	for _, name := range staleImageVolumes(pvs, used, keep) {
		if err := deleteVolume(l, pool, name); err != nil {
			return removed, err
		}
		removed = append(removed, name)
	}
	return removed, nil
}
