#!/usr/bin/env bash
# down.sh stops everything up.sh started (by recorded PID only), removes the pods' containers,
# network namespaces and mounts, the /var/lib/kubelet bind, the bridge, and all state. It also works
# after a crash or a half-finished up.sh, and when nothing is running.
set -uo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=../vault/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../vault/lib.sh"

[ "$(id -u)" -eq 0 ] || die "down.sh needs root"
cluster_lock
log "tearing down the local cluster"
# A node of ours ran (or half started): its kubelet's iptables chains are ours to remove below.
had_node=false
[ -d "$CLUSTER_DIR" ] && had_node=true

stop() { stop_component "$@"; }

# Order: our host processes first, then kubelet (so it stops restarting pods), then the pods'
# containers through our containerd, then containerd and the control plane.
stop secrets-store-sync-controller
stop secrets-store-csi-driver
stop provider-fake
stop provider-aws
stop moto-server
stop provider-vault
stop localvault
stop_stray_localvault
stop kubelet

ctr_() { ctr --address "$CTRD_SOCK" -n k8s.io "$@"; }
# After a crash the pods' containers outlive containerd: start it again on its own state so that
# it can kill and delete them properly.
if ! pid_alive containerd >/dev/null && [ -f "${CLUSTER_DIR}/containerd.toml" ] && [ -d "${CLUSTER_DIR}/containerd" ]; then
	log "  containerd is not running; starting it to clean up its containers"
	start_bg containerd containerd --config "${CLUSTER_DIR}/containerd.toml"
	wait_for "containerd serving" 30 ctr --address "${CTRD_SOCK}" version || true
fi
if pid_alive containerd >/dev/null && ctr_ version >/dev/null 2>&1; then
	netns=()
	ids=$(ctr_ containers ls -q 2>/dev/null)
	for c in $ids; do
		# Sandbox containers name their network namespace; remember it to remove it below.
		while read -r ns; do netns+=("$ns"); done < <(ctr_ containers info "$c" 2>/dev/null | grep -o '"/var/run/netns/cni-[0-9a-f-]*"' | tr -d '"' | sort -u)
		ctr_ tasks kill -s SIGKILL "$c" >/dev/null 2>&1
	done
	sleep 1
	for c in $(ctr_ containers ls -q 2>/dev/null); do
		ctr_ tasks delete -f "$c" >/dev/null 2>&1
		ctr_ containers delete "$c" >/dev/null 2>&1
	done
	for ns in "${netns[@]}"; do
		umount "$ns" 2>/dev/null
		rm -f "$ns"
	done
	log "  removed pod containers and ${#netns[@]} network namespaces"
fi
stop containerd
# containerd's shims outlive it; ours are the ones pointing at our containerd socket.
for d in /proc/[0-9]*; do
	if tr '\0' ' ' 2>/dev/null <"$d/cmdline" | grep -q -- "-address ${CTRD_SOCK} "; then
		kill -KILL "${d#/proc/}" 2>/dev/null && log "  killed containerd shim ${d#/proc/}"
	fi
done

stop kube-scheduler &
stop kube-controller-manager &
stop kube-apiserver &
wait
stop etcd

# Unmount everything below our directories, deepest first; the /var/lib/kubelet bind goes last.
unmount_below() {
	local root=$1 m
	findmnt -rn -o TARGET | awk -v r="$root" 'index($0, r "/") == 1' | sort -r | while read -r m; do
		m=$(printf '%b' "$m")
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "  WARNING: could not unmount $m"
	done
}
unmount_below "$KUBELET_DIR"
unmount_below "$CTRD_RUN"
unmount_below "$CLUSTER_DIR"
unmount_below /run/netns/cni
if [ -f "${CLUSTER_DIR}/bound-kubelet-dir" ]; then
	while findmnt -rn -o TARGET | grep -qx "$KUBELET_DIR"; do umount "$KUBELET_DIR" || umount -l "$KUBELET_DIR" || break; done
fi

if ip link show "$BRIDGE" >/dev/null 2>&1; then
	# Remaining veths of our pods are attached to our bridge; deleting it detaches them.
	for v in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
		ip link delete "$v" 2>/dev/null
	done
	ip link delete "$BRIDGE" && log "  deleted bridge $BRIDGE"
