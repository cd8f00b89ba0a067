# shellcheck shell=bash
# shellcheck disable=SC2034 # settings used by the scripts that source this file
# Shared settings and helpers for the test/cluster scripts. Sourced, never run.

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
SSCSI_CACHE="${SSCSI_CACHE:-/var/cache/sscsi}"
K8S_BIN="${SSCSI_CACHE}/k8s/${K8S_VERSION}/bin"
CLUSTER_DIR="${SSCSI_CLUSTER_DIR:-/var/lib/sscsi-cluster}"
KUBELET_DIR="/var/lib/kubelet"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# kubectl is built too: Debian's kubernetes-client is 1.20, far too old for a 1.37 server.
K8S_BINARIES=(kube-apiserver kubelet kube-controller-manager kube-scheduler kubectl)
# What the node runs (etcd, containerd, runc, the CNI bridge, iptables for kubelet's own chains) and what
# the scripts call: busybox for hack/images, mount/umount, findmnt/flock/setsid (util-linux), ip,
# pgrep/sysctl (procps), curl. Certificates come from test/cluster/pki (Go), not openssl; without
# kube-proxy nothing calls conntrack.
APT_PACKAGES=(etcd-server containerd runc containernetworking-plugins iptables busybox-static mount util-linux iproute2 procps curl)

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

# Layout of a running cluster. Everything lives under CLUSTER_DIR (removed by down.sh) except the
# kubelet root, which the driver contract fixes at /var/lib/kubelet, and containerd's runtime state.
PKI="${CLUSTER_DIR}/pki"
LOGS="${CLUSTER_DIR}/logs"
PIDS="${CLUSTER_DIR}/pids"
CTRD_RUN="/run/sscsi-containerd"
CTRD_SOCK="${CTRD_RUN}/containerd.sock"
PROVIDER_DIR="/var/run/secrets-store-csi-providers"
BRIDGE="sscsi0"
CNI_NETWORK="sscsi"
POD_SUBNET="10.244.77.0/24"
SERVICE_CIDR="10.96.77.0/24"
APISERVER="https://127.0.0.1:6443"
ADMIN_KUBECONFIG="${CLUSTER_DIR}/admin.kubeconfig"
IMAGE_REPO="localhost/sscsi"
KUBECTL="${K8S_BIN}/kubectl"

kc() { "${KUBECTL}" --kubeconfig "${ADMIN_KUBECONFIG}" "$@"; }

# node_ip prints the node's InternalIP: the IPv4 address of the interface that holds the default
# route (what kubelet picks itself; up.sh passes it as --node-ip so the two never differ), or
# nothing on a machine without a default route. `ip route get` only looks the route up: no packet.
node_ip() {
	ip -4 -o route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p'
}

# The local node runs one secrets-store driver at a time, installed one of these ways (the file
# DRIVER_OWNER records which; down.sh removes it with the rest of the state):
#   host       up.sh's default: driver and providers as host processes (make e2e, make test)
#   daemonset  SSCSI_DRIVER_MODE=daemonset: test/cluster/driver-daemonset.yaml
#   chart      SSCSI_DRIVER_MODE=chart: the Helm release kube-system/secrets-store
#   demo       make demo: the same release with the demo's values, its namespace and moto_server
#   demo-vault make demo-vault: the release with provider-vault, its namespace and the local Vault
#   none       the node only (SSCSI_NO_DRIVER=1)
DRIVER_OWNER="${CLUSTER_DIR}/driver-owner"

# driver_owner prints how the running node's driver was installed (see above), "" without a node.
# Nodes started before the record existed are recognised by what runs on them.
driver_owner() {
	if [ -f "$DRIVER_OWNER" ]; then
		cat "$DRIVER_OWNER"
		return 0
	fi
	if ! { [ -f "$ADMIN_KUBECONFIG" ] && pid_alive kube-apiserver >/dev/null; }; then
		echo ""
		return 0
	fi
	if pid_alive secrets-store-csi-driver >/dev/null; then
		echo host
	elif kc -n sscsi-system get daemonset secrets-store-csi-driver >/dev/null 2>&1; then
		echo daemonset
	elif [ -n "$(kc -n kube-system get secrets -l owner=helm,name=secrets-store -o name 2>/dev/null)" ]; then
		echo chart
	else
		echo none
	fi
}

# take_node WANT makes the local node ready for a driver installed the WANT way: a node whose
# driver was installed another way is torn down first (two drivers would fight over kubelet's
# registration and the provider sockets; the issue was `make demo` then `make test` timing out on
# CSINode), a node with no driver or WANT's own is reused. Says which in one line. Needs the lock.
take_node() {
	local want=$1 have
	have=$(driver_owner)
	if [ "$want" = none ]; then
		# The caller installs its own driver (make demo) and has taken the node for it already.
		[ -f "$DRIVER_OWNER" ] || { mkdir -p "$CLUSTER_DIR" && echo none >"$DRIVER_OWNER"; }
		return 0
	fi
	case "$have" in
	"" | none) ;;
	"$want") log "reusing the local node: its driver was installed the same way ($(owner_words "$have"))" ;;
	*)
		log "the local node runs the driver of $(owner_words "$have"): tearing it down for $(owner_words "$want")"
		"${REPO_ROOT}/test/cluster/down.sh"
		;;
	esac
	mkdir -p "$CLUSTER_DIR"
	echo "$want" >"$DRIVER_OWNER"
}

