# shellcheck shell=bash
# shellcheck disable=SC2034 # settings used by the scripts that source this file
# What `make demo` (hack/demo.sh) and `make demo-vault` (hack/demo-vault.sh) share: where the demo
# keeps its state, the local node, the chart's common values and its install, the demo pod, the
# rotation wait and `make demo-down`. Sourced after test/cluster/lib.sh, never run.

DEMO_DIR="${SSCSI_DEMO_DIR:-/var/lib/sscsi-demo}"
DEMO_NS=sscsi-demo
RELEASE=secrets-store
RELEASE_NS=kube-system
IMAGE_REPO_DEMO="${DEMO_IMAGE_REPO:-${IMAGE_REPO}}"
# The chart's images are imported into the local node's containerd; another cluster pulls them.
DEMO_PULL=Never
# On the local node there is no kube-proxy: host-network pods reach the API server directly.
DEMO_API_ENV='[{name: KUBERNETES_SERVICE_HOST, value: "127.0.0.1"}, {name: KUBERNETES_SERVICE_PORT, value: "6443"}]'
# The demo's cluster: the local node unless hack/demo.sh runs with DEMO_KUBECONFIG.
DEMO_KC="$ADMIN_KUBECONFIG"
KUBECTL_BIN="$KUBECTL"

step() {
	printf '\n' >&2
	log "== $*"
}

# demo_kc runs kubectl against the demo's cluster.
demo_kc() { "${KUBECTL_BIN}" --kubeconfig "${DEMO_KC}" "$@"; }

# demo_begin ARGS... is how both demos start: as root, holding the local node's lock for the whole
# demo (up.sh and down.sh take it too, so nobody tears the node down in the middle of it), and with
# --down undoing the demo instead.
demo_begin() {
	[ "$(id -u)" -eq 0 ] || die "the demo needs root (it runs a local Kubernetes node)"
	[ -n "${DEMO_KUBECONFIG:-}" ] || cluster_lock
	if [ "${1:-}" = --down ]; then
		demo_down
		exit 0
	fi
	mkdir -p "$DEMO_DIR" "${REPO_ROOT}/bin"
}

# demo_use_cluster KUBECONFIG points the demo at an existing cluster (hack/demo.sh with
# DEMO_KUBECONFIG): kubectl from PATH, images pulled by its nodes, its own API server address, and
# the demo's host processes (moto_server) recorded in DEMO_DIR, as there is no local node's state.
demo_use_cluster() {
	DEMO_KC=$1
	KUBECTL_BIN=$(command -v kubectl || echo "${KUBECTL}")
	DEMO_PULL=IfNotPresent
	DEMO_API_ENV='[]'
	PIDS="$DEMO_DIR"
	LOGS="$DEMO_DIR"
}

# demo_local_node OWNER starts the local node (no driver: the chart installs it) for the demo
# OWNER (demo or demo-vault, test/cluster/lib.sh). One node per machine: take_node tears down a
# node that make cluster-up, make e2e, make test or the other demo left running with their own
# driver (two drivers would fight over the same sockets), and reuses one OWNER left.
demo_local_node() {
	take_node "$1"
	step "starting the LOCAL single-node cluster (test/cluster/up.sh; builds what it needs, reuses caches)"
	echo "local ${ADMIN_KUBECONFIG}" >"${DEMO_DIR}/mode"
	SSCSI_NO_DRIVER=1 "${REPO_ROOT}/test/cluster/up.sh"
}

# demo_chart_values prints the chart values both demos share: the driver on the node's network with
# its metrics on every address (a pod scrapes them at its node's address), rotation every 10 s,
# Secret sync. Each demo adds its providers.
demo_chart_values() {
	cat <<VALUES
linux:
  enabled: true
  image: {repository: ${IMAGE_REPO_DEMO}/secrets-store-csi-driver, tag: latest, pullPolicy: ${DEMO_PULL}}
  hostNetwork: true
  metricsAddr: ":8095"
  env: ${DEMO_API_ENV}
logVerbosity: 2
enableSecretRotation: true
rotationPollInterval: 10s
syncSecret: {enabled: true}
VALUES
}

# demo_install_chart VALUES_FILE installs (or upgrades) charts/secrets-store with the Helm Go SDK
# (hack/demoinstall) and waits until kubelet has registered the driver.
demo_install_chart() {
	go build -o bin/demoinstall ./hack/demoinstall
	bin/demoinstall -kubeconfig "$DEMO_KC" -namespace "$RELEASE_NS" -release "$RELEASE" \
		-values "$1" -replace-unmanaged-csidriver -timeout 3m
	demo_kc -n "$RELEASE_NS" get daemonsets -l app.kubernetes.io/instance="$RELEASE" -o wide 2>/dev/null | sed 's/^/  /' >&2 || true
	wait_for "driver registered with kubelet (CSINode)" 90 _demo_driver_registered ||
		die "the driver did not register; kubectl -n ${RELEASE_NS} logs ds/${RELEASE}-secrets-store-csi-driver"
}