fi
# The bridge plugin turned IPv4 forwarding on for the pods' gateway; off again if it was off before up.sh.
if [ -f "${CLUSTER_DIR}/ip-forward-was-off" ]; then
	sysctl -qw net.ipv4.ip_forward=0 && log "  IPv4 forwarding off again (it was off before up.sh)"
fi
# kubelet's own iptables chains and rules (v1.37; kubelet_network_linux.go): KUBE-IPTABLES-HINT
# (mangle) and KUBE-KUBELET-CANARY (mangle, filter, nat) in IPv4 and IPv6, and in IPv4 filter
# KUBE-FIREWALL with its one rule and the INPUT/OUTPUT jumps to it. Only after a node of ours, only
# when no kubelet runs any more (one would re-create them, and would own them), and only exactly
# these: a chain holding anyone else's rule or still referenced is left (-X refuses). Idempotent.
remove_kubelet_iptables() {
	local ipt t n=0
	for ipt in iptables ip6tables; do
		command -v "$ipt" >/dev/null || continue
		while "$ipt" -w -t filter -D INPUT -j KUBE-FIREWALL 2>/dev/null; do n=$((n + 1)); done
		while "$ipt" -w -t filter -D OUTPUT -j KUBE-FIREWALL 2>/dev/null; do n=$((n + 1)); done
		while "$ipt" -w -t filter -D KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" \
			-m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP 2>/dev/null; do n=$((n + 1)); done
		"$ipt" -w -t filter -X KUBE-FIREWALL 2>/dev/null && n=$((n + 1))
		for t in mangle filter nat; do
			"$ipt" -w -t "$t" -X KUBE-KUBELET-CANARY 2>/dev/null && n=$((n + 1))
		done
		"$ipt" -w -t mangle -X KUBE-IPTABLES-HINT 2>/dev/null && n=$((n + 1))
	done
	[ "$n" -gt 0 ] && log "  removed kubelet's iptables chains and rules (${n})"
	return 0
}
if $had_node; then
	if pgrep -x kubelet >/dev/null; then
		log "  another kubelet runs on this machine: leaving the KUBE-* iptables chains to it"
	else
		remove_kubelet_iptables
	fi
fi
# libcni's result cache: <network>-<sandbox id>-<interface>, for our network and containerd's loopback.
rm -f /var/lib/cni/results/"${CNI_NETWORK}"-* 2>/dev/null
for c in ${ids:-}; do rm -f /var/lib/cni/results/*-"${c}"-* 2>/dev/null; done
# Directories containerd's CNI code created, only if now empty (never anyone else's files).
rmdir /var/lib/cni/results /var/lib/cni /run/netns 2>/dev/null

# Empty cgroups kubelet created (kubepods hierarchy), deepest first.
for h in /sys/fs/cgroup/*/; do
	[ -d "${h}kubepods" ] || [ -d "${h}kubepods.slice" ] || continue
	find "${h}kubepods" -depth -type d -exec rmdir {} \; 2>/dev/null
done

# remove_created DIR MARKER removes DIR only if up.sh created it (MARKER exists) and nothing is mounted
# at or below it any more: never delete what this project did not create, nor across a mount.
remove_created() {
	local dir=$1 marker="${CLUSTER_DIR}/$2"
	[ -f "$marker" ] || return 0
	if findmnt -rn -o TARGET | awk -v d="$dir" '$0 == d || index($0, d "/") == 1' | grep -q .; then
		log "  WARNING: something is still mounted under ${dir}; leaving it in place"
		return 0
	fi
	rm -rf "$dir" && log "  removed ${dir} (created by up.sh)"
}
remove_created "$KUBELET_DIR" created-kubelet-dir
remove_created "$PROVIDER_DIR" created-provider-dir
rm -rf "$CTRD_RUN"
# localvault's PostgreSQL data (stopped with localvault above).
rm -rf "$VAULT_PG_DIR"
# kubelet keeps its container log symlinks in /var/log/containers; ours point into our state dir.
for l in /var/log/containers/*.log; do
	[ -L "$l" ] && case "$(readlink "$l")" in "${LOGS}/"*) rm -f "$l" ;; esac
done
rmdir /var/log/containers 2>/dev/null
if [ -d "$LOGS" ] && [ -n "${SSCSI_KEEP_LOGS:-}" ]; then
	mkdir -p "$SSCSI_KEEP_LOGS" && cp -r "$LOGS"/. "$SSCSI_KEEP_LOGS"/ 2>/dev/null
fi
rm -rf "$CLUSTER_DIR"
log "cluster down"
