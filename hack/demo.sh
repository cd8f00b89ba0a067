#!/usr/bin/env bash
# demo.sh is `make demo`: a local single-node Kubernetes (test/cluster), the secrets-store chart
# installed through the Helm Go SDK (hack/demoinstall) with the fake provider and the AWS provider
# pointed at a local moto_server, a pod mounting secrets from both, Secret sync, and a rotation.
#
#   hack/demo.sh            run (or re-run) the demo
#   hack/demo.sh --down     undo it (`make demo-down`)
#
#   DEMO_KUBECONFIG=path    install into that cluster instead of starting the local node. Its nodes
#                           must be able to run the images (DEMO_IMAGE_REPO, default localhost/sscsi,
#                           e.g. after `kind load image-archive bin/images/<name>.tar`) and reach
#                           moto_server at DEMO_MOTO_URL (default http://127.0.0.1:5055, so only a
#                           node on this machine can).
#   DEMO_MOTO_PORT          moto_server port (default 5055)
set -euo pipefail
# shellcheck source=../test/cluster/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/test/cluster/lib.sh"
cd "$REPO_ROOT"

DEMO_DIR="${SSCSI_DEMO_DIR:-/var/lib/sscsi-demo}"
DEMO_NS=sscsi-demo
RELEASE=secrets-store
RELEASE_NS=kube-system
MOTO_PORT="${DEMO_MOTO_PORT:-5055}"
MOTO_URL="${DEMO_MOTO_URL:-http://127.0.0.1:${MOTO_PORT}}"
IMAGE_REPO_DEMO="${DEMO_IMAGE_REPO:-${IMAGE_REPO}}"
# moto keeps one store per account: the role is in its default account, where demoaws seeds.
ROLE_ARN="arn:aws:iam::123456789012:role/demo-app"
FAKE_ADMIN=127.0.0.1:8099
# provider-fake writes its admin token next to its socket (root-only).
FAKE_TOKEN=/var/run/secrets-store-csi-providers/fake-admin.token

step() { printf '\n' >&2; log "== $*"; }

# demo_kc runs kubectl against the demo's cluster.
demo_kc() { "${KUBECTL_BIN}" --kubeconfig "${DEMO_KC}" "$@"; }

# moto_pid prints the PID of the moto_server this demo started, if it still runs.
moto_pid() {
	local pid
	[ -f "${DEMO_DIR}/moto.pid" ] || return 1
	read -r pid _ <"${DEMO_DIR}/moto.pid" || return 1
	[ -d "/proc/${pid}" ] || return 1
	grep -qF "moto" "/proc/${pid}/cmdline" 2>/dev/null || return 1
	echo "$pid"
}

down() {
	local mode="" kcfg=""
	[ -f "${DEMO_DIR}/mode" ] && read -r mode kcfg <"${DEMO_DIR}/mode"
	log "make demo-down (mode: ${mode:-unknown})"
	if [ "$mode" = existing ] && [ -n "$kcfg" ]; then
		DEMO_KC="$kcfg"
		KUBECTL_BIN="${KUBECTL_BIN:-$(command -v kubectl || echo "${KUBECTL}")}"
		demo_kc delete namespace "$DEMO_NS" --ignore-not-found --wait=true >/dev/null || true
		[ -x bin/demoinstall ] || go build -o bin/demoinstall ./hack/demoinstall
		bin/demoinstall -kubeconfig "$kcfg" -namespace "$RELEASE_NS" -release "$RELEASE" -uninstall || true
		log "  uninstalled release ${RELEASE} and namespace ${DEMO_NS} from ${kcfg} (CRDs stay)"
	fi
	if pid=$(moto_pid); then
		kill "$pid" 2>/dev/null || true
		log "  stopped moto_server (pid ${pid})"
	fi
	if [ "$mode" != existing ]; then
		owner=$(driver_owner)
		if [ "$owner" != demo ] && [ -n "$owner" ]; then
			# make test/e2e took the node over since (take_node): it is no longer the demo's.
			log "  the local node now runs the driver of $(owner_words "$owner"): leaving it up"
		elif pgrep -f 'e2e.test' >/dev/null; then
			log "  an e2e run uses the local cluster: leaving it up (make cluster-down when it is done)"
		else
			"${REPO_ROOT}/test/cluster/down.sh"
		fi
	fi
	rm -rf "$DEMO_DIR"
	log "demo removed"
}

