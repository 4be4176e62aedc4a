#!/bin/sh
# ensure-libvirt.sh: make sure a local libvirt daemon answers and the VM tier's host tools are
# present. On a machine without them (CI: Debian, root, no systemd) it installs libvirt, qemu
# (software emulation is enough), qemu-img, dnsmasq (libvirt's NAT networks need it) and the
# OpenSSH server and client (the remote-hypervisor test runs an sshd on 127.0.0.1), then starts
# virtlogd and libvirtd in the background. It never touches a daemon that already answers.
set -eu
TAG=ensure-libvirt
. "$(dirname "$0")/lib.sh"

set --
command -v libvirtd >/dev/null 2>&1 || set -- "$@" libvirt-daemon-system
command -v qemu-system-x86_64 >/dev/null 2>&1 || set -- "$@" qemu-system-x86
command -v qemu-img >/dev/null 2>&1 || set -- "$@" qemu-utils
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || set -- "$@" dnsmasq-base
[ -x /usr/sbin/sshd ] || set -- "$@" openssh-server
command -v ssh >/dev/null 2>&1 || set -- "$@" openssh-client
command -v mkfs.ext4 >/dev/null 2>&1 || set -- "$@" e2fsprogs
command -v debootstrap >/dev/null 2>&1 || set -- "$@" debootstrap
install_missing "$@"

if virsh -c qemu:///system version >/dev/null 2>&1; then
	exit 0
fi
need_root "libvirt is not reachable; start it (sudo systemctl start libvirtd) or add yourself to the libvirt group"
echo "$TAG: starting virtlogd and libvirtd" >&2
pgrep -x virtlogd >/dev/null 2>&1 || virtlogd -d
pgrep -x libvirtd >/dev/null 2>&1 || libvirtd -d
wait_until libvirtd "" virsh -c qemu:///system version
