#!/usr/bin/env bash
# integration.sh runs every test with the `integration` build tag against a real etcd and
# kube-apiserver that each test package starts itself (package test/cluster/controlplane).
# It makes sure the binaries exist first; tests fail (never skip) if they are missing anyway.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"${REPO_ROOT}/test/cluster/build.sh"
"${REPO_ROOT}/test/vault/build.sh"
export SSCSI_K8S_BIN="${K8S_BIN}"
log "running integration tests (go test -tags integration ./...)"
cd "$REPO_ROOT"
go test -tags integration -count=1 "$@" ./...
log "integration tests passed"
