#!/usr/bin/env bash
# Runs every fuzz target in the repository for a while each.
# Usage: hack/fuzz.sh [fuzztime]   (default 15s; e.g. 1m, 500x)
# Targets are found by grepping `func FuzzXxx(` in *_test.go files, so new
# ones are picked up without editing this script. FUZZ_MATCH=regexp limits
# the run to matching target names.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${1:-15s}"
match="${FUZZ_MATCH:-.}"
go="${GO:-go}"

mapfile -t targets < <(git ls-files --cached --others --exclude-standard -- '*_test.go' ':!:vendor' \
	| xargs -r grep -HoE '^func Fuzz[A-Za-z0-9_]+\(' \
	| sed -E 's#^(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]+)\($#./\1 \2#; s#^[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]+)\($#. \1#' \
	| sort -u)

if [ "${#targets[@]}" -eq 0 ]; then
	echo "no fuzz targets found"
	exit 0
fi
failed=0
for t in "${targets[@]}"; do
	pkg="${t% *}"; name="${t#* }"
	[[ "$name" =~ $match ]] || continue
	echo "=== fuzz $pkg $name ($fuzztime)"
	if ! "$go" test -run='^$' -fuzz="^${name}\$" -fuzztime="$fuzztime" "$pkg"; then
		echo "--- FAIL: $pkg $name"
		failed=1
	fi
done
exit "$failed"
