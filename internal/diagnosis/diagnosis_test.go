package diagnosis

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/sscsi/secrets-store/internal/pluginclient"
	fakeprovider "github.com/sscsi/secrets-store/providers/fake"
	"github.com/sscsi/secrets-store/providers/plugin"
)

// TestFixesAreTheDocs: every fix is worded exactly as in
// docs/troubleshooting.md, so the two cannot drift apart.
func TestFixesAreTheDocs(t *testing.T) {
	b, err := os.ReadFile("../../docs/troubleshooting.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	fixes := map[string]string{}
	for _, r := range rules {
		fixes[r.id] = r.fix
	}
	fixes["csidriver-missing"] = "Install the chart (it owns it) or `kubectl apply -f manifests/csidriver.yaml`."
	fixes["status-missing"] = "`kubectl get secretproviderclasspodstatuses -n <ns>` shows which pods mounted which object"
	for id, f := range fixes {
		if !strings.Contains(doc, f) {
			t.Errorf("%s: fix %q is not in docs/troubleshooting.md", id, f)
		}
	}
}

// TestMessages: the driver's FailedMount messages (and kubelet's) name one
// diagnosis each; upstream's wording is recognised too.
func TestMessages(t *testing.T) {
	cases := map[string]string{
		`MountVolume.SetUp failed for volume "s" : kubernetes.io/csi: mounter.SetUpAt failed to get CSI client: driver name secrets-store.csi.k8s.io not found in the list of registered CSI drivers`:                                 "driver-not-registered",
		`rpc error: code = InvalidArgument desc = Readonly is not true in request: secrets-store volumes must be mounted read-only`:                                                                                                   "readonly",
		`rpc error: code = NotFound desc = failed to get secretproviderclass team/app, error: SecretProviderClass not found: team/app: create it in the pod's namespace`:                                                              "class-not-found",
		`rpc error: code = Unknown desc = failed to get secretproviderclass team/app, error: secretproviderclasses.secrets-store.csi.x-k8s.io "app" not found`:                                                                        "class-not-found",
		`rpc error: code = FailedPrecondition desc = SecretProviderClass invalid: team/app: spec.provider is empty (provider not set in team/app); set it`:                                                                            "provider-unset",
		`rpc error: code = Unavailable desc = failed to mount secrets store objects for pod team/p, err: error connecting to provider "aws": provider not found: no socket aws.sock in /x`:                                            "provider-not-found",
		`rpc error: code = Unavailable desc = failed to mount secrets store objects for pod team/p, err: error connecting to provider "aws": provider unavailable: provider "aws" does not answer`:                                    "provider-unavailable",
		`rpc error: code = InvalidArgument desc = failed to mount secrets store objects for pod team/p, err: invalid provider response: provider "fake" for SecretProviderClass team/app: invalid payload: path "../x" contains '..'`: "payload-invalid",
		`rpc error: code = Unauthenticated desc = failed to mount secrets store objects for pod team/p, err: provider "aws" failed for SecretProviderClass team/app: no service account token for audience "sts.amazonaws.com"`:       "token-audience",
		`rpc error: code = NotFound desc = failed to mount secrets store objects for pod team/p, err: provider "aws" failed for SecretProviderClass team/app: secret x not found`:                                                     "provider-refused",
	}
	for msg, want := range cases {
		d, ok := fromMessage(msg)
		if !ok || d.ID != want {
			t.Errorf("%q: got %q (%v), want %q", msg, d.ID, ok, want)
		}
	}
	if d, ok := fromMessage("Successfully assigned team/p to node"); ok {
		t.Errorf("unrelated message diagnosed as %s", d.ID)
	}
}

func source(t *testing.T, objs []runtime.Object, crs ...runtime.Object) Source {
	t.Helper()
	scheme := runtime.NewScheme()
	dyn := dynfake.NewSimpleDynamicClientWithCustomListKinds(scheme, map[schema.GroupVersionResource]string{
		spcResource:   "SecretProviderClassList",
		spcpsResource: "SecretProviderClassPodStatusList",
	}, crs...)
	return Source{Kube: fake.NewClientset(objs...), Dynamic: dyn}
}

func spcObject(ns, name, provider string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
		"metadata": map[string]any{"namespace": ns, "name": name},
		"spec":     map[string]any{"provider": provider},
	}}
}