[ "$(id -u)" -eq 0 ] || die "the demo needs root (it runs a local Kubernetes node)"
# The local node is shared with `make cluster-up/down/e2e`: hold the cluster lock for the whole
# demo (up.sh and down.sh take it too), so nobody tears the node down in the middle of it.
if [ -z "${DEMO_KUBECONFIG:-}" ]; then
	cluster_lock
fi
if [ "${1:-}" = --down ]; then
	down
	exit 0
fi

mkdir -p "$DEMO_DIR" bin
MOTOSERVER=$(motoserver_bin) || die "could not build test/moto/motoserver"
"$MOTOSERVER" -find >/dev/null ||
	die "moto_server not found (looked at \$MOTO_SERVER, PATH, pyenv, python3 -m moto.server). Install it: pip install 'moto[server]'"

# --- 1. the cluster ---------------------------------------------------------------------------------
if [ -n "${DEMO_KUBECONFIG:-}" ]; then
	[ -f "$DEMO_KUBECONFIG" ] || die "DEMO_KUBECONFIG=${DEMO_KUBECONFIG}: no such file"
	DEMO_KC=$(readlink -f "$DEMO_KUBECONFIG")
	KUBECTL_BIN=$(command -v kubectl || echo "${KUBECTL}")
	[ -x "$KUBECTL_BIN" ] || die "kubectl not found: put it on PATH"
	step "installing into the EXISTING cluster of ${DEMO_KC} (no local node is started)"
	demo_kc version >/dev/null || die "cannot reach the cluster of ${DEMO_KC}"
	echo "existing ${DEMO_KC}" >"${DEMO_DIR}/mode"
	step "building binaries and images (make build images)"
	make -s build >/dev/null
	go run ./hack/images -out bin/images -busybox "$(command -v busybox || echo /bin/busybox)" >/dev/null
	log "  images are in bin/images/*.tar; load them into your nodes (kind load image-archive ...,"
	log "  minikube image load ...) or push them and set DEMO_IMAGE_REPO"
else
	# One node per machine, and we hold its lock. If `make cluster-up`, `make e2e` or `make test` left
	# it running with their own driver, two drivers would fight over the same sockets: take_node
	# tears such a node down (and reuses one a previous `make demo` left).
	take_node demo
	step "starting the LOCAL single-node cluster (test/cluster/up.sh; builds what it needs, reuses caches)"
	echo "local ${ADMIN_KUBECONFIG}" >"${DEMO_DIR}/mode"
	# Node only: the chart installs the driver and providers as DaemonSets.
	SSCSI_NO_DRIVER=1 "${REPO_ROOT}/test/cluster/up.sh"
	DEMO_KC="$ADMIN_KUBECONFIG"
	KUBECTL_BIN="$KUBECTL"
fi

# --- 2. the AWS backend ------------------------------------------------------------------------------
step "AWS backend: moto_server on ${MOTO_URL}"
if pid=$(moto_pid); then
	log "  moto_server already running (pid ${pid})"
else
	setsid "$MOTOSERVER" -addr "127.0.0.1:${MOTO_PORT}" >"${DEMO_DIR}/moto.log" 2>&1 </dev/null &
	echo "$! ${MOTOSERVER}" >"${DEMO_DIR}/moto.pid"
	log "  started ${MOTOSERVER} (pid $!, log ${DEMO_DIR}/moto.log)"
fi
wait_for "moto_server answering" 60 curl -fsS "${MOTO_URL}/moto-api/" || die "moto_server did not start; see ${DEMO_DIR}/moto.log"
go build -o bin/demoaws ./hack/demoaws
step "seeding Secrets Manager secrets and SSM parameters (hack/demoaws seed)"
bin/demoaws -endpoint "$MOTO_URL" seed

# --- 3. the chart ------------------------------------------------------------------------------------
step "installing charts/secrets-store with the Helm Go SDK (hack/demoinstall)"
go build -o bin/demoinstall ./hack/demoinstall
# On the local node there is no kube-proxy: host-network pods reach the API server directly.
api_env='[{name: KUBERNETES_SERVICE_HOST, value: "127.0.0.1"}, {name: KUBERNETES_SERVICE_PORT, value: "6443"}]'
pull=Never
if [ -n "${DEMO_KUBECONFIG:-}" ]; then api_env='[]'; pull=IfNotPresent; fi
cat >"${DEMO_DIR}/values.yaml" <<VALUES
# Written by hack/demo.sh.
linux:
  enabled: true
  image: {repository: ${IMAGE_REPO_DEMO}/secrets-store-csi-driver, tag: latest, pullPolicy: ${pull}}
  hostNetwork: true
  metricsAddr: ":8095"
  env: ${api_env}
