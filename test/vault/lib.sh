# shellcheck shell=bash
# shellcheck disable=SC2034 # these variables are read by the scripts that source this file
# Settings shared by the test/vault scripts; sourced after test/cluster/lib.sh, never run.

VAULT_VERSION="${VAULT_VERSION:-v1.21.0}" # keep equal to vaulttest.VaultVersion
VAULT_SERVER="${SSCSI_VAULT_SERVER:-${SSCSI_CACHE}/vault/${VAULT_VERSION}/bin/vault-server}"
PG_MAJOR=15 # keep equal to vaulttest.PostgresVersion
PG_BIN="${SSCSI_PG_BIN:-/usr/lib/postgresql/${PG_MAJOR}/bin}"

# The local node's Vault (test/vault/localvault, started by test/cluster/up.sh).
VAULT_DIR="${CLUSTER_DIR}/vault"
VAULT_LISTEN="127.0.0.1:8200"
# PostgreSQL's data (it runs as the postgres user, who cannot traverse the 0700 CLUSTER_DIR): on
# /run's tmpfs, so the issued credentials never reach a disk. down.sh removes it.
VAULT_PG_DIR="/run/sscsi-vault-pg"
# provider-vault on the local node: the flags charts/secrets-store gives it, plus -v=10 so the e2e
# suite proves that even its most verbose log holds no secret and no token.
PROVIDER_VAULT_HEALTH="127.0.0.1:8991"
# provider-vault's shared-read cache on the local node: below the driver's rotation poll interval
# (10s), as the chart's values advise, so a KV change reaches a mounted file with the next republish
# (the default 30s made each e2e rotation round wait ~50s instead of ~25s).
VAULT_CACHE_TTL="${VAULT_CACHE_TTL:-5s}"
PROVIDER_VAULT_ARGS=(--endpoint="${PROVIDER_DIR}/vault.sock" --health-addr="${PROVIDER_VAULT_HEALTH}"
	--vault-addr="http://${VAULT_LISTEN}" --allowed-vault-addrs= --vault-mount=kubernetes --audience=vault -v=10
	--cache-ttl="${VAULT_CACHE_TTL}")

# stop_stray_localvault stops a localvault serving VAULT_DIR that has no PID file any more (its state
# was removed by a down.sh that predates it), so that its Vault does not keep VAULT_LISTEN busy.
stop_stray_localvault() {
	local d pid
	for d in /proc/[0-9]*; do
		tr '\0' ' ' 2>/dev/null <"$d/cmdline" | grep -q -- "localvault serve .*-dir ${VAULT_DIR} " || continue
		pid=${d#/proc/}
		kill -TERM "$pid" 2>/dev/null || continue
		for _ in $(seq 50); do [ -d "/proc/${pid}" ] || break; sleep 0.2; done
		kill -KILL "$pid" 2>/dev/null || true
		log "  stopped a stray localvault (pid ${pid})"
	done
}
