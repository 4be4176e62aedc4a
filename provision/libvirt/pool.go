package libvirt

import (
	"context"
	"fmt"
	"os"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"kubeforge.dev/kubeforge/images"
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
func (d *Driver) ensureImageVolumes(ctx context.Context, l *golibvirt.Libvirt, pool golibvirt.StoragePool, im images.VMImage) (imageVolumes, error) {
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
