# kubeforge — build, test and benchmark.
#
#   make            build bin/kubeforge (host CLI), bin/kubeforge-node, bin/kubeforge-init and the tools
#   make cluster    check Docker (hack/ensure-docker.sh), build, then `kubeforge start` (builds the node image when missing)
#   make test       unit tests, a bounded fuzz run, then the e2e tier (starts Docker when none is reachable, as root)
#   make unit       unit tests only (fast, no Docker)
#   make e2e        e2e tier only: real clusters on a real Docker daemon
#   make image      build the node image
#   make bench      measure start-to-usable, CPU time and idle memory into bench/results.md
#                   (BENCH_FLAGS="-only scale": only the 10- and 20-node rows, rewriting their section)
#   make lint       gofmt, go vet of every build configuration (hack/vet.sh), go.mod/go.sum tidy
#   make tidy-check fails when `go mod tidy` would change go.mod or go.sum
#   make conformance  upstream's conformance tests against a cluster of KUBE_VERSION (about an hour)
#   make fuzz       fuzz the config file parser, names read from labels and the kubeconfig merge, FUZZTIME (default 20s) each
#
# The supported Kubernetes versions are internal/versions/kubernetes.tsv, newest (the default)
# first; each row names the module file its node binary is built with (go.mod for the default,
# which the host CLI links too; versions/v1.NN.mod, with its own .sum, for the others).
# KUBE_VERSION picks a row: `make node KUBE_VERSION=<version>` builds bin/k8s/<version>/kubeforge-node
# (kubeforge start --kubernetes-version runs that on first use). `make check-version` (run by
# build) fails when a module file does not pin the version its row names.
VERSIONS_TABLE := internal/versions/kubernetes.tsv
versions_row = $(shell awk -v v='$(1)' '!/^\#/ && NF && (v == "" || $$1 == v) {print; exit}' $(VERSIONS_TABLE))
KUBE_DEFAULT_VERSION := $(word 1,$(call versions_row,))
KUBE_VERSION ?= $(KUBE_DEFAULT_VERSION)
KUBE_ROW := $(call versions_row,$(KUBE_VERSION))
ifeq ($(KUBE_ROW),)
$(error KUBE_VERSION=$(KUBE_VERSION) is not in $(VERSIONS_TABLE): use one of $(shell awk '!/^\#/ && NF {print $$1}' $(VERSIONS_TABLE)))
endif
KUBE_MODFILE := $(word 2,$(KUBE_ROW))
KUBE_MODFLAG := $(if $(filter go.mod,$(KUBE_MODFILE)),,-modfile=$(KUBE_MODFILE))
# Code that differs between releases sits in small files behind the tag kube_1_NN.
KUBE_TAGS := kube_1_$(word 2,$(subst ., ,$(KUBE_VERSION)))
KUBE_BIN_DIR := $(if $(filter $(KUBE_DEFAULT_VERSION),$(KUBE_VERSION)),bin,bin/k8s/$(KUBE_VERSION))

GO ?= go
BIN_DIR := bin
export CGO_ENABLED := 0
GOFLAGS_BUILD := -trimpath
VERSION_PKG := k8s.io/component-base/version
KUBE_MINOR := $(word 2,$(subst ., ,$(KUBE_VERSION)))
KUBE_LDFLAGS := -s -w -X $(VERSION_PKG).gitVersion=$(KUBE_VERSION) -X $(VERSION_PKG).gitMajor=1 \
	-X $(VERSION_PKG).gitMinor=$(KUBE_MINOR) -X $(VERSION_PKG).gitTreeState=clean

