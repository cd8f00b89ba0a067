# shellcheck shell=bash
# Shared settings and helpers for the test/cluster scripts. Sourced, never run.

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
SSCSI_CACHE="${SSCSI_CACHE:-/var/cache/sscsi}"
K8S_BIN="${SSCSI_CACHE}/k8s/${K8S_VERSION}/bin"
CLUSTER_DIR="${SSCSI_CLUSTER_DIR:-/var/lib/sscsi-cluster}"
KUBELET_DIR="/var/lib/kubelet"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# kubectl is built too: Debian's kubernetes-client is 1.20, far too old for a 1.37 server.
K8S_BINARIES=(kube-apiserver kubelet kube-controller-manager kube-scheduler kubectl)
APT_PACKAGES=(etcd-server containerd runc containernetworking-plugins iptables conntrack openssl busybox-static mount util-linux iproute2 procps)

_SSCSI_T0="${_SSCSI_T0:-$(date +%s)}"
export _SSCSI_T0

# log prints a progress line with the elapsed time since the first script of this run started.
log() {
	local now
	now=$(date +%s)
	printf '[%4ds] %s\n' "$((now - _SSCSI_T0))" "$*" >&2
}

die() {
	log "ERROR: $*"
	exit 1
}

# ensure_packages installs the Debian packages the cluster needs, running `apt-get update` once.
ensure_packages() {
	local missing=() p
	for p in "${APT_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ "${#missing[@]}" -eq 0 ] && return 0
	log "installing Debian packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	# A package's postinst may fail once trying to start its service (no init here); configure again.
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
		{ dpkg --configure -a >/dev/null 2>&1 || true; apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
	# Debian's etcd-server and containerd packages try to start services; we run our own.
	log "packages installed"
}

# have_k8s_binaries reports whether every cached Kubernetes binary exists.
have_k8s_binaries() {
	local b
	for b in "${K8S_BINARIES[@]}"; do
		[ -x "${K8S_BIN}/${b}" ] || return 1
	done
}
