#!/usr/bin/env bash
# up.sh brings up (or completes) a single-node Kubernetes on 127.0.0.1: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, containerd and kubelet, then our CRDs, the CSIDriver and
# the driver + fake provider as host processes. Idempotent: a running component is left alone unless
# its binary or its arguments changed (start_bg restarts it then, saying why).
# See ../../../shared/LOCAL-CLUSTER.md for why each setting is what it is.
#   SSCSI_NO_DRIVER=1              bring up the node only
#   SSCSI_DRIVER_MODE=chart        install charts/secrets-store with the Helm SDK (driver + fake provider)
#   SSCSI_DRIVER_MODE=daemonset    run the driver and fake provider as DaemonSet pods (default: host
#                                  processes, quickest to debug)
# The SecretSync controller runs with them: a host process (leader election off), or in chart mode
# the chart's Deployment with provider-fake and provider-aws as sidecars (syncController.*).
#   SSCSI_VAULT=1                  also run a local HashiCorp Vault + PostgreSQL (test/vault/localvault)
#                                  and provider-vault (a host process; the chart's DaemonSet in chart
#                                  mode). Only test/e2e/run.sh and make demo-vault set it: it may build
#                                  the Vault test server (cold: 10-20 CPU-minutes), which make cluster-up
#                                  and make demo never do.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ "$(id -u)" -eq 0 ] || die "up.sh needs root (mounts, containerd, kubelet)"
cluster_lock
if [ -n "${SSCSI_NO_DRIVER:-}" ]; then take_node none; else take_node "${SSCSI_DRIVER_MODE:-host}"; fi
log "bringing up the local cluster (state: ${CLUSTER_DIR})"
"${REPO_ROOT}/test/cluster/build.sh"
want_vault=false
case "${SSCSI_VAULT:-0}" in
1 | true) [ -z "${SSCSI_NO_DRIVER:-}" ] && want_vault=true ;;
0 | false | "") ;;
*) die "SSCSI_VAULT must be 1 or 0" ;;
esac
if $want_vault; then
	# shellcheck source=../vault/lib.sh
	source "${REPO_ROOT}/test/vault/lib.sh"
	log "SSCSI_VAULT=1: the local node runs Vault and provider-vault (building the Vault test server if it is not cached)"
	"${REPO_ROOT}/test/vault/build.sh"
fi
mkdir -p "$CLUSTER_DIR" "$LOGS" "$PIDS" "$PKI"
chmod 700 "$CLUSTER_DIR"

# --- project binaries and images -------------------------------------------------------------
if [ -d "${REPO_ROOT}/cmd" ] && [ -z "${SSCSI_SKIP_BUILD:-}" ]; then
	log "building project binaries (make build)"
	# Never carry on with stale binaries from an earlier build.
	make -s -C "$REPO_ROOT" build >"${LOGS}/make-build.log" 2>&1 ||
		{ tail -n 30 "${LOGS}/make-build.log" >&2; die "make build failed (see ${LOGS}/make-build.log)"; }
fi
log "building images (hack/images)"
(cd "$REPO_ROOT" && go run ./hack/images -out bin/images -busybox "$(command -v busybox || echo /bin/busybox)") >"${LOGS}/images.log" 2>&1 ||
	{ cat "${LOGS}/images.log" >&2; die "building images failed"; }

# --- certificates ------------------------------------------------------------------------------
# One generator for every test cluster (package test/cluster/pki, also used by the integration
# tests' control planes): the CA, each component's certificate and the service account key. It
# keeps what exists, so a running node's credentials never change.
log "certificates (test/cluster/pki)"
(cd "$REPO_ROOT" && go build -o bin/genpki ./test/cluster/pki/genpki) || die "building test/cluster/pki/genpki"
"${REPO_ROOT}/bin/genpki" -dir "$PKI" -service-ip "${SERVICE_CIDR%.*}.1" || die "writing the node's certificates into ${PKI}"

