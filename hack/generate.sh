#!/usr/bin/env bash
# Regenerates the CRD API's deepcopy code and CRD YAML with controller-gen,
# pinned in hack/tools/go.mod so the root module does not depend on it.
#
#   hack/generate.sh            rewrite {driver,synccontroller}/apis/*/zz_generated.deepcopy.go and manifests/crds/
#   hack/generate.sh --verify   generate into a temporary copy; fail with a diff if the tree is stale
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
verify=false
case "${1:-}" in
	"") ;;
	--verify) verify=true ;;
	*) echo "usage: $0 [--verify]" >&2; exit 2 ;;
esac

# Build controller-gen once per version; the Go build cache makes rebuilds cheap.
version=$(go -C "$root/hack/tools" list -m -f '{{.Version}}' sigs.k8s.io/controller-tools)
bindir=${SSCSI_TOOLS_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/sscsi/tools}
cg="$bindir/controller-gen-$version"
if [[ ! -x $cg ]]; then
	mkdir -p "$bindir"
	go -C "$root/hack/tools" build -o "$cg.tmp" sigs.k8s.io/controller-tools/cmd/controller-gen
	mv "$cg.tmp" "$cg"
fi

# generate DIR: run controller-gen in module root DIR.
generate() {
	local dir=$1
	rm -rf "$dir/manifests/crds"
	local apis
	for apis in driver/apis synccontroller/apis; do
		(cd "$dir" && "$cg" \
			object paths="./$apis/..." \
			crd:crdVersions=v1 paths="./$apis/..." output:crd:artifacts:config=manifests/crds)
	done
}

if ! $verify; then
	generate "$root"
	exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The API packages import only go.mod dependencies, so this is all controller-gen needs.
mkdir -p "$tmp/driver" "$tmp/synccontroller" "$tmp/manifests"
cp "$root/go.mod" "$root/go.sum" "$tmp/"
cp -R "$root/driver/apis" "$tmp/driver/apis"
cp -R "$root/synccontroller/apis" "$tmp/synccontroller/apis"
generate "$tmp"

status=0
for d in driver/apis synccontroller/apis manifests/crds; do
	if ! diff -ru "$root/$d" "$tmp/$d"; then status=1; fi
done
if ((status)); then
	echo "generated files are stale: run hack/generate.sh and commit the result" >&2
fi
exit $status
