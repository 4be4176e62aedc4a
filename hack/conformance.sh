#!/bin/bash
# conformance.sh VERSION: upstream's Kubernetes conformance tests ([Conformance] of
# k8s.io/kubernetes/test/e2e, built from the module of that very release) against a kubeforge
# cluster of VERSION, with no registry: the test images are built here and loaded into the nodes
# under the names the tests ask for (their pull policy is IfNotPresent).
#
#   make conformance [KUBE_VERSION=<a version of internal/versions/kubernetes.tsv>] [CONFORMANCE_FOCUS=regex] [CONFORMANCE_PROCS=N]
#
# Writes bin/conformance/<version>/report/ (junit_01.xml, the e2e log) and prints a summary.
#
# The images (see test/conformance/README.md):
#   agnhost        built from the release's test/images/agnhost, in a Debian rootfs with the
#                  tools the tests run in it (bash as sh, busybox's seq/nslookup/wget..., curl,
#                  OpenBSD nc, dig, getent); also tagged as the previous agnhost the rollout tests switch to, and
#                  as the DNS-probe image (whose probes run sh, seq, dig and getent), and as the
#                  nginx images: the tests that name nginx (garbage collector, ReplicationController,
#                  Endpoints, PodTemplates, pod generation) need a container that runs, not nginx.
#   nautilus, kitten  that rootfs plus the release's html files, CMD test-webserver.
#   busybox        Debian's busybox-static (bash as sh: see with_bash), CMD sh.
#   nonewprivs     that busybox plus the release's nonewprivs program, setuid root.
#   pause          kubeforge's own pause program.
# Tests that need what cannot be built here are skipped by name (CONFORMANCE_SKIP, below), and
# counted in the summary: a forced pull (pull policy Always needs a registry that has the image),
# the sample API server (an aggregated API server and its etcd: not built yet).
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=conformance
. hack/lib.sh
die() { echo "$TAG: $*" >&2; exit 3; }
step() { echo "• $*"; }

version=${1:?usage: hack/conformance.sh VERSION}
modfile=test/conformance/v$(echo "$version" | sed -E 's/^v([0-9]+\.[0-9]+)\..*/\1/').mod
[ -f "$modfile" ] || die "no $modfile: conformance runs for the versions of internal/versions/kubernetes.tsv"
GO=${GO:-go}
out=bin/conformance/$version
cluster=${CONFORMANCE_CLUSTER:-kfconf}
focus=${CONFORMANCE_FOCUS:-'\[Conformance\]'}
procs=${CONFORMANCE_PROCS:-1}
skip=${CONFORMANCE_SKIP:-'ImageVolume should succeed with pod and pull policy of Always|should allow server and client pods to establish an mTLS connection|Sample API Server using the current Aggregator'}
mkdir -p "$out"

kmod=$($GO env GOMODCACHE)/k8s.io/kubernetes@$version
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$version" | cut -d. -f2)"

step "building e2e.test and agnhost of $version (first time: several minutes)"
$GO test -c -trimpath -modfile="$modfile" -ldflags "$ldflags" -o "$out/e2e.test" k8s.io/kubernetes/test/e2e
[ -d "$kmod" ] || $GO mod download -modfile="$modfile" "k8s.io/kubernetes@$version"
agnver=$(cat "$kmod/test/images/agnhost/VERSION")
CGO_ENABLED=0 $GO build -trimpath -modfile="$modfile" -ldflags "-s -w -X main.Version=$agnver" -o "$out/agnhost" k8s.io/kubernetes/test/images/agnhost
CGO_ENABLED=0 $GO build -trimpath -modfile="$modfile" -ldflags "-s -w" -o "$out/nnp" k8s.io/kubernetes/test/images/nonewprivs
make -s kubectl KUBE_VERSION="$version" cli
[ -x bin/kubeforge-pause ] || make -s bin/kubeforge-pause
kubectl=bin/k8s/$version/kubectl
[ -x "$kubectl" ] || kubectl=bin/kubectl

