#!/usr/bin/env bash
# build.sh builds the Vault test server (module test/vault/server: Vault as a library, in-memory
# storage, only the backends the tests use) into ${SSCSI_CACHE}/vault/<version>/bin/vault-server,
# reused while the server's sources (main.go, go.mod, go.sum) are unchanged. Also makes sure
# PostgreSQL 15 is installed (the database secrets engine's tests run it).
#   --force   rebuild even if the binary is cached
# A cold build downloads ~650 MB of modules and compiles for 10-20 CPU-minutes; it waits for any
# Kubernetes build (test/cluster/build.sh) first, so two heavy builds never share the machine.
set -euo pipefail
# shellcheck source=../cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../cluster/lib.sh"
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

force=false
for a in "$@"; do
	case "$a" in
	--force) force=true ;;
	*) die "unknown argument $a" ;;
	esac
done

if [ ! -x "${PG_BIN}/postgres" ]; then
	log "installing postgresql-${PG_MAJOR}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq --no-install-recommends "postgresql-${PG_MAJOR}" >/dev/null
fi

src="${REPO_ROOT}/test/vault/server"
stamp() { cat "${src}/go.mod" "${src}/go.sum" "${src}"/*.go | sha256sum | cut -d' ' -f1; }
want=$(stamp)
cached() { [ -x "${VAULT_SERVER}" ] && [ "$(cat "${VAULT_SERVER}.source" 2>/dev/null)" = "$want" ]; }

build_lock "${SSCSI_CACHE}/vault/build.lock" "another Vault build is running"
if cached && ! $force; then
	log "Vault server ${VAULT_VERSION} cached in ${VAULT_SERVER}"
	exit 0
fi

# One heavy build at a time on a 2-core machine: wait for a running Kubernetes build.
build_lock "${SSCSI_CACHE}/k8s/build.lock" "a Kubernetes build is running (Vault builds after it)"

bin_dir="$(dirname "${VAULT_SERVER}")"
mkdir -p "$bin_dir"
blog="${SSCSI_CACHE}/vault/${VAULT_VERSION}/build.log"
log "building the Vault ${VAULT_VERSION} test server (cold: ~650 MB of modules, 10-20 CPU-minutes; log: ${blog})"
start=$(date +%s)
(
	cd "$src"
	# -p bounds parallel compiles (the machine is shared); -mod=readonly: go.sum is complete.
	/usr/bin/time -f 'cpu: user %U s, system %S s, wall %e s, max RSS %M KiB' \
		env CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly -p=${SSCSI_BUILD_P:-2}" \
		go build -v -trimpath -ldflags "-s -w" -o "${VAULT_SERVER}.tmp" .
) >"$blog" 2>&1 &
wait_build $! "$blog" "Vault server"
mv "${VAULT_SERVER}.tmp" "${VAULT_SERVER}"
echo "$want" >"${VAULT_SERVER}.source"
log "built the Vault server in $(($(date +%s) - start))s ($(tail -1 "$blog")) into ${VAULT_SERVER}"
