package controlplane

import (
	"os"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
)

// ForTest starts a control plane for one test (or, from TestMain-less packages, one top-level test)
// and stops it in t.Cleanup. Missing binaries fail the test with instructions; they never skip it.
// When the test fails, the tail of the API server log is printed.
func ForTest(t testing.TB) *rest.Config {
	t.Helper()
	cp, err := Start(t.Context(), Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("starting etcd + kube-apiserver: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(cp.LogPath("kube-apiserver")); err == nil {
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				if len(lines) > 40 {
					lines = lines[len(lines)-40:]
				}
				t.Logf("kube-apiserver log tail:\n%s", strings.Join(lines, "\n"))
			}
		}
		cp.Stop()
	})
	return cp.RESTConfig()
}
