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
cd "$REPO_ROOT"

DEMO_DIR="${SSCSI_DEMO_DIR:-/var/lib/sscsi-demo}"
VDIR="${VAULT_DIR}"
DEMO_NS=sscsi-demo
RELEASE=secrets-store
RELEASE_NS=kube-system
VAULT_ADDR_DEMO="${VAULT_LISTEN}"
ROTATIONS="${DEMO_ROTATIONS:-2}"

step() { printf '\n' >&2; log "== $*"; }
demo_kc() { "${KUBECTL}" --kubeconfig "${ADMIN_KUBECONFIG}" "$@"; }
lv() { bin/localvault "$1" -dir "$VDIR" "${@:2}"; }

[ "$(id -u)" -eq 0 ] || die "the demo needs root (it runs a local Kubernetes node)"
if [ "${1:-}" = --down ]; then
	# localvault is a component of the local node (its PID file is in the cluster's state):
	# demo.sh --down tears the node down with it.
	exec "${REPO_ROOT}/hack/demo.sh" --down
fi
cluster_lock
mkdir -p "$DEMO_DIR" bin

# --- 1. the cluster and the Vault server -------------------------------------------------------------
step "Vault test server (test/vault/build.sh: built once, ~10-20 CPU-minutes cold, then cached)"
test/vault/build.sh
# One driver per node: a node that `make e2e`, `make test` or `make demo` left running with their
# own driver is torn down first (take_node); one a previous `make demo-vault` left is reused.
take_node demo-vault
step "starting the LOCAL single-node cluster (test/cluster/up.sh; builds what it needs, reuses caches)"
echo "local ${ADMIN_KUBECONFIG}" >"${DEMO_DIR}/mode"
SSCSI_NO_DRIVER=1 "${REPO_ROOT}/test/cluster/up.sh"

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
go build -o bin/demoinstall ./hack/demoinstall
api_env='[{name: KUBERNETES_SERVICE_HOST, value: "127.0.0.1"}, {name: KUBERNETES_SERVICE_PORT, value: "6443"}]'
cat >"${DEMO_DIR}/values-vault.yaml" <<VALUES
# Written by hack/demo-vault.sh.
linux:
  image: {repository: ${IMAGE_REPO}/secrets-store-csi-driver, tag: latest, pullPolicy: Never}
  hostNetwork: true
  metricsAddr: ":8095"
  env: ${api_env}
logVerbosity: 2
enableSecretRotation: true
rotationPollInterval: 10s
syncSecret: {enabled: true}
providers:
  vault:
    enabled: true
    image: {repository: ${IMAGE_REPO}/provider-vault, tag: latest, pullPolicy: Never}
    hostNetwork: true
    address: "http://${VAULT_ADDR_DEMO}"
    healthAddr: "127.0.0.1:8991"
VALUES
bin/demoinstall -kubeconfig "$ADMIN_KUBECONFIG" -namespace "$RELEASE_NS" -release "$RELEASE" \
	-values "${DEMO_DIR}/values-vault.yaml" -replace-unmanaged-csidriver -timeout 3m
drv_registered() { [ -n "$(demo_kc get csinode -o 'jsonpath={.items[*].spec.drivers[?(@.name=="secrets-store.csi.k8s.io")].name}')" ]; }
wait_for "driver registered with kubelet (CSINode)" 90 drv_registered || die "the driver did not register"
wait_for "provider-vault socket" 90 test -S "${PROVIDER_DIR}/vault.sock" || die "provider-vault is not ready"

# --- 3. a pod mounting secrets -------------------------------------------------------------------------
step "namespace ${DEMO_NS}: service account demo-app, a SecretProviderClass (provider: vault), a pod"
demo_kc apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: ${DEMO_NS}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: demo-app, namespace: ${DEMO_NS}}
---
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
demo_kc -n "$DEMO_NS" delete pod demo-vault --ignore-not-found --grace-period=1 --wait=true >/dev/null
demo_kc apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: demo-vault, namespace: ${DEMO_NS}}
spec:
  serviceAccountName: demo-app
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: ${IMAGE_REPO}/busybox:latest
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "sleep 86400"]
    volumeMounts:
    - {name: vault, mountPath: /mnt/vault, readOnly: true}
  volumes:
  - name: vault
    csi:
      driver: secrets-store.csi.k8s.io
      readOnly: true
      volumeAttributes: {secretProviderClass: demo-vault}
YAML
if ! demo_kc -n "$DEMO_NS" wait --for=condition=Ready pod/demo-vault --timeout=120s >/dev/null; then
	demo_kc -n "$DEMO_NS" get events --field-selector involvedObject.name=demo-vault >&2 || true
	die "pod ${DEMO_NS}/demo-vault did not start"
fi
log "  pod ${DEMO_NS}/demo-vault is Running"

file() { demo_kc -n "$DEMO_NS" exec demo-vault -- cat "/mnt/vault/$1" 2>/dev/null; }
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
# shellcheck disable=SC2016 # a Go template, not shell
demo_kc -n "$DEMO_NS" get secret demo-db \
	-o 'go-template={{range $k, $v := .data}}  {{$k}} = {{$v | base64decode}}{{"\n"}}{{end}}' >&2 || true

# --- 4. rotations ---------------------------------------------------------------------------------------
user0=$(file db-username)
for round in $(seq "$ROTATIONS"); do
	key="ak-vault-$(printf '%04d' $((round + 1)))"
	ver=$(lv put demo/config api-key="$key" greeting="hello from Vault")
	step "rotation ${round}/${ROTATIONS}: secret/demo/config api-key is now ${key} (KV v2 version ${ver}); waiting for kubelet's republish (about a minute)"
	t_rot=$(date +%s)
	until [ "$(file api-key)" = "$key" ]; do
		[ $(($(date +%s) - t_rot)) -lt 240 ] || die "api-key did not change within 240s; kubectl -n ${DEMO_NS} get events"
		sleep 3
	done
	log "  api-key changed $(($(date +%s) - t_rot))s after the write"
	show_files
	if [ "$(file db-username)" = "$user0" ]; then
		log "  the database credential is the same one: kept for this pod, not re-issued on a poll (its 1h lease is renewed once half of it has passed)"
	else
		log "  WARNING: the database credential changed"
	fi
	check_db
done

step "done in $(($(date +%s) - _SSCSI_T0))s. Try:"
cat >&2 <<EOF
  export KUBECONFIG=${ADMIN_KUBECONFIG}
  ${KUBECTL} -n ${DEMO_NS} exec demo-vault -- ls -la /mnt/vault
  bin/localvault put -dir ${VDIR} demo/config api-key=new greeting=hi
  make demo-down
EOF