# The names the tests ask for, as this e2e.test resolves them.
"$out/e2e.test" --list-images >"$out/images.txt" 2>"$out/list-images.err" || die "e2e.test --list-images: $(cat "$out/list-images.err")"
# (Its list is in no order; gcr.io/k8s-authenticated-test's agnhost is for tests that must fail
# to pull it: not made.)
image() { grep -m1 -E "^registry.k8s.io/(.*/)?$1:" "$out/images.txt" || die "e2e.test lists no $1 image"; }
agnhost=registry.k8s.io/e2e-test-images/agnhost:$agnver
grep -qx "$agnhost" "$out/images.txt" || die "e2e.test does not list $agnhost, the agnhost of its module"
agnhost_prev=$(grep "^registry.k8s.io/e2e-test-images/agnhost:" "$out/images.txt" | grep -vx "$agnhost" || true)
nginx=$(grep "^registry.k8s.io/e2e-test-images/nginx:" "$out/images.txt" || true)
busyboxes=$(grep "^registry.k8s.io/e2e-test-images/busybox:" "$out/images.txt" || die "e2e.test lists no busybox image")
busybox=$(echo "$busyboxes" | head -1)
pause=$(image pause)
dns=$(grep -m1 -E '/(glibc-dns-testing|jessie-dnsutils):' "$out/images.txt" || true)
nautilus=$(image nautilus)
kitten=$(image kitten)
nonewprivs=$(image nonewprivs)