# bin/kubeforge's own identity (`kubeforge version`): `git describe` of this checkout ("devel" outside
# one, e.g. a source tarball), the commit and the build date (SOURCE_DATE_EPOCH when set). Only the
# host CLI is stamped: the node binaries do not depend on the commit, so a commit neither relinks
# kubeforge-node nor changes the node image's content hash. Packagers may set KUBEFORGE_VERSION,
# KUBEFORGE_COMMIT and KUBEFORGE_BUILD_DATE.
BUILDINFO_PKG := kubeforge.dev/kubeforge/internal/buildinfo
IN_GIT := $(shell [ "$$(git rev-parse --show-toplevel 2>/dev/null)" = "$(CURDIR)" ] && echo yes)
KUBEFORGE_VERSION ?= $(or $(if $(IN_GIT),$(shell git describe --tags --always --dirty 2>/dev/null)),devel)
KUBEFORGE_COMMIT ?= $(if $(IN_GIT),$(shell git rev-parse HEAD 2>/dev/null))
KUBEFORGE_BUILD_DATE ?= $(shell date -u $(if $(SOURCE_DATE_EPOCH),-d @$(SOURCE_DATE_EPOCH)) +%Y-%m-%dT%H:%M:%SZ)
# The host CLI links the default release's client-go and kubectl: stamped with that version, so
# that `kubeforge kubectl -- version` reports a client version kubectl can compare.
HOST_LDFLAGS := -s -w -X $(BUILDINFO_PKG).Version=$(KUBEFORGE_VERSION) -X $(BUILDINFO_PKG).Commit=$(KUBEFORGE_COMMIT) \
	-X $(BUILDINFO_PKG).Date=$(KUBEFORGE_BUILD_DATE) -X $(VERSION_PKG).gitVersion=$(KUBE_DEFAULT_VERSION) \
	-X $(VERSION_PKG).gitMajor=1 -X $(VERSION_PKG).gitMinor=$(word 2,$(subst ., ,$(KUBE_DEFAULT_VERSION))) -X $(VERSION_PKG).gitTreeState=clean

E2E_TIMEOUT ?= 60m
E2E_PKGS ?= ./...
E2E_RUN ?=

.PHONY: all build cli node kubectl init cluster conformance image test unit e2e e2e-vm bench lint tidy-check fuzz check-version docker clean
all: build

build: check-version cli node init tools

cli:
	$(GO) build $(GOFLAGS_BUILD) -ldflags '$(HOST_LDFLAGS)' -o $(BIN_DIR)/kubeforge ./cmd/kubeforge

# The node binary links every component: ~5 min cold, seconds when the build cache is warm.
# KUBE_VERSION other than the default: bin/k8s/<version>/kubeforge-node, from its module file.
node:
	$(GO) build $(KUBE_MODFLAG) -tags $(KUBE_TAGS) $(GOFLAGS_BUILD) -ldflags '$(KUBE_LDFLAGS)' -o $(KUBE_BIN_DIR)/kubeforge-node ./cmd/kubeforge-node

# kubectl of KUBE_VERSION (bin/k8s/<version>/kubectl): `kubeforge kubectl` runs it for a cluster
# out of the version skew of the kubectl bin/kubeforge links (built on first use).
kubectl:
	$(GO) build $(KUBE_MODFLAG) $(GOFLAGS_BUILD) -ldflags '$(KUBE_LDFLAGS)' -o bin/k8s/$(KUBE_VERSION)/kubectl k8s.io/kubernetes/cmd/kubectl

# Upstream's conformance tests of KUBE_VERSION ([Conformance] of k8s.io/kubernetes/test/e2e, built
# from test/conformance/v1.NN.mod) against a 3-node cluster (a control plane, 2 workers) of it, the test images built here
# (hack/conformance.sh, test/conformance/README.md): about an hour; not part of make test.
# CONFORMANCE_FOCUS=regex narrows it, CONFORMANCE_PROCS=N runs N at once (the ginkgo CLI).
conformance: build
	hack/conformance.sh $(KUBE_VERSION)

init:
	$(GO) build $(GOFLAGS_BUILD) -ldflags '-s -w' -o $(BIN_DIR)/kubeforge-init ./cmd/kubeforge-init

check-version:
	@awk '!/^#/ && NF {print $$1, $$2}' $(VERSIONS_TABLE) | while read v mod; do \
	  flag=; [ "$$mod" = go.mod ] || flag=-modfile=$$mod; \
	  got=$$($(GO) list $$flag -m -f '{{.Version}}' k8s.io/kubernetes) || exit 1; \
	  [ "$$got" = "$$v" ] || { echo "$$mod has k8s.io/kubernetes $$got but $(VERSIONS_TABLE) says $$v: change both together" >&2; exit 1; }; \
	done