_demo_driver_registered() {
	[ -n "$(demo_kc get csinode -o 'jsonpath={.items[*].spec.drivers[?(@.name=="secrets-store.csi.k8s.io")].name}')" ]
}

# demo_namespace [KEY=VALUE] creates DEMO_NS and its service account demo-app, annotated with
# KEY=VALUE if given; the SecretProviderClasses on stdin (a YAML stream) are applied with them.
# shellcheck disable=SC2120 # the annotation is optional
demo_namespace() {
	local annotations=""
	[ -z "${1:-}" ] || annotations="
  annotations: {${1%%=*}: ${1#*=}}"
	demo_kc apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: ${DEMO_NS}}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: demo-app
  namespace: ${DEMO_NS}${annotations}
---
$(cat)
YAML
}

# demo_pod NAME VOLUME=CLASS... (re)creates the busybox pod NAME of service account demo-app in
# DEMO_NS, mounting each SecretProviderClass CLASS read-only at /mnt/VOLUME, and waits until it runs.
demo_pod() {
	local name=$1 v mounts="" volumes=""
	shift
	for v in "$@"; do
		mounts+="
    - {name: ${v%%=*}, mountPath: /mnt/${v%%=*}, readOnly: true}"
		volumes+="
  - name: ${v%%=*}
    csi:
      driver: secrets-store.csi.k8s.io
      readOnly: true
      volumeAttributes: {secretProviderClass: ${v#*=}}"
	done
	demo_kc -n "$DEMO_NS" delete pod "$name" --ignore-not-found --grace-period=1 --wait=true >/dev/null
	demo_kc apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: ${DEMO_NS}}
spec:
  serviceAccountName: demo-app
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: ${IMAGE_REPO_DEMO}/busybox:latest
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "sleep 86400"]
    volumeMounts:${mounts}
  volumes:${volumes}
YAML
	if ! demo_kc -n "$DEMO_NS" wait --for=condition=Ready "pod/${name}" --timeout=120s >/dev/null; then
		demo_kc -n "$DEMO_NS" get events --field-selector "involvedObject.name=${name}" >&2 || true
		die "pod ${DEMO_NS}/${name} did not start"
	fi
	log "  pod ${DEMO_NS}/${name} is Running"
}

# demo_show_secret prints the synced Kubernetes Secret demo-db, decoded.
demo_show_secret() {
	# shellcheck disable=SC2016 # a Go template, not shell
	demo_kc -n "$DEMO_NS" get secret demo-db \
		-o 'go-template={{range $k, $v := .data}}  {{$k}} = {{$v | base64decode}}{{"\n"}}{{end}}' >&2
}

# demo_wait_change WHAT COMMAND... polls COMMAND every 3 s until it succeeds (kubelet re-publishes
# about every minute; at most 240 s) and says how long WHAT took to change.
demo_wait_change() {
	local what=$1 t0
	shift
	t0=$(date +%s)
	until "$@"; do
		[ $(($(date +%s) - t0)) -lt 240 ] || die "${what} did not change within 240s; kubectl -n ${DEMO_NS} get events"
		sleep 3
	done
	log "  ${what} changed $(($(date +%s) - t0))s after the backend change"
}

# demo_done prints the demo's total time and the commands to try next (stdin).
demo_done() {
	step "done in $(($(date +%s) - _SSCSI_T0))s. Try:"
	cat >&2
}

# demo_down is `make demo-down`, for either demo: the release and namespace it installed into an
# existing cluster, its moto_server, and the local node unless someone else's driver runs on it now
# (their make test or make e2e took the node over since: take_node).
demo_down() {
	local mode="" kcfg="" owner
	[ -f "${DEMO_DIR}/mode" ] && read -r mode kcfg <"${DEMO_DIR}/mode"
	log "make demo-down (mode: ${mode:-unknown})"
	if [ "$mode" = existing ] && [ -n "$kcfg" ]; then
		demo_use_cluster "$kcfg"
		demo_kc delete namespace "$DEMO_NS" --ignore-not-found --wait=true >/dev/null || true
		[ -x bin/demoinstall ] || go build -o bin/demoinstall ./hack/demoinstall
		bin/demoinstall -kubeconfig "$kcfg" -namespace "$RELEASE_NS" -release "$RELEASE" -uninstall || true
		log "  uninstalled release ${RELEASE} and namespace ${DEMO_NS} from ${kcfg} (CRDs stay)"
		stop_component moto-server
	else
		owner=$(driver_owner)
		case "$owner" in
		"" | demo | demo-vault)
			if pgrep -f 'e2e.test' >/dev/null; then
				log "  an e2e run uses the local cluster: leaving it up (make cluster-down when it is done)"
				stop_component moto-server
			else
				"${REPO_ROOT}/test/cluster/down.sh"
			fi
			;;
		*) log "  the local node now runs the driver of $(owner_words "$owner"): leaving it up" ;;
		esac
	fi
	rm -rf "$DEMO_DIR"
	log "demo removed"
}
