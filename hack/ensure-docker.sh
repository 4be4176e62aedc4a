#!/bin/sh
# ensure-docker.sh: make sure a Docker daemon answers and the e2e tier's host tools are present.
# On a machine without them (CI: Debian, root, no daemon running) it installs docker.io,
# debootstrap, busybox-static and containernetworking-plugins with apt, and starts dockerd in the
# background, logging to /var/log/kubeforge-dockerd.log, its pid in /run/kubeforge-dockerd.pid
# (the e2e test of a daemon restart restarts only a daemon started here). It never touches a
# daemon that already answers.
set -eu
TAG=ensure-docker
. "$(dirname "$0")/lib.sh"

set --
command -v debootstrap >/dev/null 2>&1 || set -- "$@" debootstrap
[ -x /bin/busybox ] || set -- "$@" busybox-static
# netctl's e2e test runs the real CNI plugins on the host.
[ -x /usr/lib/cni/bridge ] || set -- "$@" containernetworking-plugins
{ command -v dockerd && command -v docker; } >/dev/null 2>&1 || set -- "$@" docker.io
install_missing "$@"

if docker info >/dev/null 2>&1; then
	exit 0
fi
need_root "Docker is not reachable; start it (sudo systemctl start docker) or add yourself to the docker group"
echo "$TAG: starting dockerd" >&2
nohup dockerd >/var/log/kubeforge-dockerd.log 2>&1 &
echo $! >/run/kubeforge-dockerd.pid
wait_until dockerd /var/log/kubeforge-dockerd.log docker info
echo "$TAG: dockerd is up" >&2