write_kubeconfig() {
	local n=$1
	cat >"${CLUSTER_DIR}/${n}.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: sscsi
  cluster:
    server: ${APISERVER}
    certificate-authority: ${PKI}/ca.crt
users:
- name: ${n}
  user:
    client-certificate: ${PKI}/${n}.crt
    client-key: ${PKI}/${n}.key
contexts:
- name: sscsi
  context:
    cluster: sscsi
    user: ${n}
current-context: sscsi
KC
}
for n in admin kubelet controller-manager scheduler; do write_kubeconfig "$n"; done

# --- control plane -----------------------------------------------------------------------------
log "starting control plane"
start_bg etcd etcd --name sscsi --data-dir "${CLUSTER_DIR}/etcd" \
	--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
	--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
	--initial-cluster sscsi=http://127.0.0.1:2380 --log-level warn
wait_for "etcd healthy" 30 curl -fsS http://127.0.0.1:2379/health

start_bg kube-apiserver "${K8S_BIN}/kube-apiserver" \
	--etcd-servers=http://127.0.0.1:2379 \
	--bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port=6443 \
	--tls-cert-file="${PKI}/apiserver.crt" --tls-private-key-file="${PKI}/apiserver.key" \
	--client-ca-file="${PKI}/ca.crt" \
	--service-cluster-ip-range="${SERVICE_CIDR}" \
	--service-account-issuer=https://kubernetes.default.svc.cluster.local \
	--service-account-key-file="${PKI}/sa.pub" --service-account-signing-key-file="${PKI}/sa.key" \
	--authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
	--allow-privileged=true --endpoint-reconciler-type=none \
	--kubelet-preferred-address-types=Hostname \
	--kubelet-client-certificate="${PKI}/apiserver-kubelet-client.crt" \
	--kubelet-client-key="${PKI}/apiserver-kubelet-client.key" \
	--kubelet-certificate-authority="${PKI}/ca.crt" \
	--profiling=false
wait_for "kube-apiserver ready" 90 kc get --raw /readyz

start_bg kube-controller-manager "${K8S_BIN}/kube-controller-manager" \
	--kubeconfig="${CLUSTER_DIR}/controller-manager.kubeconfig" \
	--authentication-kubeconfig="${CLUSTER_DIR}/controller-manager.kubeconfig" \
	--authorization-kubeconfig="${CLUSTER_DIR}/controller-manager.kubeconfig" \
	--bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
	--service-account-private-key-file="${PKI}/sa.key" --root-ca-file="${PKI}/ca.crt" \
	--cluster-signing-cert-file="${PKI}/ca.crt" --cluster-signing-key-file="${PKI}/ca.key" \
	--profiling=false
start_bg kube-scheduler "${K8S_BIN}/kube-scheduler" \
	--kubeconfig="${CLUSTER_DIR}/scheduler.kubeconfig" \
	--authentication-kubeconfig="${CLUSTER_DIR}/scheduler.kubeconfig" \
	--authorization-kubeconfig="${CLUSTER_DIR}/scheduler.kubeconfig" \
	--bind-address=127.0.0.1 --leader-elect=false --profiling=false

# --- containerd and CNI --------------------------------------------------------------------------
# Pods reach the node's address as on a real cluster (a Prometheus or curl pod scrapes the driver on
# the host network at status.hostIP): the bridge is the pods' gateway (it gets the subnet's first
# address) and each pod gets a route to the node's InternalIP through it. Nothing else: no default
# route and no masquerading, so pods still reach no other network. The bridge plugin turns on IPv4
# forwarding for a gateway; down.sh turns it off again if it was off before.
NODE_IP=$(node_ip)
routes=""
if [ -n "$NODE_IP" ]; then
	routes="\"routes\": [{\"dst\": \"${NODE_IP}/32\"}],"
else
	log "WARNING: no default route, so no node address: pods cannot reach the host network"
fi
if [ "$(sysctl -n net.ipv4.ip_forward)" = 0 ] && [ ! -f "${CLUSTER_DIR}/ip-forward-was-off" ]; then
	touch "${CLUSTER_DIR}/ip-forward-was-off"
