#!/bin/sh
# ensure-docker.sh: make sure a Docker daemon answers and the e2e tier's host tools are present.
# On a machine without them (CI: Debian, root, no daemon running) it installs docker.io,
# debootstrap, busybox-static and containernetworking-plugins with apt, and starts dockerd in the background, logging to
# /var/log/kubeforge-dockerd.log, its pid in /run/kubeforge-dockerd.pid (the e2e test of a daemon
# restart restarts only a daemon started here). It never touches a daemon that already answers.
set -eu

need_pkgs=""
command -v debootstrap >/dev/null 2>&1 || need_pkgs="$need_pkgs debootstrap"
[ -x /bin/busybox ] || need_pkgs="$need_pkgs busybox-static"
# netctl's e2e test runs the real CNI plugins on the host.
[ -x /usr/lib/cni/bridge ] || need_pkgs="$need_pkgs containernetworking-plugins"
command -v dockerd >/dev/null 2>&1 || need_pkgs="$need_pkgs docker.io"
command -v docker >/dev/null 2>&1 || need_pkgs="$need_pkgs docker.io"

if [ -n "$need_pkgs" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "ensure-docker: missing$need_pkgs; install them (as root: apt-get install -y$need_pkgs)" >&2
		exit 3
	fi
	echo "ensure-docker: installing$need_pkgs" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $need_pkgs >/dev/null
fi

if docker info >/dev/null 2>&1; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "ensure-docker: Docker is not reachable; start it (sudo systemctl start docker) or add yourself to the docker group" >&2
	exit 3
fi
echo "ensure-docker: starting dockerd" >&2
nohup dockerd >/var/log/kubeforge-dockerd.log 2>&1 &
echo $! >/run/kubeforge-dockerd.pid
i=0
until docker info >/dev/null 2>&1; do
	i=$((i + 1))
	if [ $i -gt 60 ]; then
		echo "ensure-docker: dockerd did not answer within 30s; its log:" >&2
		tail -n 30 /var/log/kubeforge-dockerd.log >&2
		exit 3
	fi
	sleep 0.5
done
echo "ensure-docker: dockerd is up" >&2