step "building the test images"
hack/ensure-docker.sh cluster
missing=()
[[ $(nc -h 2>&1) == *OpenBSD* ]] || missing+=(netcat-openbsd)
command -v dig >/dev/null || missing+=(bind9-dnsutils)
command -v curl >/dev/null || missing+=(curl)
# Debian's busybox-static (the images have no libc for a dynamic one).
{ [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; } || missing+=(busybox-static)
install_missing "${missing[@]}"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
# with_bash ROOT: /bin/sh in ROOT is Debian's bash, not busybox's sh (1.35 here): that one drops
# the environment variables whose names are no shell names (data-1=..., which a Secret's keys
# become: a test checks the container sees them; upstream's newer busybox keeps them), and runs
# its own applets before PATH's (its nc is not OpenBSD's, whose flags the tests use).
with_bash() {
	copy_bin "$1" /usr/bin/bash
	rm -f "$1/bin/sh" && ln -s /usr/bin/bash "$1/bin/sh"
}
# copy_bin DIR FILE...: the binaries into the root DIR, with the shared libraries ldd names and
# the loader.
copy_bin() {
	local dir=$1
	shift
	for f in "$@"; do
		install -D "$(readlink -f "$f")" "$dir$f"
		for lib in $(ldd "$f" 2>/dev/null | grep -oE '/[^ ]+' || true); do
			[ -e "$dir$lib" ] || install -D "$(readlink -f "$lib")" "$dir$lib"
		done
	done
}
mkdir -p "$root/rootfs"/{bin,etc,tmp,uploads,var/run}
install -m 0755 /bin/busybox "$root/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ -e "$root/rootfs/bin/$a" ] || ln -s busybox "$root/rootfs/bin/$a"; done
copy_bin "$root/rootfs" "$(command -v curl)" "$(command -v dig)" "$(command -v getent)" "$(readlink -f "$(command -v nc)")"
rm -f "$root/rootfs/bin/nc" && ln -s "$(readlink -f "$(command -v nc)")" "$root/rootfs/bin/nc"
# The shell is Debian's bash (see with_bash).
with_bash "$root/rootfs"
install -m 0755 "$out/agnhost" "$root/rootfs/agnhost"
ln -s agnhost "$root/rootfs/agnhost-2"
cp "$kmod/test/images/agnhost/porter/localhost.crt" "$kmod/test/images/agnhost/porter/localhost.key" "$root/rootfs/"
echo 'hosts: files dns' >"$root/rootfs/etc/nsswitch.conf"
chmod -R u+w "$root/rootfs"
import() { # import TAG DIR CHANGE...
	local tag=$1 dir=$2
	shift 2
	local ch=()
	for c in "$@"; do ch+=(--change "$c"); done
	tar -C "$dir" --owner=0 --group=0 --mtime=@0 -c . | docker import "${ch[@]}" - "$tag" >/dev/null
	echo "  $tag"
}
import "$agnhost" "$root/rootfs" 'ENTRYPOINT ["/agnhost"]' 'CMD ["pause"]'
for t in $agnhost_prev $dns $nginx; do docker tag "$agnhost" "$t" && echo "  $t (the agnhost image)"; done
for img in nautilus kitten; do
	# test-webserver serves /: upstream copies the html files there.
	cp "$kmod/test/images/$img/html/"* "$root/rootfs/"
	ref=$nautilus
	[ $img = kitten ] && ref=$kitten
	import "$ref" "$root/rootfs" 'ENTRYPOINT ["/agnhost"]' 'CMD ["test-webserver"]'
	for f in "$kmod/test/images/$img/html/"*; do rm -f "$root/rootfs/$(basename "$f")"; done
done
mkdir -p "$root/busybox/bin" "$root/busybox/etc" "$root/busybox/tmp"
install -m 0755 /bin/busybox "$root/busybox/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$root/busybox/bin/$a"; done
with_bash "$root/busybox"
import "$busybox" "$root/busybox" 'CMD ["sh"]'
for t in $busyboxes; do [ "$t" = "$busybox" ] || { docker tag "$busybox" "$t" && echo "  $t"; }; done
mkdir -p "$root/busybox/usr/local/bin"
install -m 4755 "$out/nnp" "$root/busybox/usr/local/bin/nnp" # setuid root: what no_new_privs must defeat
import "$nonewprivs" "$root/busybox" 'CMD ["nnp"]'
mkdir -p "$root/pause"
install -m 0755 bin/kubeforge-pause "$root/pause/pause"
import "$pause" "$root/pause" 'ENTRYPOINT ["/pause"]'

# Each image runs what the tests run in it.
docker run --rm "$busybox" sh -c 'true && env >/dev/null && wget --help >/dev/null 2>&1; id' >/dev/null ||
	die "the busybox image does not run sh"
docker run --rm --entrypoint sh "$agnhost" -c 'curl --version && nc -h 2>&1 | grep -q OpenBSD && dig -v 2>&1 && getent hosts localhost && /agnhost --help' >/dev/null ||
	die "the agnhost image lacks a tool (curl, OpenBSD nc, dig, getent)"
docker run --rm "$nonewprivs" >/dev/null || die "the nonewprivs image does not run"
step "starting cluster $cluster ($version, 3 nodes: a control plane, 2 workers; some specs need 2 schedulable nodes)"
export KUBEFORGE_HOME=${KUBEFORGE_HOME:-$PWD/$out/home}
bin/kubeforge delete --name "$cluster" >/dev/null 2>&1 || true
bin/kubeforge start --name "$cluster" --nodes 3 --kubernetes-version "$version"
bin/kubeforge image load --name "$cluster" $(for t in "$agnhost" $agnhost_prev $dns $nginx "$nautilus" "$kitten" $busyboxes "$nonewprivs" "$pause"; do echo "$t"; done | sort -u)
bin/kubeforge kubeconfig --name "$cluster" >"$out/kubeconfig"

step "running the conformance tests (focus $focus; this takes a while)"
rm -rf "$out/report"
mkdir -p "$out/report"
set +e
args=(--kubeconfig="$PWD/$out/kubeconfig" --provider=local --kubectl-path="$PWD/$kubectl"
	--report-dir="$PWD/$out/report" --ginkgo.focus="$focus" --ginkgo.skip="$skip"
	--ginkgo.timeout=24h --ginkgo.no-color --ginkgo.succinct)
start=$(date +%s)
if [ "$procs" -gt 1 ]; then
	$GO build -modfile="$modfile" -o "$out/ginkgo" github.com/onsi/ginkgo/v2/ginkgo
	# The ginkgo flags go to the suite (after --), as upstream's hack/ginkgo-e2e.sh passes them.
	"$out/ginkgo" --procs="$procs" --timeout=24h --no-color "$out/e2e.test" -- "${args[@]}" 2>&1 | tee "$out/report/e2e.log"
else
	"$out/e2e.test" -test.timeout=0 "${args[@]}" 2>&1 | tee "$out/report/e2e.log"
fi
rc=${PIPESTATUS[0]}
set -e
secs=$(($(date +%s) - start))
step "summary ($version, ${secs}s)"
grep -E '^(Ran [0-9]+ of [0-9]+ Specs|(SUCCESS|FAIL)! --)' "$out/report/e2e.log" | tail -2 || true
grep -E '^\s*\[FAIL\]' "$out/report/e2e.log" | sort -u || true
if [ "${CONFORMANCE_KEEP:-}" = "" ]; then bin/kubeforge delete --name "$cluster" >/dev/null || true; fi
exit "$rc"