// TestPod: a pod with several problems gets one diagnosis for each, from its
// spec, the registration objects and its events; a healthy setup none.
func TestPod(t *testing.T) {
	yes, no := true, false
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "p"}, Spec: corev1.PodSpec{NodeName: "n1", Volumes: []corev1.Volume{
		{Name: "a", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: DriverName, ReadOnly: &no, VolumeAttributes: map[string]string{"secretProviderClass": "missing"}}}},
		{Name: "b", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: DriverName, ReadOnly: &yes, VolumeAttributes: map[string]string{"secretProviderClass": "noprov"}}}},
	}}}
	ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "e1"}, InvolvedObject: corev1.ObjectReference{Name: "p", Namespace: "team", Kind: "Pod"},
		Type: corev1.EventTypeWarning, Reason: "FailedMount", Message: `MountVolume.SetUp failed for volume "b" : rpc error: code = Unavailable desc = failed to mount secrets store objects for pod team/p, err: error connecting to provider "x": provider not found: no socket`}
	src := source(t, []runtime.Object{pod, ev}, spcObject("team", "noprov", ""))
	ds, err := src.Pod(context.Background(), "team", "p")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, d := range ds {
		if got[d.ID] {
			t.Errorf("%s diagnosed twice", d.ID)
		}
		got[d.ID] = true
		if d.Fix == "" || d.Problem == "" {
			t.Errorf("%s: empty problem or fix: %+v", d.ID, d)
		}
	}
	for _, want := range []string{"readonly", "class-not-found", "provider-unset", "csidriver-missing", "driver-not-registered", "provider-not-found"} {
		if !got[want] {
			t.Errorf("no %s diagnosis in %+v", want, ds)
		}
	}

	// Healthy: class, CSIDriver, registration, a mounted status.
	pod2 := pod.DeepCopy()
	pod2.Spec.Volumes = pod2.Spec.Volumes[1:]
	pod2.Status.Phase = corev1.PodRunning
	drv := &storagev1.CSIDriver{ObjectMeta: metav1.ObjectMeta{Name: DriverName}, Spec: storagev1.CSIDriverSpec{PodInfoOnMount: &yes}}
	node := &storagev1.CSINode{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: storagev1.CSINodeSpec{Drivers: []storagev1.CSINodeDriver{{Name: DriverName, NodeID: "n1"}}}}
	st := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClassPodStatus",
		"metadata": map[string]any{"namespace": "team", "name": "p-team-noprov"}, "status": map[string]any{"mounted": true},
	}}
	src = source(t, []runtime.Object{pod2, drv, node}, spcObject("team", "noprov", "fake"), st)
	if ds, err := src.Pod(context.Background(), "team", "p"); err != nil || len(ds) != 0 {
		t.Fatalf("healthy pod: %+v, %v", ds, err)
	}
}

// TestProviderSockets: run on the node, explain asks each class's provider on
// its real socket: a served provider is fine, an absent one is diagnosed.
func TestProviderSockets(t *testing.T) {
	dir := t.TempDir()
	srv, err := plugin.New(plugin.Config{Name: "fake", Backend: fakeprovider.New()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, filepath.Join(dir, "fake.sock")) }()
	t.Cleanup(func() { cancel(); <-done })
	for i := 0; ; i++ {
		if _, err := os.Stat(filepath.Join(dir, "fake.sock")); err == nil {
			break
		}
		if i > 500 {
			t.Fatal("no socket")
		}
		time.Sleep(10 * time.Millisecond)
	}
	pc, err := pluginclient.New(pluginclient.Config{Dirs: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pc.Close)
	yes := true
	drv := &storagev1.CSIDriver{ObjectMeta: metav1.ObjectMeta{Name: DriverName}, Spec: storagev1.CSIDriverSpec{PodInfoOnMount: &yes}}
	src := source(t, []runtime.Object{drv}, spcObject("team", "ok", "fake"), spcObject("team", "gone", "nosuch"))
	src.Providers = pc
	if ds, err := src.Class(context.Background(), "team", "ok"); err != nil || len(ds) != 0 {
		t.Errorf("served provider: %+v %v", ds, err)
	}
	ds, err := src.Class(context.Background(), "team", "gone")
	if err != nil || len(ds) != 1 || ds[0].ID != "provider-not-found" {
		t.Errorf("absent provider: %+v %v", ds, err)
	}
}
