# secrets-store: see README.md. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
BIN := bin
CACHE_DIR ?= $(or $(SSCSI_CACHE),/var/cache/sscsi)
export SSCSI_CACHE := $(CACHE_DIR)
BINARIES := secrets-store-csi-driver secrets-store-sync-controller provider-fake provider-aws provider-vault sscsi
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
# golangci-lint is built once from the module proxy into the cache (Go 1.26 builds it).
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := $(CACHE_DIR)/tools/golangci-lint-$(GOLANGCI_LINT_VERSION)/golangci-lint
LDFLAGS := -s -w -X github.com/sscsi/secrets-store/driver.BuildVersion=$(VERSION)
# grpcnotrace drops gRPC's golang.org/x/net/trace (never served here), and with it html/template,
# whose reflection makes the linker keep every exported method of every linked type: the driver
# binary 20.3 -> 17.0 MB, its resident memory -2.2 MiB (docs/benchmarks.md).
BUILD_TAGS := grpcnotrace

.PHONY: help build test test-unit test-integration sanity lint generate verify-generate fuzz bench bench-inodes bench-aws-calls bench-secretsync bench-vault-calls \
	cluster-up cluster-down kubeconfig e2e e2e-restart e2e-scale bench-apiserver demo demo-down images chart-lint vault-server test-vault demo-vault

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

build: ## build every binary into bin/
	@mkdir -p $(BIN)
	@for b in $(BINARIES); do [ -d cmd/$$b ] || continue; \
		CGO_ENABLED=0 $(GO) build -trimpath -tags $(BUILD_TAGS) -ldflags "$(LDFLAGS)" -o $(BIN)/$$b ./cmd/$$b || exit 1; done
	@# kubectl finds plugins by name: `kubectl sscsi ...` runs bin/kubectl-sscsi.
	@ln -sf sscsi $(BIN)/kubectl-sscsi

test: ## everything: unit, integration, sanity, e2e (the README's test command)
	$(MAKE) test-unit
	$(MAKE) test-integration
	$(MAKE) sanity
	$(MAKE) e2e

test-unit: ## go test ./... (fast; real tmpfs and unix sockets, needs root)
	$(GO) test -race -count=1 ./internal/... ./driver/... ./synccontroller/... ./providers/... ./cmd/... ./manifests/...

test-integration: ## tests against a real etcd + kube-apiserver started per run
	test/cluster/integration.sh

sanity: ## csi-sanity against the real driver with real tmpfs mounts
	test/sanity/run.sh

$(GOLANGCI_LINT):
	GOBIN=$(dir $@) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

lint: $(GOLANGCI_LINT) ## gofmt, go vet, staticcheck, golangci-lint (.golangci.yml), shellcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.6.1 ./...
	$(GOLANGCI_LINT) run ./...
	@command -v shellcheck >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends shellcheck >/dev/null; }
	shellcheck $$(git ls-files '*.sh')

generate: ## regenerate deepcopy and CRD YAML
	hack/generate.sh

verify-generate: ## fail if generated files are stale
	hack/generate.sh --verify

fuzz: ## run every fuzz target for a short time
	hack/fuzz.sh $(or $(FUZZTIME),15s)

bench: ## publish benchmarks through the CSI socket
	test/bench/run.sh

bench-inodes: ## kernel memory of worst-case accepted volumes (root; real tmpfs)
	$(GO) run ./test/bench/inodes -volumes $(or $(VOLUMES),50)

bench-apiserver: ## what DRIVERS (100) driver processes cost one kube-apiserver: watches, requests idle/per mount/per rotation
	test/cluster/build.sh >/dev/null
	$(MAKE) -s build
	set -o pipefail; SSCSI_DRIVER_BIN=$(CURDIR)/bin/secrets-store-csi-driver $(GO) test -run '^$$' -bench APIServerCost -benchtime 1x -count 1 -timeout 30m ./test/bench/apiserver/ 2>&1 | grep -vE '^(E|I|W)[0-9]{4} '

bench-aws-calls: ## count AWS API calls for the reference workloads: 100 pods of 1 service account, then across 20 accounts x 5 roles (ARGS="-credentials-cache=false")
	$(GO) run ./test/bench/awscalls $(ARGS)
	$(GO) run ./test/bench/awscalls -service-accounts 20 -roles 5 $(ARGS)

bench-vault-calls: ## count Vault calls for the reference workload (real Vault; ARGS="-kv-secrets=4")
	test/bench/vaultcalls/run.sh $(ARGS)

test-vault: ## provider-vault against a real Vault + kube-apiserver + PostgreSQL (also part of make test's integration pass)
	test/vault/build.sh
	test/cluster/build.sh
	$(GO) test -tags integration -count=1 -timeout 20m ./providers/vault/

vault-server: ## build (or reuse the cached) Vault test server and install PostgreSQL 15
	test/vault/build.sh

bench-secretsync: build ## SecretSync controller: API/backend calls per refresh (100), memory with 1,000 (real kube-apiserver)
	$(GO) run ./test/bench/secretsync -bin $(BIN)/secrets-store-sync-controller

cluster-up: ## start the local single-node cluster (idempotent)
	test/cluster/up.sh

cluster-down: ## stop the local cluster and remove all its state
	test/cluster/down.sh

kubeconfig: ## print the admin kubeconfig path (last line)
	@test/cluster/kubeconfig.sh

e2e: ## end-to-end suite on the local cluster (brings one up if needed)
	test/e2e/run.sh

e2e-restart: ## restarts and crashes on the local node: driver SIGKILL/rollout, kill mid-publish, provider crash, API server away
	SSCSI_VAULT=0 test/e2e/run.sh -tags e2e,restart -run '^(TestDriverRestart|TestDriverKilledMidPublish|TestProviderCrash|TestAPIServerAwayDuringRotation)$$'

e2e-scale: ## 110 pods x 2 volumes (two providers) on the local node at once: time, driver RSS/CPU, cleanup
	SSCSI_VAULT=0 test/e2e/run.sh -tags e2e,scale -run '^TestScaleFullNode$$' -timeout 30m

demo: ## local node + chart + providers + a pod mounting real secrets
	hack/demo.sh

demo-vault: ## `make demo` with HashiCorp Vault: KV v2 + a database credential across rotations
	hack/demo-vault.sh

demo-down: ## undo `make demo` (and `make demo-vault`)
	hack/demo.sh --down

images: ## OCI image tarballs for the driver and providers (no Docker)
	$(GO) run ./hack/images -out $(BIN)/images

chart-lint: ## lint and render-test the Helm chart
	$(GO) test -count=1 ./charts/...
