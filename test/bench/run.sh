#!/usr/bin/env bash
# run.sh: publish benchmarks through the driver's CSI socket with a real kube-apiserver and the
# fake provider; the driver runs as its own process so its RSS can be read.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
test/cluster/build.sh >/dev/null
make -s build
export SSCSI_DRIVER_BIN="$PWD/bin/secrets-store-csi-driver"
# Latency and throughput: 100 publishes each. CPU: driver process CPU per publish+unpublish of one
# 1 KiB file over 300 rounds, and per idle gRPC call (the floor). Memory: one round (idle, then 110 volumes held).
go test -run '^$' -bench "${BENCH:-Paced|BackToBack}" -benchtime "${BENCHTIME:-100x}" -count 1 ./test/bench/ 2>&1 | grep -vE '^(E|I|W)[0-9]{4} '
go test -run '^$' -bench 'PublishCPU|IdleRPCCPU' -benchtime "${CPUTIME:-300x}" -count 1 ./test/bench/ 2>&1 | grep -vE '^(E|I|W)[0-9]{4} '
go test -run '^$' -bench 'RSS' -benchtime 1x -count 1 ./test/bench/ 2>&1 | grep -vE '^(E|I|W)[0-9]{4} '
