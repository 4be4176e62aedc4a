#!/bin/sh
# gobuild.sh MODULE VERSION PACKAGE OUTPUT [TAGS] [LDFLAGS]
# Builds PACKAGE of MODULE@VERSION into OUTPUT as a static binary, in a throw-away module so that
# the repository's go.mod is never touched. Go's module and build caches are kept, so a rebuild of
# the same version is quick.
set -eu
module=$1 version=$2 pkg=$3 out=$4 tags=${5:-} ldflags=${6:-}
case $out in /*) ;; *) out=$(pwd)/$out ;; esac
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kubeforge-gobuild.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod GOWORK=off
go mod init kubeforge.local/toolbuild >/dev/null 2>&1
go get "$module@$version" >/dev/null 2>go-get.log || { cat go-get.log >&2; exit 1; }
mkdir -p "$(dirname "$out")"
go build -trimpath -tags "$tags" -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg"
mv "$out.tmp" "$out"
