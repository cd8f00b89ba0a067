// Package e2e holds the end-to-end suite (build tag e2e), run by test/e2e/run.sh against the local
// single-node cluster of test/cluster. Its library is test/e2e/framework.
package e2e