logVerbosity: 2
enableSecretRotation: true
rotationPollInterval: 10s
syncSecret:
  enabled: true
providers:
  fake:
    enabled: true
    image: {repository: ${IMAGE_REPO_DEMO}/provider-fake, tag: latest, pullPolicy: ${pull}}
    adminAddr: "${FAKE_ADMIN}"
  aws:
    enabled: true
    image: {repository: ${IMAGE_REPO_DEMO}/provider-aws, tag: latest, pullPolicy: ${pull}}
    hostNetwork: true
    region: us-east-1
    endpointURL: "${MOTO_URL}"
    cacheTTL: 2s
    metricsAddr: "127.0.0.1:8990"
    env: ${api_env}
VALUES
bin/demoinstall -kubeconfig "$DEMO_KC" -namespace "$RELEASE_NS" -release "$RELEASE" \
	-values "${DEMO_DIR}/values.yaml" -replace-unmanaged-csidriver -timeout 3m
demo_kc -n "$RELEASE_NS" get daemonsets -l app.kubernetes.io/instance="$RELEASE" -o wide 2>/dev/null | sed 's/^/  /' >&2 || true
drv_registered() { [ -n "$(demo_kc get csinode -o 'jsonpath={.items[*].spec.drivers[?(@.name=="secrets-store.csi.k8s.io")].name}')" ]; }
wait_for "driver registered with kubelet (CSINode)" 90 drv_registered || die "the driver did not register; kubectl -n ${RELEASE_NS} logs ds/${RELEASE}-secrets-store-csi-driver"
aws_sock() { demo_kc -n "$RELEASE_NS" get pods -l app.kubernetes.io/name=secrets-store-provider-aws -o 'jsonpath={.items[*].status.containerStatuses[*].ready}' | grep -q true; }
wait_for "provider-aws ready" 90 aws_sock || die "provider-aws is not ready; kubectl -n ${RELEASE_NS} logs ds/${RELEASE}-secrets-store-csi-driver-provider-aws"

# --- 4. a pod mounting secrets -------------------------------------------------------------------------
step "creating namespace ${DEMO_NS}: service account (IRSA role), two SecretProviderClasses, a pod"
demo_kc apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: ${DEMO_NS}}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: demo-app
  namespace: ${DEMO_NS}
  annotations:
    # provider-aws exchanges the pod's token for this role's credentials (STS, here moto).
    eks.amazonaws.com/role-arn: ${ROLE_ARN}
---
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {name: demo-aws, namespace: ${DEMO_NS}}
spec:
  provider: aws
  parameters:
    region: us-east-1
    objects: |
      - objectName: demo/db
        objectType: secretsmanager
        objectAlias: db.json
        jmesPath:
          - {path: username, objectAlias: db-user}
          - {path: password, objectAlias: db-password}
      - objectName: demo/api-key
        objectType: secretsmanager
      - objectName: /demo/feature-flags
        objectType: ssmparameter
        objectAlias: feature-flags
      - objectName: /demo/db-host
        objectType: ssmparameter
        objectAlias: db-host
  # Mirror two of the files into a Kubernetes Secret.
  secretObjects:
  - secretName: demo-db
    type: Opaque
    data:
    - {objectName: db-user, key: username}
    - {objectName: db-password, key: password}
---
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {name: demo-fake, namespace: ${DEMO_NS}}
spec:
  provider: fake
  parameters:
    objects: |
      - {objectName: greeting, value: "hello from the fake provider", version: v1}
      - {objectName: config/app.ini, value: "[app]\nmode=demo\n", filePermission: "0440"}
YAML
demo_kc -n "$DEMO_NS" delete pod demo --ignore-not-found --grace-period=1 --wait=true >/dev/null
demo_kc apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: demo, namespace: ${DEMO_NS}}
spec:
  serviceAccountName: demo-app
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: ${IMAGE_REPO_DEMO}/busybox:latest
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "sleep 86400"]
    volumeMounts:
    - {name: aws, mountPath: /mnt/aws, readOnly: true}
    - {name: fake, mountPath: /mnt/fake, readOnly: true}
  volumes:
  - name: aws
    csi:
      driver: secrets-store.csi.k8s.io
      readOnly: true
      volumeAttributes: {secretProviderClass: demo-aws}
  - name: fake
    csi:
      driver: secrets-store.csi.k8s.io
      readOnly: true
      volumeAttributes: {secretProviderClass: demo-fake}
