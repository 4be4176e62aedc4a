#!/bin/sh
# build-traefik.sh OUTPUT [VERSION]
# Builds Traefik's cmd/traefik (github.com/traefik/traefik/v3, VERSION, default v3.7.13) into OUTPUT
# as a static binary, like gobuild.sh: in a throw-away module, from the module proxy, keeping Go's
# module and build caches. Traefik's own go.mod cannot be used as it stands from a throw-away
# module, so this one carries what it needs (each pin below is for one Traefik version: a bump
# has to review them):
# - Traefik's replace directives apply only in Traefik's own main module, so they are copied:
#   the containous forks of gorilla/mux and abbot/go-http-auth, and the tencentcloud exclude.
# - github.com/traefik/traefik/dynamic/ext is a nested module of Traefik's repository, reached by
#   a replace to a directory: it is in neither the module zip nor the proxy. traefik-ext/ beside
#   this script stands in for it (see its README).
# - Versions the module proxy refuses (403) are swapped for the nearest ones it serves: the
#   go-http-auth fork's and those of some DNS providers' SDKs that lego (the ACME library) brings.
# The dashboard's web assets are not in the module (Traefik builds them with Node): the API and the
# routing work, the dashboard page is empty. Run it with --global.checkNewVersion=false and
# --global.sendAnonymousUsage=false: by default it calls Traefik's release-check service.
set -eu
out=$1 version=${2:-v3.7.13}
case $out in /*) ;; *) out=$(pwd)/$out ;; esac
here=$(cd "$(dirname "$0")" && pwd)
module=github.com/traefik/traefik/v3

case $version in
v3.7.13)
	# replace (MODULE => MODULE VERSION, pinning a version below the one required): go-http-auth
	# is the fork commit Traefik used up to v3.6 (its 2026-08 commit, b975dcaa8c48, is refused);
	# the akamai and OCI SDKs go back to the versions Traefik v3.7.11's lego v5.3.1 used.
	replaces="github.com/abbot/go-http-auth=github.com/containous/go-http-auth@v0.4.1-0.20200324110947-a37a7636d23e
github.com/gorilla/mux=github.com/containous/mux@v0.0.0-20250523120546-41b6ec3aed59
github.com/akamai/AkamaiOPEN-edgegrid-golang/v13=github.com/akamai/AkamaiOPEN-edgegrid-golang/v13@v13.3.0
github.com/nrdcg/oci-go-sdk/common/v1065=github.com/nrdcg/oci-go-sdk/common/v1065@v1065.120.0
github.com/nrdcg/oci-go-sdk/dns/v1065=github.com/nrdcg/oci-go-sdk/dns/v1065@v1065.120.0"
	excludes="github.com/tencentcloud/tencentcloud-sdk-go@v3.0.83+incompatible"
	# Raised above what lego v5.4.1 requires (its versions are refused): those lego v5.5.2 uses,
	# and the yandex SDK's first served version above the one its DNS module v0.0.96 needs.
	upgrades="github.com/huaweicloud/huaweicloud-sdk-go-v3@v0.1.215
github.com/ucloud/ucloud-sdk-go@v0.22.123
github.com/sacloud/sacloud-sdk-go@v0.2.0
github.com/yandex-cloud/go-sdk/services/dns@v0.0.96
github.com/yandex-cloud/go-sdk/v2@v2.175.0"
	;;
*)
	echo "build-traefik.sh: no module pins for Traefik $version (see the comments in $0)" >&2
	exit 1
	;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kubeforge-traefik.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod GOWORK=off
go mod init kubeforge.local/traefikbuild >/dev/null 2>&1
go mod edit -replace "github.com/traefik/traefik/dynamic/ext=$here/traefik-ext"
for r in $replaces; do go mod edit -replace "$r"; done
for e in $excludes; do go mod edit -exclude "$e"; done
# shellcheck disable=SC2086 # one word per module@version
go get "$module/cmd/traefik@$version" $upgrades >/dev/null 2>go-get.log || { cat go-get.log >&2; exit 1; }
mkdir -p "$(dirname "$out")"
go build -trimpath -ldflags "-s -w -X $module/pkg/version.Version=$version" -o "$out.tmp" "$module/cmd/traefik"
mv "$out.tmp" "$out"
