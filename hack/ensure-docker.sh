#!/bin/sh
# ensure-docker.sh [e2e|cluster]: make sure a Docker daemon answers and the host tools of what
# comes next are present.
#   e2e      (the default; make e2e, e2e-vm, bench) the e2e tier: debootstrap, busybox-static and
#            containernetworking-plugins too.
#   cluster  (make cluster, make image) what `kubeforge start` needs: the daemon, and debootstrap
#            for the first node image build. That build runs as root only, so another user is just
#            told when debootstrap is missing (a cached rootfs does without it).
# As root, on a machine without them (CI: Debian, no daemon running) it installs what is missing
# with apt, and starts dockerd in the background, logging to /var/log/kubeforge-dockerd.log, its
# pid in /run/kubeforge-dockerd.pid (the e2e test of a daemon restart restarts only a daemon
# started here). As another user it installs and starts nothing: it names what is missing and the
# fix, and exits 3. It never touches a daemon that already answers.
set -eu
TAG=ensure-docker
. "$(dirname "$0")/lib.sh"

mode=${1:-e2e}
case $mode in
e2e | cluster) ;;
*)
	echo "usage: $0 [e2e|cluster]" >&2
	exit 2
	;;
esac

# has CMD: CMD is on PATH or in an sbin directory (not on a non-root user's PATH on Debian).
has() {
	command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]
}
docker_answers() {
	command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

up=false
if docker_answers; then
	up=true
fi

set --
# A daemon that answers needs nothing installed (it may be remote, rootless, Docker Desktop...).
$up || { command -v docker >/dev/null 2>&1 && has dockerd; } || set -- "$@" docker.io
if ! has debootstrap; then
	if [ "$mode" = cluster ] && [ "$(id -u)" != 0 ]; then
		echo "$TAG: note: debootstrap is missing; the first node image build needs it and root (sudo apt-get install -y debootstrap, then sudo make cluster)" >&2
	else
		set -- "$@" debootstrap
	fi
fi
if [ "$mode" = e2e ]; then
	[ -x /bin/busybox ] || set -- "$@" busybox-static
	# netctl's e2e test runs the real CNI plugins on the host.
	[ -x /usr/lib/cni/bridge ] || set -- "$@" containernetworking-plugins
fi
install_missing "$@"

if $up || docker_answers; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	why=$(docker info 2>&1 >/dev/null | grep -m1 -i 'error\|denied\|cannot' || true)
	case $why in
	*"permission denied"*)
		need_root "Docker is not reachable: permission denied on its socket; add yourself to the docker group (sudo usermod -aG docker \"\$USER\", then log in again) or run as root" ;;
	*)
		need_root "Docker is not reachable${why:+ ($why)}; start it (sudo systemctl start docker), or run this as root to have it started" ;;
	esac
fi
echo "$TAG: starting dockerd" >&2
nohup dockerd >/var/log/kubeforge-dockerd.log 2>&1 &
echo $! >/run/kubeforge-dockerd.pid
wait_until dockerd /var/log/kubeforge-dockerd.log docker info
echo "$TAG: dockerd is up" >&2
