#!/usr/bin/env bash
# Counts provider-vault's Vault calls for the reference workload (see the
# package doc of vaultcalls_test.go) against a real Vault and kube-apiserver.
# Usage: test/bench/vaultcalls/run.sh [-kv-secrets=4 -cache-ttl=30s ...]
set -euo pipefail
# shellcheck source=../../cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../cluster/lib.sh"
"${REPO_ROOT}/test/cluster/build.sh"
"${REPO_ROOT}/test/vault/build.sh"
export SSCSI_K8S_BIN="${K8S_BIN}"
cd "$REPO_ROOT"
go test -tags vaultcalls -count=1 -timeout 30m -run '^TestVaultCalls$' -v ./test/bench/vaultcalls -args "$@"
