#!/bin/sh
# vet.sh: go vet over every build configuration the tree's files are written for, so that a file
# behind a build constraint (//go:build e2e, !linux...) is vetted too (make lint). The passes:
#   1. the host's platform without tags: go vet ./...
#   2. each build tag the //go:build lines name that is not an OS, an architecture, "unix", "cgo",
#      a compiler or a Go release (today e2e and e2e_vm): go vet -tags TAG ./...
#   3. GOOS=darwin, then GOOS=windows, for the packages with files the passes before left out (the
#      !linux and !unix stubs): only those packages.
# Then every tracked .go file (outside testdata, but for //go:build ignore files) must have been in
# one of the passes: it fails naming the files none vetted, which need a pass added here.
# The first GOOS=darwin pass compiles those packages' dependencies for darwin (client-go: a few
# minutes of CPU once; the build cache keeps them).
set -eu
export LC_ALL=C
cd "$(dirname "$0")/.."
GO=${GO:-go}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root=$($GO list -m -f '{{.Dir}}')

git ls-files '*.go' | grep -v '\(^\|/\)testdata/' | sort >"$tmp/all"
# shellcheck disable=SC2016 # a Go template, not shell.
tmpl='{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}
{{end}}{{range .CgoFiles}}{{$d}}/{{.}}
{{end}}{{range .TestGoFiles}}{{$d}}/{{.}}
{{end}}{{range .XTestGoFiles}}{{$d}}/{{.}}
{{end}}'
: >"$tmp/covered"

# files GOOS TAGS PKG...: the tracked files the packages have in that configuration.
files() {
	goos=$1 tags=$2
	shift 2
	GOOS=$goos $GO list -e -tags "$tags" -f "$tmpl" "$@" | sed "s#^$root/##" | grep . | sort -u
}

# pass GOOS TAGS PKG...: vets the packages in that configuration and records their files.
pass() {
	goos=$1 tags=$2
	shift 2
	echo "go vet${tags:+ -tags $tags} $* (GOOS=$goos)"
	GOOS=$goos $GO vet -tags "$tags" "$@"
	files "$goos" "$tags" "$@" >>"$tmp/covered"
}

# uncovered: the tracked files no pass vetted yet.
uncovered() {
	sort -u "$tmp/covered" | comm -23 "$tmp/all" -
}

host=$($GO env GOOS)
pass "$host" "" ./...

# Nested modules (images/tools/traefik-ext, a stand-in module a build script points a replace
# at): each vetted in its own directory.
for m in $(git ls-files '*/go.mod'); do
	d=$(dirname "$m")
	echo "go vet ./... in $d (a module of its own)"
	(cd "$d" && $GO vet ./...)
	(cd "$d" && $GO list -e -f "$tmpl" ./...) | sed "s#^$root/##" | grep . >>"$tmp/covered"
done

xargs grep -l '^//go:build ignore$' <"$tmp/all" >"$tmp/ignored" || true
{ $GO tool dist list | tr / '\n'; echo unix cgo gc gccgo ignore; } | tr ' ' '\n' | sort -u >"$tmp/known"
xargs grep -h '^//go:build' <"$tmp/all" | sed 's#^//go:build##' | tr -c 'A-Za-z0-9_.\n' '\n' |
	grep -v '^$' | grep -v '^go1\.' | grep -v '^goexperiment\.' | sort -u | comm -23 - "$tmp/known" >"$tmp/tags" || true
while read -r tag; do
	pass "$host" "$tag" ./...
done <"$tmp/tags"

for goos in darwin windows; do
	uncovered >"$tmp/left"
	[ -s "$tmp/left" ] || break
	# The packages of the files left that this GOOS builds.
	dirs=$(sed 's#/[^/]*$##; s#^[^/]*\.go$#.#' "$tmp/left" | sort -u | sed 's#^#./#')
	# shellcheck disable=SC2086 # one argument per directory.
	files "$goos" "" $dirs | comm -12 "$tmp/left" - | sed 's#/[^/]*$##; s#^[^/]*\.go$#.#' | sort -u | sed 's#^#./#' >"$tmp/pkgs"
	[ -s "$tmp/pkgs" ] || continue
	# shellcheck disable=SC2046 # one argument per package.
	pass "$goos" "" $(cat "$tmp/pkgs")
done

uncovered | comm -23 - "$tmp/ignored" >"$tmp/left"
if [ -s "$tmp/left" ]; then
	echo "vet.sh: no vet pass builds these files (a build constraint none of its passes meets): add one to hack/vet.sh" >&2
	cat "$tmp/left" >&2
	exit 1
fi
