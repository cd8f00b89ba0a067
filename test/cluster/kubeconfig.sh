#!/usr/bin/env bash
# kubeconfig.sh prints the admin kubeconfig path of the local cluster as its last line.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ -f "$ADMIN_KUBECONFIG" ] || die "no cluster: run make cluster-up"
echo "# kubectl: ${KUBECTL}"
echo "$ADMIN_KUBECONFIG"
