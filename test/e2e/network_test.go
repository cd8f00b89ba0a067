//go:build e2e

package e2e

import (
	"net"
	"strings"
	"testing"

	"github.com/sscsi/secrets-store/test/e2e/framework"
)

// TestPodScrapesDriverMetrics: a pod on the pod network reaches the node's
// address (its status.hostIP) and scrapes the driver's metrics there, as a
// Prometheus pod does on a real cluster; the driver listens on the host
// network (host process, or a hostNetwork pod in chart mode).
func TestPodScrapesDriverMetrics(t *testing.T) {
	if !nodeMetricsValidated(t) {
		t.Skip("set SSCSI_E2E_NODE_METRICS=1 to run it")
	}
	t.Parallel()
	ns := fw.Namespace(t, "podnet")
	fw.CreateSPC(t, framework.SPC{Name: "app", Namespace: ns, Provider: "fake",
		Parameters: fakeParams(t, fakeObject{ObjectName: "x", Value: secretValue("podnet")})})
	fw.CreatePod(t, framework.BusyboxPod(ns, "scraper", framework.CSIVolume{Name: "secrets", SPC: "app"}))
	pod := fw.WaitPodRunning(t, ns, "scraper", podTimeout)
	host := net.ParseIP(pod.Status.HostIP)
	if host == nil || host.IsLoopback() || pod.Status.PodIP == "" || pod.Status.PodIP == pod.Status.HostIP {
		t.Fatalf("pod IP %q, node address %q: want a pod-network pod on a node with a non-loopback address",
			pod.Status.PodIP, pod.Status.HostIP)
	}
	url := "http://" + net.JoinHostPort(host.String(), "8095") + "/metrics"
	// Plain HTTP/1.0 over busybox nc: busybox 1.35's wget crashes (SIGSEGV) on this response.
	out, err := fw.Exec(t.Context(), ns, "scraper", "/bin/sh", "-c",
		`printf 'GET /metrics HTTP/1.0\r\n\r\n' | nc -w 10 "$0" 8095`, host.String())
	if err != nil {
		t.Fatalf("pod %s (%s) GET %s: %v\n%.2000s", "scraper", pod.Status.PodIP, url, err, out)
	}
	// This pod's own mount is counted: the answer is the live driver's, not some other server's.
	if !strings.HasPrefix(out, "HTTP/1.0 200 ") || !strings.Contains(out, "# TYPE node_publish_total counter") || !strings.Contains(out, `provider="fake"`) {
		t.Errorf("GET %s from a pod: no node_publish_total{provider=\"fake\"} in:\n%.2000s", url, out)
	}
}
