#!/bin/sh
# ensure-libvirt.sh: make sure a local libvirt daemon answers and the VM tier's host tools are
# present. On a machine without them (CI: Debian, root, no systemd) it installs libvirt, qemu
# (software emulation is enough), qemu-img, dnsmasq (libvirt's NAT networks need it) and the
# OpenSSH server and client (the remote-hypervisor test runs an sshd on 127.0.0.1), then starts
# virtlogd and libvirtd in the background. It never touches a daemon that already answers.
set -eu

need_pkgs=""
command -v libvirtd >/dev/null 2>&1 || need_pkgs="$need_pkgs libvirt-daemon-system"
command -v qemu-system-x86_64 >/dev/null 2>&1 || need_pkgs="$need_pkgs qemu-system-x86"
command -v qemu-img >/dev/null 2>&1 || need_pkgs="$need_pkgs qemu-utils"
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || need_pkgs="$need_pkgs dnsmasq-base"
[ -x /usr/sbin/sshd ] || need_pkgs="$need_pkgs openssh-server"
command -v ssh >/dev/null 2>&1 || need_pkgs="$need_pkgs openssh-client"
command -v mkfs.ext4 >/dev/null 2>&1 || need_pkgs="$need_pkgs e2fsprogs"
command -v debootstrap >/dev/null 2>&1 || need_pkgs="$need_pkgs debootstrap"

if [ -n "$need_pkgs" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "ensure-libvirt: missing$need_pkgs; install them (as root: apt-get install -y$need_pkgs)" >&2
		exit 3
	fi
	echo "ensure-libvirt: installing$need_pkgs" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $need_pkgs >/dev/null
fi

if virsh -c qemu:///system version >/dev/null 2>&1; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "ensure-libvirt: libvirt is not reachable; start it (sudo systemctl start libvirtd) or add yourself to the libvirt group" >&2
	exit 3
fi
echo "ensure-libvirt: starting virtlogd and libvirtd" >&2
pgrep -x virtlogd >/dev/null 2>&1 || virtlogd -d
pgrep -x libvirtd >/dev/null 2>&1 || libvirtd -d
i=0
until virsh -c qemu:///system version >/dev/null 2>&1; do
	i=$((i + 1))
	if [ $i -gt 60 ]; then
		echo "ensure-libvirt: libvirtd did not answer within 30s" >&2
		exit 3
	fi
	sleep 0.5
done
