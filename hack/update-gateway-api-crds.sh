#!/bin/sh
# Vendors the standard-channel Gateway API CRDs that the ingress add-on (Traefik) watches into
# bootstrap/addons/gatewayapi/standard-<VERSION>.yaml.gz, from the sigs.k8s.io/gateway-api module
# (which embeds none of them in Go). Usage: hack/update-gateway-api-crds.sh v1.6.3
# Then set gatewayapi.Version to the same version (a unit test checks they agree).
set -eu
version=${1:?usage: $0 VERSION (e.g. v1.6.3)}
cd "$(dirname "$0")/.."
dir=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/gateway-api@$version" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] || { echo "update-gateway-api-crds: go mod download sigs.k8s.io/gateway-api@$version failed" >&2; exit 1; }
out=bootstrap/addons/gatewayapi
rm -f "$out"/standard-*.yaml.gz
# TLSRoute is needed: Traefik always watches it, and a missing CRD stalls its Gateway provider.
for r in gatewayclasses gateways httproutes grpcroutes referencegrants backendtlspolicies tlsroutes; do
	f="$dir/config/crd/standard/gateway.networking.k8s.io_$r.yaml"
	[ -f "$f" ] || { echo "update-gateway-api-crds: $f is missing" >&2; exit 1; }
	cat "$f"
	echo ---
done | gzip -9n > "$out/standard-$version.yaml.gz"
ls -l "$out/standard-$version.yaml.gz"
