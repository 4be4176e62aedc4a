// Package vmimage is the format of a VM node image as the image builder (images) writes it and
// the libvirt driver (provision/libvirt) reads it: a directory holding a qcow2 root disk, the
// kernel and initramfs that boot it, and their description (File).
package vmimage

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"kubeforge.dev/kubeforge/contract"
	"kubeforge.dev/kubeforge/internal/kferr"
)

// DiskSize is the size of a VM node's root file system (the qcow2 file grows as it is used).
const DiskSize = 8 << 30

// Image is a built VM node image: a bootable root disk and the kernel and initramfs that boot it
// directly (no bootloader in the disk), in one cache directory.
type Image struct {
	// Key names the image: the same inputs, the same key.
	Key string `json:"key"`
	// Dir holds the files below.
	Dir    string `json:"dir"`
	Disk   string `json:"disk"`   // qcow2, an ext4 file system without partitions (root=/dev/vda)
	Kernel string `json:"kernel"` // vmlinuz
	Initrd string `json:"initrd"` // initrd.img
	// KernelVersion is the release of Kernel (uname -r in the node).
	KernelVersion string `json:"kernelVersion"`
	// Info is the node image's image-info.json.
	Info contract.ImageInfo `json:"info"`
}

// File is the description of a built VM image inside its directory.
const File = "vm-image.json"

// Load reads the description of a built VM image directory.
func Load(dir string) (Image, error) {
	b, err := os.ReadFile(filepath.Join(dir, File))
	if err != nil {
		return Image{}, kferr.Usage("%s is not a kubeforge VM image (build one with `kubeforge image build --kind vm`): %v", dir, err)
	}
	var im Image
	if err := json.Unmarshal(b, &im); err != nil {
		return Image{}, fmt.Errorf("parsing %s: %w", filepath.Join(dir, File), err)
	}
	im.Dir = dir
	im.Disk, im.Kernel, im.Initrd = filepath.Join(dir, "disk.qcow2"), filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd.img")
	return im, nil
}
