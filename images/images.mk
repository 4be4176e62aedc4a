# images.mk: the node image's tool binaries. Included by the top Makefile; also usable alone:
#   make -f images/images.mk tools
# Each tool is built from its Go module through the module proxy, static (CGO off), into $(BIN_DIR).
# A tool is rebuilt only when its version variable changes (a stamp file holds the version built).

IMAGES_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
BIN_DIR ?= bin
GO ?= go

# The tools' versions are the default row's of internal/versions/kubernetes.tsv (one build serves
# every row: a test keeps them equal).
DEFAULT_ROW := $(shell awk '!/^\#/ && NF {print; exit}' internal/versions/kubernetes.tsv)
COREDNS_VERSION ?= $(word 4,$(DEFAULT_ROW))
CONTAINERD_VERSION ?= $(word 6,$(DEFAULT_ROW))
CRICTL_VERSION ?= $(word 7,$(DEFAULT_ROW))

CONTAINERD_MODULE := github.com/containerd/containerd/v2
CONTAINERD_TAGS := no_devmapper,no_zfs,no_btrfs,no_aufs,no_systemd
CONTAINERD_LDFLAGS := -X $(CONTAINERD_MODULE)/version.Version=$(CONTAINERD_VERSION) -X $(CONTAINERD_MODULE)/version.Revision=kubeforge
CRICTL_MODULE := sigs.k8s.io/cri-tools
CRICTL_LDFLAGS := -X $(CRICTL_MODULE)/pkg/version.Version=$(CRICTL_VERSION)
COREDNS_MODULE := github.com/coredns/coredns

GOBUILD_TOOL := $(IMAGES_DIR)/tools/gobuild.sh
TOOL_BINS := $(BIN_DIR)/containerd $(BIN_DIR)/containerd-shim-runc-v2 $(BIN_DIR)/ctr \
	$(BIN_DIR)/crictl $(BIN_DIR)/coredns $(BIN_DIR)/kubeforge-pause

.PHONY: tools clean-tools print-tool-versions
tools: $(TOOL_BINS)

print-tool-versions:
	@echo $(CONTAINERD_VERSION) $(CRICTL_VERSION) $(COREDNS_VERSION)

clean-tools:
	rm -f $(TOOL_BINS) $(BIN_DIR)/.containerd.version $(BIN_DIR)/.crictl.version $(BIN_DIR)/.coredns.version

# A stamp file whose content is the version; it is rewritten (and so newer) only when it changes.
define version_stamp
$(BIN_DIR)/.$(1).version: .kubeforge-force
	@mkdir -p $(BIN_DIR)
	@echo '$(2)' | cmp -s - $$@ || echo '$(2)' > $$@
endef
$(eval $(call version_stamp,containerd,$(CONTAINERD_VERSION)))
$(eval $(call version_stamp,crictl,$(CRICTL_VERSION)))
$(eval $(call version_stamp,coredns,$(COREDNS_VERSION)))
.PHONY: .kubeforge-force
.kubeforge-force:

$(BIN_DIR)/containerd: $(BIN_DIR)/.containerd.version $(GOBUILD_TOOL)
	$(GOBUILD_TOOL) $(CONTAINERD_MODULE) $(CONTAINERD_VERSION) $(CONTAINERD_MODULE)/cmd/containerd $@ '$(CONTAINERD_TAGS)' '$(CONTAINERD_LDFLAGS)'

$(BIN_DIR)/containerd-shim-runc-v2: $(BIN_DIR)/.containerd.version $(GOBUILD_TOOL)
	$(GOBUILD_TOOL) $(CONTAINERD_MODULE) $(CONTAINERD_VERSION) $(CONTAINERD_MODULE)/cmd/containerd-shim-runc-v2 $@ '$(CONTAINERD_TAGS)' '$(CONTAINERD_LDFLAGS)'

$(BIN_DIR)/ctr: $(BIN_DIR)/.containerd.version $(GOBUILD_TOOL)
	$(GOBUILD_TOOL) $(CONTAINERD_MODULE) $(CONTAINERD_VERSION) $(CONTAINERD_MODULE)/cmd/ctr $@ '$(CONTAINERD_TAGS)' '$(CONTAINERD_LDFLAGS)'

$(BIN_DIR)/crictl: $(BIN_DIR)/.crictl.version $(GOBUILD_TOOL)
	$(GOBUILD_TOOL) $(CRICTL_MODULE) $(CRICTL_VERSION) $(CRICTL_MODULE)/cmd/crictl $@ '' '$(CRICTL_LDFLAGS)'

$(BIN_DIR)/coredns: $(BIN_DIR)/.coredns.version $(GOBUILD_TOOL)
	$(GOBUILD_TOOL) $(COREDNS_MODULE) $(COREDNS_VERSION) $(COREDNS_MODULE) $@ '' ''

# The pause program is ours: built from this module's source.
$(BIN_DIR)/kubeforge-pause: $(wildcard cmd/kubeforge-pause/*.go)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $@ ./cmd/kubeforge-pause

# Programs of the add-ons and the local registry, each built from its Go module into
# bin/programs/<program>-<version> (kubeforge builds a missing one with make, once, on first use).
# The versions are the Go code's (cluster/addons.go, cluster/registry.go; a test keeps them equal).
METRICS_SERVER_VERSION ?= v0.8.0
METRICS_SERVER_MODULE := sigs.k8s.io/metrics-server
REGISTRY_VERSION ?= v3.0.0
REGISTRY_MODULE := github.com/distribution/distribution/v3
TRAEFIK_VERSION ?= v3.7.13
TRAEFIK_BUILD_TOOL := $(IMAGES_DIR)/tools/build-traefik.sh
PROGRAM_BINS := $(BIN_DIR)/programs/metrics-server-$(METRICS_SERVER_VERSION) \
	$(BIN_DIR)/programs/registry-$(REGISTRY_VERSION) \
	$(BIN_DIR)/programs/traefik-$(TRAEFIK_VERSION)
.PHONY: programs print-program-versions
programs: $(PROGRAM_BINS)

$(BIN_DIR)/programs/metrics-server-$(METRICS_SERVER_VERSION): $(GOBUILD_TOOL)
	$(GOBUILD_TOOL) $(METRICS_SERVER_MODULE) $(METRICS_SERVER_VERSION) $(METRICS_SERVER_MODULE)/cmd/metrics-server $@ '' \
		'-X k8s.io/client-go/pkg/version.gitVersion=$(METRICS_SERVER_VERSION) -X k8s.io/component-base/version.gitVersion=$(METRICS_SERVER_VERSION)'

# The local registry (kubeforge registry create, start --registry): distribution's registry.
$(BIN_DIR)/programs/registry-$(REGISTRY_VERSION): $(GOBUILD_TOOL)
	$(GOBUILD_TOOL) $(REGISTRY_MODULE) $(REGISTRY_VERSION) $(REGISTRY_MODULE)/cmd/registry $@ '' ''

# Traefik needs module pins of its own (a nested module it does not publish, versions the proxy
# refuses): build-traefik.sh holds them, per Traefik version.
$(BIN_DIR)/programs/traefik-$(TRAEFIK_VERSION): $(TRAEFIK_BUILD_TOOL) $(wildcard $(IMAGES_DIR)/tools/traefik-ext/*)
	$(TRAEFIK_BUILD_TOOL) $@ $(TRAEFIK_VERSION)

print-program-versions:
	@echo metrics-server $(METRICS_SERVER_VERSION)
	@echo registry $(REGISTRY_VERSION)
	@echo traefik $(TRAEFIK_VERSION)
