#!/usr/bin/env bash
# run.sh: csi-sanity against the real driver (see sanity_test.go). Makes sure the cached
# kube-apiserver exists, runs the suite and prints Ginkgo's verdict lines; the full log is kept.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
test/cluster/build.sh >/dev/null
log=${SANITY_LOG:-/tmp/sscsi-sanity.log}
set +e
go test -count=1 -v ./test/sanity/ -args -ginkgo.no-color -ginkgo.v >"$log" 2>&1
rc=$?
set -e
grep -E '^(Ran [0-9]+ of|SUCCESS|FAIL|--- |ok |PASS$)|Passed \|' "$log" || true
echo "sanity: specs that ran:"
grep -B1 -E '^• \[' "$log" | grep -vE '^(•|--)' | sed 's/^/  /'
[ $rc -eq 0 ] || { echo "sanity FAILED; full log: $log"; tail -60 "$log"; }
exit $rc
