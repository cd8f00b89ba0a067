#!/usr/bin/env bash
# demo-vault.sh is `make demo-vault`: `make demo`'s flow with HashiCorp Vault. The local single-node
# Kubernetes (test/cluster), a real Vault and PostgreSQL 15 on the host (test/vault/localvault:
# kubernetes auth against the node's apiserver, KV v2, the database engine), the secrets-store chart
# with provider-vault (Helm Go SDK), a pod mounting a KV v2 value and a leased database credential,
# Secret sync, and rotations: the KV change reaches the file, the database credential stays the same
# and keeps working.
#
#   hack/demo-vault.sh            run (or re-run) the demo
#   hack/demo-vault.sh --down     undo it (`make demo-down` also does)
#   DEMO_ROTATIONS=n              rotation rounds to show (default 2; each takes about a minute)
set -euo pipefail
# shellcheck source=../test/cluster/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/test/cluster/lib.sh"
# shellcheck source=../test/vault/lib.sh
source "${REPO_ROOT}/test/vault/lib.sh"
# shellcheck source=demo-lib.sh
source "${REPO_ROOT}/hack/demo-lib.sh"
cd "$REPO_ROOT"

VDIR="${VAULT_DIR}"
VAULT_ADDR_DEMO="${VAULT_LISTEN}"
ROTATIONS="${DEMO_ROTATIONS:-2}"

lv() { bin/localvault "$1" -dir "$VDIR" "${@:2}"; }

[ -z "${DEMO_KUBECONFIG:-}" ] || die "make demo-vault runs on the local node only (DEMO_KUBECONFIG is for make demo)"
demo_begin "$@"

# --- 1. the cluster and the Vault server -------------------------------------------------------------
step "Vault test server (test/vault/build.sh: built once, ~10-20 CPU-minutes cold, then cached)"
test/vault/build.sh
demo_local_node demo-vault

step "Vault ${VAULT_VERSION} and PostgreSQL ${PG_MAJOR} on the host (test/vault/localvault)"
go build -o bin/localvault ./test/vault/localvault
# A component of the node (PID and log in the cluster's state), so `make demo-down` stops it.
stop_component localvault
stop_stray_localvault
rm -f "${VDIR}/info.json"
start_bg localvault "${REPO_ROOT}/bin/localvault" serve -kubeconfig "$ADMIN_KUBECONFIG" -dir "$VDIR" \
	-pg-dir "$VAULT_PG_DIR" -listen "$VAULT_ADDR_DEMO" -namespace "$DEMO_NS" -service-account demo-app
wait_for "Vault unsealed and configured" 120 test -f "${VDIR}/info.json" ||
	die "localvault did not start; see ${LOGS}/localvault.log and ${VDIR}/vault.log"
log "  Vault on http://${VAULT_ADDR_DEMO}: kubernetes auth (role app -> ${DEMO_NS}/demo-app, every login a TokenReview),"
log "  KV v2 at secret/, database/creds/app issuing PostgreSQL users with 1h leases (root token: ${VDIR}/info.json, 0600)"
v1=$(lv put demo/config api-key=ak-vault-0001 greeting="hello from Vault")
log "  wrote secret/demo/config (KV v2 version ${v1})"

# --- 2. the chart ------------------------------------------------------------------------------------
step "installing charts/secrets-store with provider-vault (Helm Go SDK, hack/demoinstall)"
{
	echo "# Written by hack/demo-vault.sh."
	demo_chart_values
	cat <<VALUES
providers:
  vault:
    enabled: true
    image: {repository: ${IMAGE_REPO_DEMO}/provider-vault, tag: latest, pullPolicy: ${DEMO_PULL}}
    hostNetwork: true
    address: "http://${VAULT_ADDR_DEMO}"
    healthAddr: "${PROVIDER_VAULT_HEALTH}"
VALUES
} >"${DEMO_DIR}/values-vault.yaml"
demo_install_chart "${DEMO_DIR}/values-vault.yaml"
wait_for "provider-vault socket" 90 test -S "${PROVIDER_DIR}/vault.sock" || die "provider-vault is not ready"

# --- 3. a pod mounting secrets -------------------------------------------------------------------------
step "namespace ${DEMO_NS}: service account demo-app, a SecretProviderClass (provider: vault), a pod"
demo_namespace <<YAML
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {name: demo-vault, namespace: ${DEMO_NS}}
spec:
  provider: vault
  parameters:
    # The same parameters as hashicorp/vault-csi-provider.
    roleName: app
    vaultAddress: http://${VAULT_ADDR_DEMO}
    audience: vault
    objects: |
      - objectName: api-key
        secretPath: secret/data/demo/config
        secretKey: api-key
      - objectName: greeting
        secretPath: secret/data/demo/config
        secretKey: greeting
      - objectName: db-username
        secretPath: database/creds/app
        secretKey: username
      - objectName: db-password
        secretPath: database/creds/app
        secretKey: password
  secretObjects:
  - secretName: demo-db
    type: Opaque
    data:
    - {objectName: db-username, key: username}
    - {objectName: db-password, key: password}
YAML
demo_pod demo-vault vault=demo-vault

file() { demo_kc -n "$DEMO_NS" exec demo-vault -- cat "/mnt/vault/$1" 2>/dev/null; }
file_is() { [ "$(file "$1")" = "$2" ]; }
show_files() {
	local f
	for f in api-key greeting db-username db-password; do
		printf '  %-24s %s\n' "/mnt/vault/$f" "$(file "$f")" >&2
	done
}
check_db() {
	file db-password | lv check-db -user "$(file db-username)" | sed 's/^/  /' >&2
	log "  Vault holds $(lv leases database/creds/app) lease(s) of database/creds/app (one credential issued for the pod)"
}
step "files mounted in the pod (kubectl exec demo-vault -- cat ...)"
show_files
step "the database credential is a real PostgreSQL user (psql with the mounted username and password)"
check_db
step "the synced Kubernetes Secret ${DEMO_NS}/demo-db"
wait_for "Secret demo-db synced" 30 demo_kc -n "$DEMO_NS" get secret demo-db || true
demo_show_secret || true

# --- 4. rotations ---------------------------------------------------------------------------------------
user0=$(file db-username)
for round in $(seq "$ROTATIONS"); do
	key="ak-vault-$(printf '%04d' $((round + 1)))"
	ver=$(lv put demo/config api-key="$key" greeting="hello from Vault")
	step "rotation ${round}/${ROTATIONS}: secret/demo/config api-key is now ${key} (KV v2 version ${ver}); waiting for kubelet's republish (about a minute)"
	demo_wait_change api-key file_is api-key "$key"
	show_files
	if [ "$(file db-username)" = "$user0" ]; then
		log "  the database credential is the same one: kept for this pod, not re-issued on a poll (its 1h lease is renewed once half of it has passed)"
	else
		log "  WARNING: the database credential changed"
	fi
	check_db
done

demo_done <<EOF
  export KUBECONFIG=${DEMO_KC}
  ${KUBECTL_BIN} -n ${DEMO_NS} exec demo-vault -- ls -la /mnt/vault
  bin/localvault put -dir ${VDIR} demo/config api-key=new greeting=hi
  make demo-down
EOF