owner_words() {
	case "$1" in
	host) echo "make e2e/make test (host processes)" ;;
	daemonset) echo "SSCSI_DRIVER_MODE=daemonset" ;;
	chart) echo "SSCSI_DRIVER_MODE=chart (Helm release kube-system/secrets-store)" ;;
	demo) echo "make demo (Helm release kube-system/secrets-store; make demo brings it back)" ;;
	demo-vault) echo "make demo-vault (Helm release kube-system/secrets-store with provider-vault; make demo-vault brings it back)" ;;
	*) echo "$1" ;;
	esac
}

# pid_alive NAME prints the recorded PID of component NAME if that process is still the one we
# started (its executable matches what we recorded), so a reused PID is never signalled.
pid_alive() {
	local f="${PIDS}/$1.pid" pid exe
	[ -f "$f" ] || return 1
	read -r pid exe <"$f" || return 1
	[ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
	[ "$(readlink "/proc/$pid/exe" 2>/dev/null | sed 's/ (deleted)$//')" = "$exe" ] || return 1
	echo "$pid"
}

# stop_component NAME: SIGTERM the recorded process, SIGKILL after 10 s; forget its PID file.
stop_component() {
	local name=$1 pid
	pid=$(pid_alive "$name") || {
		rm -f "${PIDS}/${name}.pid"
		return 0
	}
	kill -TERM "$pid" 2>/dev/null
	# readlink fails once the process has exited, even while it is an unreaped zombie.
	for _ in $(seq 50); do readlink "/proc/$pid/exe" >/dev/null 2>&1 || break; sleep 0.2; done
	readlink "/proc/$pid/exe" >/dev/null 2>&1 && kill -KILL "$pid" 2>/dev/null
	rm -f "${PIDS}/${name}.pid"
	log "  stopped $name (pid $pid)"
}

# start_bg NAME BINARY ARGS... starts a component in its own session, logging to LOGS/NAME.log and
# recording "PID EXE" in PIDS/NAME.pid. Does nothing if it is already running that binary with
# these arguments; restarts it (saying why in one line) if either changed.
start_bg() {
	local name=$1 bin=$2
	shift 2
	local pid running
	bin=$(readlink -f "$(command -v "$bin")")
	if pid=$(pid_alive "$name"); then
		running=$(readlink "/proc/${pid}/exe" 2>/dev/null || true)
		# A rebuilt binary (make build, build.sh --force) replaces the file, and a run from another
		# worktree brings its own binary: restart on the one asked for, so a suite never tests
		# another checkout's driver. Other arguments (another up.sh's flags, another caller's
		# settings) restart it too: a running component is reused only as asked for.
		if [ "${running% (deleted)}" != "$running" ]; then
			log "  $name binary was rebuilt; restarting it"
			stop_component "$name"
		elif [ "$running" != "$bin" ]; then
			log "  $name runs ${running}, not ${bin}; restarting it"
			stop_component "$name"
		elif ! _same_args "$pid" "$@"; then
			log "  $name runs with other arguments (now: $(_args_diff "$pid" "$@")); restarting it"
			stop_component "$name"
		else
			log "  $name already running (pid ${pid})"
			return 0
		fi
	fi
	mkdir -p "$LOGS" "$PIDS"
	setsid "$bin" "$@" >>"${LOGS}/${name}.log" 2>&1 </dev/null &
	echo "$! $bin" >"${PIDS}/${name}.pid"
	log "  started $name (pid $!, log ${LOGS}/${name}.log)"
}

# _args_of PID prints the process's arguments after argv[0], one per line.
_args_of() { tail -z -n +2 "/proc/$1/cmdline" 2>/dev/null | tr '\0' '\n'; }

# _same_args PID ARGS... reports whether process PID runs with exactly ARGS after argv[0].
_same_args() {
	local pid=$1
	shift
	[ "$(_args_of "$pid")" = "$(printf '%s\n' "$@")" ]
}

# _args_diff PID ARGS... prints the arguments of ARGS the process PID lacks, and those it has that
# ARGS lacks (prefixed "was"), on one short line.
_args_diff() {
	local pid=$1 added removed
	shift
	added=$(comm -13 <(_args_of "$pid" | sort -u) <(printf '%s\n' "$@" | sort -u) | paste -sd ' ')
	removed=$(comm -23 <(_args_of "$pid" | sort -u) <(printf '%s\n' "$@" | sort -u) | paste -sd ' ')
	printf '%s' "${added:-(none)}${removed:+; was: ${removed}}" | cut -c1-160
}

# build_lock FILE WHAT takes an exclusive flock on FILE for the rest of the calling script (one
# heavy build at a time on a 2-core machine), saying "WHAT; waiting for it" if it must wait.
build_lock() {
	local file=$1 what=$2 fd
	mkdir -p "$(dirname "$file")"
	exec {fd}>"$file"
	if ! flock -n "$fd"; then
		log "${what}; waiting for it"
		flock "$fd"
	fi
}

# wait_build PID LOG WHAT waits for the background build PID writing LOG and reports progress every
# 30 s (a long build with no output looks hung); if the build fails, it shows LOG's tail and dies.
wait_build() {
	local pid=$1 blog=$2 what=$3
	while kill -0 "$pid" 2>/dev/null; do
		for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
		kill -0 "$pid" 2>/dev/null && log "  ... building, $(grep -c . "$blog" || true) packages compiled so far"
	done
	if ! wait "$pid"; then
		tail -30 "$blog" >&2
		die "${what} build failed (full log: ${blog})"
	fi
}

# wait_for DESCRIPTION TIMEOUT_SECONDS COMMAND... polls COMMAND every half second.
wait_for() {
	local what=$1 timeout=$2 deadline
	shift 2
	deadline=$(($(date +%s) + timeout))
	until "$@" >/dev/null 2>&1; do
		if [ "$(date +%s)" -ge "$deadline" ]; then
			log "timed out after ${timeout}s waiting for ${what}"
			return 1
		fi
		sleep 0.5
	done
	log "  ${what}: ok"
}

MOTO_ADDR="127.0.0.1:5055"
# provider-aws's shared-read cache, below the sync controller's poll interval so that a backend change
# reaches a synced Secret within one interval (test/e2e/secretsync_test.go relies on both).
AWS_CACHE_TTL="5s"
SYNC_POLL_INTERVAL="10s"
SYNC_CONTROLLER_ADDR="127.0.0.1:8097"

# motoserver_bin builds test/moto/motoserver into bin/ and prints its path. It finds and starts
# moto_server the way the Go tests do (package test/moto), so moto is found and started one way.
motoserver_bin() {
	local out="${REPO_ROOT}/bin/motoserver"
	(cd "$REPO_ROOT" && go build -o "$out" ./test/moto/motoserver) >&2 || return 1
	echo "$out"
}

# _cluster_lock_stale DIR HOLDER: the lock's holder has exited (or never wrote its PID, a minute ago).
_cluster_lock_stale() {
	local d=$1 holder=$2
	{ [ -n "$holder" ] && ! kill -0 "$holder" 2>/dev/null; } ||
		{ [ -z "$holder" ] && [ -n "$(find "$d" -maxdepth 0 -mmin +1 2>/dev/null)" ]; }
}

# _cluster_lock_reap DIR removes a stale lock. Waiters reap one at a time (DIR.reap is itself taken
# with mkdir) and re-check under it, so a waiter that saw the old holder dead never removes the lock
# another waiter has just taken.
_cluster_lock_reap() {
	local d=$1 r="$1.reap"
	if ! mkdir "$r" 2>/dev/null; then
		# A reaper that died mid-way leaves DIR.reap behind; it is stale after a minute.
		[ -n "$(find "$r" -maxdepth 0 -mmin +1 2>/dev/null)" ] && rmdir "$r" 2>/dev/null
		sleep 0.2
		return 0
	fi
	if [ -d "$d" ] && _cluster_lock_stale "$d" "$(cat "$d/pid" 2>/dev/null || true)"; then
		rm -rf "$d"
	fi
	rmdir "$r"
}

# cluster_lock serializes the scripts that change or depend on the one local cluster of this
# machine (up.sh, down.sh, the e2e suite, the demo): without it, one person's down.sh or up.sh pulls
# the node out from under another's running suite. The lock is a directory holding the PID of the
# script that took it; it is free again as soon as that process has exited (no unlock needed, and
# a crash never leaves it stuck). Unlike flock, daemons started meanwhile do not inherit it.
# Re-entrant through SSCSI_CLUSTER_LOCK_HELD, so run.sh can hold it across up.sh and the tests.
cluster_lock() {
	[ -n "${SSCSI_CLUSTER_LOCK_HELD:-}" ] && return 0
	local d="${SSCSI_CACHE}/cluster.lock.d" holder waited=false
	mkdir -p "$SSCSI_CACHE"
	until mkdir "$d" 2>/dev/null; do
		holder=$(cat "$d/pid" 2>/dev/null || true)
		if _cluster_lock_stale "$d" "$holder"; then
			_cluster_lock_reap "$d"
			continue
		fi
		if ! $waited; then
			log "waiting for another user of the local cluster to finish (pid ${holder}: $(ps -o args= -p "${holder:-0}" 2>/dev/null | cut -c1-80))"
			waited=true
		fi
		sleep 1
	done
	echo "$$" >"$d/pid"
	export SSCSI_CLUSTER_LOCK_HELD=$$
}
