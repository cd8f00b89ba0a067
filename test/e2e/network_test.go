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
// network (host process, or a hostNetwork pod in chart mode). The pod reaches
// nothing else: the node gives it a route to its own address only.
func TestPodScrapesDriverMetrics(t *testing.T) {
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
	// Plain HTTP/1.0 over busybox nc (busybox 1.35's wget crashes with SIGSEGV on
	// this response). nc exits 1 when it cannot connect or times out, and kubectl
	// exec passes that on: the two checks below see it fail.
	get := func(addr, port string) (string, error) {
		return fw.Exec(t.Context(), ns, "scraper", "/bin/sh", "-c",
			`printf 'GET /metrics HTTP/1.0\r\n\r\n' | nc -w 10 "$0" "$1"`, addr, port)
	}
	url := "http://" + net.JoinHostPort(host.String(), "8095") + "/metrics"
	out, err := get(host.String(), "8095")
	if err != nil {
		t.Fatalf("pod %s (%s) GET %s: %v\n%.2000s", "scraper", pod.Status.PodIP, url, err, out)
	}
	// This pod's own mount is counted: the answer is the live driver's, not some other server's.
	if !strings.HasPrefix(out, "HTTP/1.0 200 ") || !strings.Contains(out, "# TYPE node_publish_total counter") || !strings.Contains(out, `provider="fake"`) {
		t.Errorf("GET %s from a pod: no node_publish_total{provider=\"fake\"} in:\n%.2000s", url, out)
	}

	// A port nobody serves on the node's address: refused, and the check fails.
	if out, err := get(host.String(), "1"); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("GET port 1 of the node from a pod: err %v, output %.200q: want nc's 'Connection refused' and a failed exec", err, out)
	}
	// Any other address (TEST-NET-3): no route, as before the node route existed.
	if out, err := get("203.0.113.1", "8095"); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("GET 203.0.113.1 from a pod: err %v, output %.200q: want 'Network is unreachable' (pods reach the node only)", err, out)
	}
}
