#!/usr/bin/env bash
# run.sh runs the end-to-end suite against the local cluster, bringing it up first (up.sh is
# idempotent, so a running cluster is reused and only missing parts are started). Failed tests leave
# their namespace state and every component log in _artifacts/. Extra arguments go to go test.
# The suite's Vault case needs the local Vault and provider-vault, so this sets SSCSI_VAULT=1 for
# up.sh (which builds the Vault test server if it is not cached; make test has built it already in
# make test-integration). SSCSI_VAULT=0 leaves Vault out, for runs that select no Vault case.
# The suite's tests mostly wait (for kubelet, rotation, Vault), so up to SSCSI_E2E_PARALLEL of them
# (default 8) run at once instead of go test's default of GOMAXPROCS (2 on a 2-core machine); an
# explicit -parallel among the arguments wins. The restart cases never run in parallel.
set -euo pipefail
# shellcheck source=../cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../cluster/lib.sh"

cluster_lock
SSCSI_VAULT="${SSCSI_VAULT:-1}" "${REPO_ROOT}/test/cluster/up.sh"
export SSCSI_KUBECONFIG="${ADMIN_KUBECONFIG}" SSCSI_KUBECTL="${KUBECTL}" SSCSI_CLUSTER_LOGS="${LOGS}"
export SSCSI_ARTIFACTS="${SSCSI_ARTIFACTS:-${REPO_ROOT}/_artifacts}"
log "running the e2e suite (artifacts on failure: ${SSCSI_ARTIFACTS})"
cd "$REPO_ROOT"
start=$(date +%s)
set +e
go test -tags e2e -count=1 -v -timeout 20m -parallel "${SSCSI_E2E_PARALLEL:-8}" "$@" ./test/e2e/ 2>&1 | tee /tmp/sscsi-e2e.log |
	grep --line-buffered -E '^(--- |\s+--- |ok|FAIL|PASS|e2e:)|_test.go:'
rc=${PIPESTATUS[0]}
set -e
log "e2e suite finished in $(($(date +%s) - start))s (exit ${rc}; full log /tmp/sscsi-e2e.log)"
exit "$rc"
