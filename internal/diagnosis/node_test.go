package diagnosis

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

const driverMetricsText = `# HELP node_publish_total Successful NodePublishVolume calls.
# TYPE node_publish_total counter
node_publish_total{os_type="linux",provider="fake"} 7
node_publish_total{os_type="linux",provider="aws"} 2
# HELP node_publish_error_total Failed NodePublishVolume calls.
# TYPE node_publish_error_total counter
node_publish_error_total{error_type="InvalidArgument",os_type="linux",provider="fake"} 2
node_publish_error_total{error_type="NotFound",os_type="linux",provider="fake"} 1
node_publish_error_total{error_type="Unavailable",os_type="linux",provider="aws"} 4
# HELP rotation_reconcile_error_total Failed rotation re-fetches.
# TYPE rotation_reconcile_error_total counter
rotation_reconcile_error_total{error_type="Unavailable",os_type="linux",provider="aws",rotated="false"} 3
`

func TestParseCounts(t *testing.T) {
	c, err := parseCounts(driverMetricsText)
	if err != nil {
		t.Fatal(err)
	}
	if c.publishes["fake"] != 7 || formatCounts(c.publishErrors["fake"]) != "3 (InvalidArgument 2, NotFound 1)" ||
		formatCounts(c.rotationErrors["aws"]) != "3 (Unavailable 3)" || formatCounts(c.rotationErrors["fake"]) != "none" {
		t.Errorf("counts %+v", c)
	}
	if _, err := parseCounts("not { prometheus"); err == nil {
		t.Error("garbage parsed")
	}
}

func FuzzParseCounts(f *testing.F) {
	f.Add(driverMetricsText)
	f.Add("a{b=\"c\"} 1\n")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseCounts(s)
		if err == nil {
			_ = formatCounts(c.publishErrors["fake"])
		}
	})
}

// TestDriverMetricsFromNodeAddress: without a driver pod on the node (a host
// process driver), explain reads the metrics from the node's InternalIP, as
// a Prometheus pod does; a pod that is not running and has no other
// explanation is diagnosed from the node's failed mounts for its provider.
func TestDriverMetricsFromNodeAddress(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, driverMetricsText)
	}))
	t.Cleanup(srv.Close)
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	p, _ := strconv.Atoi(port)
	yes := true
	objs := []runtime.Object{
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeHostName, Address: "n1"}, {Type: corev1.NodeInternalIP, Address: host}}}},
		&storagev1.CSIDriver{ObjectMeta: metav1.ObjectMeta{Name: DriverName}, Spec: storagev1.CSIDriverSpec{PodInfoOnMount: &yes}},
		&storagev1.CSINode{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: storagev1.CSINodeSpec{Drivers: []storagev1.CSINodeDriver{{Name: DriverName, NodeID: "n1"}}}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "p"}, Spec: corev1.PodSpec{NodeName: "n1", Volumes: []corev1.Volume{
			{Name: "s", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: DriverName, ReadOnly: &yes, VolumeAttributes: map[string]string{"secretProviderClass": "app"}}}}}},
			Status: corev1.PodStatus{Phase: corev1.PodPending}},
	}
	src := source(t, objs, spcObject("team", "app", "fake"))
	src.Metrics = KubeMetrics{Kube: src.Kube, Port: p}
	r, err := src.Pod(context.Background(), "team", "p")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Diagnoses) != 1 || r.Diagnoses[0].ID != "driver-mount-errors" ||
		!strings.Contains(r.Diagnoses[0].Evidence, `node_publish_error_total{provider="fake"} 3 (InvalidArgument 2, NotFound 1)`) {
		t.Errorf("diagnoses %+v", r.Diagnoses)
	}
	var m *Check
	for i := range r.Checks {
		if r.Checks[i].Name == "driver-metrics" {
			m = &r.Checks[i]
		}
	}
	if m == nil || !m.OK || !strings.Contains(m.Detail, srv.URL+"/metrics") || !strings.Contains(m.Detail, `provider "fake": 7 mounts`) {
		t.Errorf("driver-metrics check %+v in %+v", m, r.Checks)
	}

	// Nobody serves the port: a failed check, not an error, not a diagnosis.
	srv.Close()
	r, err = src.Pod(context.Background(), "team", "p")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range r.Checks {
		if c.Name == "driver-metrics" && (c.OK || !strings.Contains(c.Detail, "cannot read")) {
			t.Errorf("unreachable metrics: %+v", c)
		}
	}
	if len(r.Diagnoses) != 0 {
		t.Errorf("diagnoses without metrics: %+v", r.Diagnoses)
	}
}

// TestProviderPods: the provider's pod on the pod's node is found by name
// or label; Ready is a passing check, not Ready a diagnosis naming the pod.
func TestProviderPods(t *testing.T) {
	yes := true
	vol := corev1.Volume{Name: "s", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: DriverName, ReadOnly: &yes, VolumeAttributes: map[string]string{"secretProviderClass": "app"}}}}
	app := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "p"}, Spec: corev1.PodSpec{NodeName: "n1", Volumes: []corev1.Volume{vol}}}
	provider := func(node string, ready corev1.ConditionStatus) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "csi-secrets-store-provider-aws-x" + node,
			Labels: map[string]string{"app": "csi-secrets-store-provider-aws"}},
			Spec: corev1.PodSpec{NodeName: node},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: ready}},
				ContainerStatuses: []corev1.ContainerStatus{{Name: "provider", RestartCount: 4,
					State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
					LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 2, Reason: "Error"}}}}}}
	}
	drv := &storagev1.CSIDriver{ObjectMeta: metav1.ObjectMeta{Name: DriverName}, Spec: storagev1.CSIDriverSpec{PodInfoOnMount: &yes}}
	node := &storagev1.CSINode{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: storagev1.CSINodeSpec{Drivers: []storagev1.CSINodeDriver{{Name: DriverName, NodeID: "n1"}}}}

	src := source(t, []runtime.Object{app, drv, node, provider("n1", corev1.ConditionFalse), provider("n2", corev1.ConditionTrue)}, spcObject("team", "app", "aws"))
	r, err := src.Pod(context.Background(), "team", "p")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Diagnoses) != 1 || r.Diagnoses[0].ID != "provider-not-ready" || !strings.Contains(r.Diagnoses[0].Problem, "kube-system/csi-secrets-store-provider-aws-xn1") ||
		!strings.Contains(r.Diagnoses[0].Evidence, "waiting (CrashLoopBackOff) last exit 2 (Error)") {
		t.Errorf("not ready provider: %+v", r.Diagnoses)
	}

	src = source(t, []runtime.Object{app, drv, node, provider("n1", corev1.ConditionTrue)}, spcObject("team", "app", "aws"))
	r, err = src.Pod(context.Background(), "team", "p")
	if err != nil || len(r.Diagnoses) != 0 || len(r.Checks) != 1 || !r.Checks[0].OK || r.Checks[0].Name != "provider/aws" {
		t.Errorf("ready provider: %+v %v", r, err)
	}

	// No provider pod on the node: only a check that says so.
	src = source(t, []runtime.Object{app, drv, node}, spcObject("team", "app", "aws"))
	r, err = src.Pod(context.Background(), "team", "p")
	if err != nil || len(r.Diagnoses) != 0 || len(r.Checks) != 1 || r.Checks[0].OK {
		t.Errorf("no provider pod: %+v %v", r, err)
	}
}