fi
mkdir -p "${CLUSTER_DIR}/cni" "${CTRD_RUN}"
cat >"${CLUSTER_DIR}/cni/10-sscsi.conflist" <<CNI
{
  "cniVersion": "0.4.0",
  "name": "${CNI_NETWORK}",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "${BRIDGE}",
      "isGateway": true,
      "isDefaultGateway": false,
      "ipMasq": false,
      "hairpinMode": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "${POD_SUBNET}"}]],
        ${routes}
        "dataDir": "${CLUSTER_DIR}/cni-ipam"
      }
    }
  ]
}
CNI
cat >"${CLUSTER_DIR}/containerd.toml" <<TOML
version = 2
root = "${CLUSTER_DIR}/containerd"
state = "${CTRD_RUN}/state"
[grpc]
  address = "${CTRD_SOCK}"
[ttrpc]
  address = "${CTRD_SOCK}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${IMAGE_REPO}/pause:latest"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${CLUSTER_DIR}/cni"
TOML
log "starting containerd"
start_bg containerd containerd --config "${CLUSTER_DIR}/containerd.toml"
wait_for "containerd serving" 30 ctr --address "${CTRD_SOCK}" version
for t in "${REPO_ROOT}"/bin/images/*.tar; do
	ctr --address "${CTRD_SOCK}" -n k8s.io images import "$t" >/dev/null ||
		die "importing image $t"
done
log "  imported images: $(ctr --address "${CTRD_SOCK}" -n k8s.io images ls -q | grep -c "${IMAGE_REPO}/")"

# --- kubelet -----------------------------------------------------------------------------------
# Bidirectional mount propagation needs a shared mount; / is private here.
if [ ! -d "$KUBELET_DIR" ]; then
	mkdir -p "$KUBELET_DIR"
	touch "${CLUSTER_DIR}/created-kubelet-dir"
fi
if ! findmnt -rn -o TARGET "$KUBELET_DIR" | grep -qx "$KUBELET_DIR"; then
	mount --bind "$KUBELET_DIR" "$KUBELET_DIR"
	touch "${CLUSTER_DIR}/bound-kubelet-dir"
fi
mount --make-rshared "$KUBELET_DIR"
cat >"${CLUSTER_DIR}/kubelet.yaml" <<KCFG
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: 10250
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://${CTRD_SOCK}
tlsCertFile: ${PKI}/kubelet-serving.crt
tlsPrivateKeyFile: ${PKI}/kubelet-serving.key
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: ${PKI}/ca.crt
authorization:
  mode: Webhook
evictionHard:
  memory.available: "50Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
resolvConf: /etc/resolv.conf
podLogsDir: ${LOGS}/pods
# Pod resyncs (and with them the requiresRepublish NodePublish calls that drive rotation) every
# 20-30 s instead of kubelet's default 60-90 s: rotation tests wait a third as long.
syncFrequency: 20s
clusterDomain: cluster.local
KCFG
log "starting kubelet"
start_bg kubelet "${K8S_BIN}/kubelet" --config="${CLUSTER_DIR}/kubelet.yaml" \
	--kubeconfig="${CLUSTER_DIR}/kubelet.kubeconfig" --hostname-override=localhost \
	--root-dir="${KUBELET_DIR}" ${NODE_IP:+--node-ip="${NODE_IP}"} --v=2
node_ready() { [ "$(kc get node localhost -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
wait_for "node localhost Ready" 120 node_ready

# --- our API objects ----------------------------------------------------------------------------
if compgen -G "${REPO_ROOT}/manifests/crds/*.yaml" >/dev/null; then
	kc apply --server-side --force-conflicts -f "${REPO_ROOT}/manifests/crds/" >/dev/null
	kc wait --for condition=established --timeout=60s crd --all >/dev/null
	log "  CRDs applied"
fi
kc apply --server-side --force-conflicts -f "${REPO_ROOT}/manifests/csidriver.yaml" >/dev/null
log "  CSIDriver applied"

# --- driver and fake provider as host processes ---------------------------------------------------
if [ -n "${SSCSI_NO_DRIVER:-}" ]; then
	log "cluster up without the driver ($(($(date +%s) - _SSCSI_T0))s)"
	exit 0
fi
if [ ! -d "$PROVIDER_DIR" ]; then
	mkdir -p "$PROVIDER_DIR"
	touch "${CLUSTER_DIR}/created-provider-dir"
fi
driver_registered() { kc get csinode localhost -o 'jsonpath={.spec.drivers[*].name}' | grep -qw secrets-store.csi.k8s.io; }
case "${SSCSI_DRIVER_MODE:-host}" in
host)
	if [ -x "${REPO_ROOT}/bin/provider-fake" ]; then
		start_bg provider-fake "${REPO_ROOT}/bin/provider-fake" \
			--endpoint "${PROVIDER_DIR}/fake.sock" --admin-addr 127.0.0.1:8099
	else
		log "WARNING: bin/provider-fake not built; skipping"
	fi
	if [ -x "${REPO_ROOT}/bin/secrets-store-csi-driver" ]; then
		start_bg secrets-store-csi-driver "${REPO_ROOT}/bin/secrets-store-csi-driver" \
			--endpoint "unix://${KUBELET_DIR}/plugins/csi-secrets-store/csi.sock" --nodeid localhost \
			--kubeconfig "${ADMIN_KUBECONFIG}" --provider-volume "${PROVIDER_DIR}" \
			--enable-secret-rotation --rotation-poll-interval 10s --metrics-addr :8095 \
			--kubelet-dir "${KUBELET_DIR}" -v 4
		wait_for "driver registered with kubelet (CSINode)" 60 driver_registered
	else
		log "WARNING: bin/secrets-store-csi-driver not built; the node runs without the driver"
	fi
	;;
daemonset)
	# The real deployment shape: privileged pods from our images, Bidirectional propagation.
	for b in secrets-store-csi-driver provider-fake; do
		[ -f "${REPO_ROOT}/bin/images/${b}.tar" ] || die "bin/images/${b}.tar missing: make build images"
	done
	kc apply -f "${REPO_ROOT}/test/cluster/driver-daemonset.yaml" >/dev/null
	kc -n sscsi-system rollout status ds/provider-fake --timeout=90s >/dev/null
	kc -n sscsi-system rollout status ds/secrets-store-csi-driver --timeout=90s >/dev/null
	log "  driver and fake provider DaemonSets ready"
	wait_for "driver registered with kubelet (CSINode)" 60 driver_registered
	;;
chart)
	# What users install: charts/secrets-store through the Helm Go SDK (hack/demoinstall), least-
	# privilege RBAC, Secret sync on, the fake provider on the node's loopback for the admin API.
	for b in secrets-store-csi-driver provider-fake secrets-store-sync-controller provider-aws; do
		[ -f "${REPO_ROOT}/bin/images/${b}.tar" ] || die "bin/images/${b}.tar missing: make build images"
	done
	(cd "$REPO_ROOT" && go build -o bin/demoinstall ./hack/demoinstall)
	values="${CLUSTER_DIR}/chart-values.yaml"
	vault_values=""
	if $want_vault; then
		# provider-vault the way the chart runs it, on the node's network to reach the local Vault;
		# -v=10 so the e2e suite proves even its most verbose log holds no secret and no token.
		[ -f "${REPO_ROOT}/bin/images/provider-vault.tar" ] || die "bin/images/provider-vault.tar missing: make build images"
		vault_values="vault: {enabled: true, image: {repository: ${IMAGE_REPO}/provider-vault, tag: latest, pullPolicy: Never},
    hostNetwork: true, address: \"http://${VAULT_LISTEN}\", healthAddr: \"${PROVIDER_VAULT_HEALTH}\", cacheTTL: ${VAULT_CACHE_TTL}, extraArgs: [\"-v=10\"]}"
	fi
	cat >"$values" <<VALUES
linux:
  image: {repository: ${IMAGE_REPO}/secrets-store-csi-driver, tag: latest, pullPolicy: Never}
  hostNetwork: true
  metricsAddr: ":8095"
  env: [{name: KUBERNETES_SERVICE_HOST, value: "127.0.0.1"}, {name: KUBERNETES_SERVICE_PORT, value: "6443"}]
logVerbosity: 4
enableSecretRotation: true
rotationPollInterval: 10s
syncSecret: {enabled: true}
tokenRequests: [{audience: sscsi-e2e}, {audience: sts.amazonaws.com}, {audience: vault}]
providers:
  fake:
    enabled: true
    image: {repository: ${IMAGE_REPO}/provider-fake, tag: latest, pullPolicy: Never}
    adminAddr: "127.0.0.1:8099"
  # Only the sync controller's sidecar: provider-aws serves the node as a host process (below).
  aws:
    enabled: false
    image: {repository: ${IMAGE_REPO}/provider-aws, tag: latest, pullPolicy: Never}
    region: us-east-1
    endpointURL: "http://${MOTO_ADDR}"
    cacheTTL: ${AWS_CACHE_TTL}
    env: [{name: KUBERNETES_SERVICE_HOST, value: "127.0.0.1"}, {name: KUBERNETES_SERVICE_PORT, value: "6443"}]
  ${vault_values}
# The SecretSync controller with both providers as sidecars; the node's network reaches the API
# server (no kube-proxy here) and moto.
syncController:
  enabled: true
  image: {repository: ${IMAGE_REPO}/secrets-store-sync-controller, tag: latest, pullPolicy: Never}
  hostNetwork: true
  serverAddress: "${SYNC_CONTROLLER_ADDR}"
  env: [{name: KUBERNETES_SERVICE_HOST, value: "127.0.0.1"}, {name: KUBERNETES_SERVICE_PORT, value: "6443"}]
  rotationPollInterval: ${SYNC_POLL_INTERVAL}
  logVerbosity: 4
  providers: {fake: {enabled: true}, aws: {enabled: true}, vault: {enabled: ${want_vault}}}
VALUES
	"${REPO_ROOT}/bin/demoinstall" -kubeconfig "$ADMIN_KUBECONFIG" -namespace kube-system -release secrets-store \
		-chart "${REPO_ROOT}/charts/secrets-store" -values "$values" -replace-unmanaged-csidriver -timeout 3m
	log "  chart installed (release kube-system/secrets-store)"
	wait_for "driver registered with kubelet (CSINode)" 90 driver_registered
	;;
*) die "SSCSI_DRIVER_MODE must be host, daemonset or chart" ;;
esac

# provider-aws against moto_server (an AWS emulator) on the host: IRSA through moto's STS.
if [ -x "${REPO_ROOT}/bin/provider-aws" ]; then
	moto_ok=true
	if ! pid_alive moto-server >/dev/null && curl -fsS "http://${MOTO_ADDR}/moto-api/" >/dev/null 2>&1; then
		log "  a moto_server we did not start already serves ${MOTO_ADDR} (make demo's?); using it"
	elif motoserver=$(motoserver_bin) && "$motoserver" -find >/dev/null; then
		start_bg moto-server "$motoserver" -addr "$MOTO_ADDR"
		wait_for "moto_server serving on ${MOTO_ADDR}" 60 curl -fsS "http://${MOTO_ADDR}/moto-api/"
	else
		moto_ok=false
		log "WARNING: moto_server not found; provider-aws not started (the AWS e2e case will fail)"
	fi
	if $moto_ok; then
		start_bg provider-aws "${REPO_ROOT}/bin/provider-aws" --endpoint "${PROVIDER_DIR}/aws.sock" \
			--endpoint-url "http://${MOTO_ADDR}" --region us-east-1 --kubeconfig "${ADMIN_KUBECONFIG}" \
			--metrics-addr 127.0.0.1:8990 --cache-ttl "$AWS_CACHE_TTL"
		wait_for "provider-aws socket" 30 test -S "${PROVIDER_DIR}/aws.sock"
	fi
fi

# The SecretSync controller: the chart's Deployment in chart mode (above), else a host process
# using the node's provider sockets.
sync_ready() { curl -fsS "http://${SYNC_CONTROLLER_ADDR}/readyz"; }
if [ "${SSCSI_DRIVER_MODE:-host}" = chart ]; then
	wait_for "SecretSync controller ready" 90 sync_ready
elif [ -x "${REPO_ROOT}/bin/secrets-store-sync-controller" ]; then
	if ! pid_alive secrets-store-sync-controller >/dev/null && sync_ready >/dev/null 2>&1; then
		die "something we did not start serves ${SYNC_CONTROLLER_ADDR} (a SecretSync controller left by a down.sh that did not know it? see: ss -ltnp | grep ${SYNC_CONTROLLER_ADDR##*:})"
	fi
	# Tokens for provider-aws (IRSA) and, with SSCSI_VAULT=1, provider-vault (its -audience).
	sync_audiences=sts.amazonaws.com
	if $want_vault; then sync_audiences+=",vault"; fi
	# One started for another set (an up.sh without SSCSI_VAULT=1) is restarted by start_bg.
	start_bg secrets-store-sync-controller "${REPO_ROOT}/bin/secrets-store-sync-controller" \
		--kubeconfig "${ADMIN_KUBECONFIG}" --provider-volume "${PROVIDER_DIR}" --leader-elect=false \
		--controller-server-address "${SYNC_CONTROLLER_ADDR}" --rotation-poll-interval "${SYNC_POLL_INTERVAL}" \
		--token-request-audience "${sync_audiences}" -v 4
	wait_for "SecretSync controller ready" 60 sync_ready
else
	log "WARNING: bin/secrets-store-sync-controller not built; SecretSyncs are not reconciled"
fi

# HashiCorp Vault (SSCSI_VAULT=1): test/vault/localvault runs the Vault test server and a
# PostgreSQL 15, with the kubernetes auth method reviewing logins against this node's apiserver;
# provider-vault runs with the chart's flags (host and daemonset modes) or as the chart's DaemonSet.
if $want_vault; then
	[ -x "${REPO_ROOT}/bin/provider-vault" ] || die "bin/provider-vault not built (make build)"
	(cd "$REPO_ROOT" && go build -o bin/localvault ./test/vault/localvault) ||
		die "building test/vault/localvault failed"
	pid_alive localvault >/dev/null || stop_stray_localvault
	start_bg localvault "${REPO_ROOT}/bin/localvault" serve -kubeconfig "${ADMIN_KUBECONFIG}" \
		-dir "${VAULT_DIR}" -pg-dir "${VAULT_PG_DIR}" -listen "${VAULT_LISTEN}"
	# Ready: info.json written by the running localvault (its PID in it; not a stale one). Dead: stop waiting.
	vault_ready() { local pid; pid=$(pid_alive localvault) && grep -q "\"pid\":${pid}[,}]" "${VAULT_DIR}/info.json" 2>/dev/null; }
	vault_settled() { vault_ready || ! pid_alive localvault >/dev/null; }
	wait_for "local Vault and PostgreSQL ready" 120 vault_settled || true
	if ! vault_ready; then
		tail -n 20 "${LOGS}/localvault.log" >&2
		die "localvault did not start; see ${LOGS}/localvault.log and ${VAULT_DIR}/vault.log"
	fi
	if [ "${SSCSI_DRIVER_MODE:-host}" = chart ]; then
		ds=$(kc -n kube-system get ds -l app.kubernetes.io/name=secrets-store-provider-vault -o name)
		[ -n "$ds" ] || die "the chart installed no provider-vault DaemonSet (providers.vault.enabled)"
		kc -n kube-system rollout status "$ds" --timeout=90s >/dev/null ||
			die "the chart's provider-vault DaemonSet is not ready"
	else
		start_bg provider-vault "${REPO_ROOT}/bin/provider-vault" "${PROVIDER_VAULT_ARGS[@]}"
	fi
	wait_for "provider-vault socket" 30 test -S "${PROVIDER_DIR}/vault.sock" || die "provider-vault did not start"
elif [ -z "${SSCSI_NO_DRIVER:-}" ] && ! pid_alive localvault >/dev/null; then
	log "  no Vault on this node (SSCSI_VAULT=1 starts it: make e2e, make demo-vault)"
fi
log "cluster up in $(($(date +%s) - _SSCSI_T0))s; kubeconfig: ${ADMIN_KUBECONFIG}"