# What `kubeforge start` needs from the host: a Docker daemon that answers (started, as root, when
# none does). cluster and image check it before the long build, so that a missing or unreachable
# Docker shows at once; `$(MAKE) build` after it keeps that order under make -j too.
docker:
	hack/ensure-docker.sh cluster

cluster: docker
	$(MAKE) build
	$(BIN_DIR)/kubeforge start

image: docker
	$(MAKE) build
	$(BIN_DIR)/kubeforge image build

test: unit fuzz e2e e2e-vm

# The kubeconfig tests check kubectl's side of the lock protocol with a real kubectl: the one
# `make kubectl` builds comes first on PATH.
unit: kubectl
	PATH="$(CURDIR)/bin/k8s/$(KUBE_VERSION):$$PATH" $(GO) test -count=1 ./...

# The e2e tier needs Docker and root; hack/ensure-docker.sh installs and starts it when missing,
# hack/ensure-chromium.sh the headless Chromium of the trace --web browser tests. The add-ons'
# and the registry's programs are built first (Traefik takes 15-20 min cold on 2 cores): a test's
# bounded `addons enable` or `start --addons` then times the cluster, not the compiler.
e2e: build programs
	hack/ensure-docker.sh
	hack/ensure-chromium.sh >/dev/null
	$(GO) test -count=1 -p 1 -tags e2e -timeout $(E2E_TIMEOUT) $(if $(E2E_RUN),-run '$(E2E_RUN)') $(E2E_PKGS)

# The VM tier: real libvirt and qemu (software emulation), one VM cluster through an SSH server on
# 127.0.0.1; hack/ensure-libvirt.sh installs and starts libvirt when missing, hack/ensure-docker.sh
# Docker (the source of `image load`). Slow: 20-30 min.
E2E_VM_TIMEOUT ?= 60m
e2e-vm: build
	hack/ensure-docker.sh
	hack/ensure-libvirt.sh
	$(GO) test -count=1 -v -tags e2e_vm -timeout $(E2E_VM_TIMEOUT) ./test/e2evm/

bench: build
	hack/ensure-docker.sh
	$(GO) run ./cmd/kubeforge-bench -kubeforge $(BIN_DIR)/kubeforge -out bench/results.md $(BENCH_FLAGS)

# What CI checks before the tests (.ci/run). hack/vet.sh vets every build configuration the files
# are written for: no tags, each //go:build tag (e2e, e2e_vm), and the !linux/!unix stubs.
lint: tidy-check
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt needed:"; echo "$$out"; exit 1; }
	GO=$(GO) hack/vet.sh

# `go mod tidy -diff` prints what tidy would change and exits 1, changing nothing; every module
# file of the versions table is checked. Empty output with a failure is tidy itself failing
# (module proxy unreachable...): its error is on stderr.
tidy-check:
	@for mod in $$(awk '!/^#/ && NF {print $$2}' $(VERSIONS_TABLE)); do \
	  flag=; [ "$$mod" = go.mod ] || flag=-modfile=$$mod; \
	  d=$$($(GO) mod tidy -diff $$flag) && continue; \
	  if [ -n "$$d" ]; then printf '%s\n' "$$d"; \
	    echo "$$mod is not tidy (the diff above): run \`go mod tidy $$flag\` and commit the result" >&2; \
	  else echo "go mod tidy -diff $$flag failed (see above)" >&2; fi; exit 1; \
	done

# Fuzz `kubeforge start --config`'s parser (seeds: the example and the bad configs of its tests;
# `make unit` runs the seeds). A failing input is saved in internal/config/testdata/fuzz/.
FUZZTIME ?= 20s
# One target per invocation (go test -fuzz allows no more), FUZZTIME each.
fuzz:
	$(GO) test ./internal/config -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./provision -run '^$$' -fuzz '^FuzzLabelNames$$' -fuzztime $(FUZZTIME)
	$(GO) test ./cluster/internal/kubeconfig -run '^$$' -fuzz '^FuzzMerge$$' -fuzztime $(FUZZTIME)

clean:
	rm -f $(BIN_DIR)/kubeforge $(BIN_DIR)/kubeforge-node $(BIN_DIR)/kubeforge-init

include images/images.mk
