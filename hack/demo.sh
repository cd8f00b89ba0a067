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
# shellcheck source=demo-lib.sh
source "${REPO_ROOT}/hack/demo-lib.sh"
cd "$REPO_ROOT"

MOTO_PORT="${DEMO_MOTO_PORT:-5055}"
MOTO_URL="${DEMO_MOTO_URL:-http://127.0.0.1:${MOTO_PORT}}"
# moto keeps one store per account: the role is in its default account, where demoaws seeds.
ROLE_ARN="arn:aws:iam::123456789012:role/demo-app"
FAKE_ADMIN=127.0.0.1:8099
# provider-fake writes its admin token next to its socket (root-only).
FAKE_TOKEN=/var/run/secrets-store-csi-providers/fake-admin.token

demo_begin "$@"
MOTOSERVER=$(motoserver_bin) || die "could not build test/moto/motoserver"
"$MOTOSERVER" -find >/dev/null ||
	die "moto_server not found (looked at \$MOTO_SERVER, PATH, pyenv, python3 -m moto.server). Install it: pip install 'moto[server]'"

# --- 1. the cluster ---------------------------------------------------------------------------------
if [ -n "${DEMO_KUBECONFIG:-}" ]; then
	[ -f "$DEMO_KUBECONFIG" ] || die "DEMO_KUBECONFIG=${DEMO_KUBECONFIG}: no such file"
	demo_use_cluster "$(readlink -f "$DEMO_KUBECONFIG")"
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
	demo_local_node demo
fi

# --- 2. the AWS backend ------------------------------------------------------------------------------
step "AWS backend: moto_server on ${MOTO_URL}"
# On the local node moto_server is one of the node's components (PID and log in its state, as
# up.sh's own): whoever takes the node over stops it with the node (take_node, down.sh), and so
# does make demo-down. Without a local node it is recorded in DEMO_DIR (demo_use_cluster).
start_bg moto-server "$MOTOSERVER" -addr "127.0.0.1:${MOTO_PORT}"
wait_for "moto_server answering" 60 curl -fsS "${MOTO_URL}/moto-api/" || die "moto_server did not start; see ${LOGS}/moto-server.log"
go build -o bin/demoaws ./hack/demoaws
step "seeding Secrets Manager secrets and SSM parameters (hack/demoaws seed)"
bin/demoaws -endpoint "$MOTO_URL" seed

# --- 3. the chart ------------------------------------------------------------------------------------
step "installing charts/secrets-store with the Helm Go SDK (hack/demoinstall)"
{
	echo "# Written by hack/demo.sh."
	demo_chart_values
	cat <<VALUES
providers:
  fake:
    enabled: true
    image: {repository: ${IMAGE_REPO_DEMO}/provider-fake, tag: latest, pullPolicy: ${DEMO_PULL}}
    adminAddr: "${FAKE_ADMIN}"
  aws:
    enabled: true
    image: {repository: ${IMAGE_REPO_DEMO}/provider-aws, tag: latest, pullPolicy: ${DEMO_PULL}}
    hostNetwork: true
    region: us-east-1
    endpointURL: "${MOTO_URL}"
    cacheTTL: 2s
    metricsAddr: "127.0.0.1:8990"
    env: ${DEMO_API_ENV}
VALUES
} >"${DEMO_DIR}/values.yaml"
demo_install_chart "${DEMO_DIR}/values.yaml"
aws_sock() { demo_kc -n "$RELEASE_NS" get pods -l app.kubernetes.io/name=secrets-store-provider-aws -o 'jsonpath={.items[*].status.containerStatuses[*].ready}' | grep -q true; }
wait_for "provider-aws ready" 90 aws_sock || die "provider-aws is not ready; kubectl -n ${RELEASE_NS} logs ds/${RELEASE}-secrets-store-csi-driver-provider-aws"

# --- 4. a pod mounting secrets -------------------------------------------------------------------------
step "creating namespace ${DEMO_NS}: service account (IRSA role), two SecretProviderClasses, a pod"
# provider-aws exchanges the pod's token for this role's credentials (STS, here moto).
demo_namespace "eks.amazonaws.com/role-arn=${ROLE_ARN}" <<YAML
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
demo_pod demo aws=demo-aws fake=demo-fake

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
step "files mounted in the pod (kubectl exec demo -- cat ...)"
show_files
step "the synced Kubernetes Secret ${DEMO_NS}/demo-db"
wait_for "Secret demo-db synced" 30 demo_kc -n "$DEMO_NS" get secret demo-db || true
demo_show_secret || log "  (Secret demo-db not found; kubectl -n ${RELEASE_NS} logs ds/${RELEASE}-secrets-store-csi-driver)"

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
rotated() {
	[ "$(demo_kc -n "$DEMO_NS" exec demo -- cat /mnt/aws/db-password 2>/dev/null)" = "$want_pw" ] &&
		[ "$(demo_kc -n "$DEMO_NS" exec demo -- cat /mnt/fake/greeting 2>/dev/null)" = "$new_greeting" ]
}
demo_wait_change files rotated
step "files after rotation"
show_files
step "the synced Secret after rotation"
sleep 2
demo_show_secret || true

demo_done <<EOF
  export KUBECONFIG=${DEMO_KC}
  ${KUBECTL_BIN} -n ${DEMO_NS} exec demo -- ls -la /mnt/aws /mnt/fake
  curl -X PUT -H "Authorization: Bearer \$(cat ${FAKE_TOKEN})" --data-binary 'new value' http://${FAKE_ADMIN}/v1/objects/greeting
  curl -s 127.0.0.1:8095/metrics | grep -E '^(node_publish|rotation_reconcile)'
  make demo-down
EOF