YAML
if ! demo_kc -n "$DEMO_NS" wait --for=condition=Ready pod/demo --timeout=120s >/dev/null; then
	demo_kc -n "$DEMO_NS" get events --field-selector involvedObject.name=demo >&2 || true
	die "pod ${DEMO_NS}/demo did not start"
fi
log "  pod ${DEMO_NS}/demo is Running"

show_files() {
	# shellcheck disable=SC2016 # expanded by the pod's shell
	demo_kc -n "$DEMO_NS" exec demo -- /bin/sh -c '
		for d in /mnt/aws /mnt/fake; do
			for f in $(cd $d && find -L . -type f | sed "s|^\./||" | sort); do
				case $f in ..*|*/..*) continue;; esac
				printf "  %-26s %s\n" "$d/$f" "$(tr "\n" " " <"$d/$f")"
			done
		done'
}
show_secret() {
	# shellcheck disable=SC2016 # a Go template, not shell
	demo_kc -n "$DEMO_NS" get secret demo-db \
		-o 'go-template={{range $k, $v := .data}}  {{$k}} = {{$v | base64decode}}{{"\n"}}{{end}}'
}
step "files mounted in the pod (kubectl exec demo -- cat ...)"
show_files
step "the synced Kubernetes Secret ${DEMO_NS}/demo-db"
wait_for "Secret demo-db synced" 30 demo_kc -n "$DEMO_NS" get secret demo-db || true
show_secret || log "  (Secret demo-db not found; kubectl -n ${RELEASE_NS} logs ds/${RELEASE}-secrets-store-csi-driver)"

step "the driver's metrics, scraped from the pod at its node's address (as a Prometheus pod would)"
host_ip=$(demo_kc -n "$DEMO_NS" get pod demo -o 'jsonpath={.status.hostIP}')
# Plain HTTP/1.0 over busybox nc (busybox 1.35's wget crashes on this response).
# shellcheck disable=SC2016 # $0 is expanded by the pod's shell
if metrics=$(demo_kc -n "$DEMO_NS" exec demo -- /bin/sh -c 'printf "GET /metrics HTTP/1.0\r\n\r\n" | nc -w 5 "$0" 8095' "$host_ip" 2>/dev/null) &&
	grep -q '^HTTP/1.0 200 ' <<<"$metrics"; then
	grep -E '^node_publish_total' <<<"$metrics" | sed 's/^/  /' >&2 || true
else
	log "  WARNING: the pod cannot reach http://${host_ip}:8095/metrics (the driver's metrics on the node's address)"
fi

# --- 5. rotation ---------------------------------------------------------------------------------------
step "changing the secrets in the backends"
rot_out=$(bin/demoaws -endpoint "$MOTO_URL" rotate)
log "  aws: ${rot_out}"
want_pw=${rot_out##* is now }
new_greeting="hello again, changed at $(date -u +%H:%M:%S)"
curl -fsS -X PUT -H "Authorization: Bearer $(cat "$FAKE_TOKEN")" --data-binary "$new_greeting" "http://${FAKE_ADMIN}/v1/objects/greeting" >/dev/null &&
	log "  fake: greeting is now \"${new_greeting}\""
step "waiting for rotation (kubelet re-publishes about every minute; the driver re-fetches after 10s)"
t_rot=$(date +%s)
rotated() {
	[ "$(demo_kc -n "$DEMO_NS" exec demo -- cat /mnt/aws/db-password 2>/dev/null)" = "$want_pw" ] &&
		[ "$(demo_kc -n "$DEMO_NS" exec demo -- cat /mnt/fake/greeting 2>/dev/null)" = "$new_greeting" ]
}
until rotated; do
	[ $(($(date +%s) - t_rot)) -lt 240 ] || die "files did not change within 240s; kubectl -n ${DEMO_NS} get events"
	sleep 3
done
log "  files changed $(($(date +%s) - t_rot))s after the backend change"
step "files after rotation"
show_files
step "the synced Secret after rotation"
sleep 2
show_secret || true

step "done in $(($(date +%s) - _SSCSI_T0))s. Try:"
cat >&2 <<EOF
  export KUBECONFIG=${DEMO_KC}
  ${KUBECTL_BIN} -n ${DEMO_NS} exec demo -- ls -la /mnt/aws /mnt/fake
  curl -X PUT -H "Authorization: Bearer \$(cat ${FAKE_TOKEN})" --data-binary 'new value' http://${FAKE_ADMIN}/v1/objects/greeting
  curl -s 127.0.0.1:8095/metrics | grep -E '^(node_publish|rotation_reconcile)'
  make demo-down
EOF
