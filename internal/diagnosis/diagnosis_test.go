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
	for id, f := range checkFixes {
		fixes[id] = f
	}
	// Markdown may wrap a fix across lines.
	doc = strings.Join(strings.Fields(doc), " ")
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
		`MountVolume.SetUp failed for volume "s" : kubernetes.io/csi: mounter.SetUpAt failed to get CSI client: driver name secrets-store.csi.k8s.io not found in the list of registered CSI drivers`:                                                               "driver-not-registered",
		`rpc error: code = InvalidArgument desc = Readonly is not true in request: secrets-store volumes must be mounted read-only`:                                                                                                                                 "readonly",
		`rpc error: code = NotFound desc = failed to get secretproviderclass team/app, error: SecretProviderClass not found: team/app: create it in the pod's namespace`:                                                                                            "class-not-found",
		`rpc error: code = Unknown desc = failed to get secretproviderclass team/app, error: secretproviderclasses.secrets-store.csi.x-k8s.io "app" not found`:                                                                                                      "class-not-found",
		`rpc error: code = FailedPrecondition desc = SecretProviderClass invalid: team/app: spec.provider is empty (provider not set in team/app); set it`:                                                                                                          "provider-unset",
		`rpc error: code = Unavailable desc = failed to mount secrets store objects for pod team/p, err: error connecting to provider "aws": provider not found: no socket aws.sock in /x`:                                                                          "provider-not-found",
		`rpc error: code = Unavailable desc = failed to mount secrets store objects for pod team/p, err: error connecting to provider "aws": provider unavailable: provider "aws" does not answer`:                                                                  "provider-unavailable",
		`rpc error: code = InvalidArgument desc = failed to mount secrets store objects for pod team/p, err: invalid provider response: provider "fake" for SecretProviderClass team/app: invalid payload: path "../x" contains '..'`:                               "payload-path",
		`rpc error: code = Unauthenticated desc = failed to mount secrets store objects for pod team/p, err: provider "aws" failed for SecretProviderClass team/app: no service account token for audience "sts.amazonaws.com"`:                                     "token-audience",
		`rpc error: code = NotFound desc = failed to mount secrets store objects for pod team/p, err: provider "aws" failed for SecretProviderClass team/app: secret x not found`:                                                                                   "provider-refused",
		`rpc error: code = InvalidArgument desc = invalid volume request: secretProviderClass is not set: volumeAttributes.secretProviderClass is missing`:                                                                                                          "class-attribute-missing",
		`rpc error: code = InvalidArgument desc = invalid volume request: volume context has no csi.storage.k8s.io/pod.namespace: the CSIDriver object must set podInfoOnMount: true`:                                                                               "pod-info-off",
		`rpc error: code = InvalidArgument desc = volume_capability: block access is not supported; use a filesystem (mount) volume`:                                                                                                                                "block-volume",
		`rpc error: code = Unavailable desc = failed to get secretproviderclass team/app, error: the Kubernetes API is unavailable: reading SecretProviderClass team/app is forbidden: check the driver's RBAC: x`:                                                  "class-forbidden",
		`rpc error: code = Unavailable desc = failed to get secretproviderclass team/app, error: the Kubernetes API is unavailable: get SecretProviderClass team/app: connection refused`:                                                                           "api-unavailable",
		`rpc error: code = FailedPrecondition desc = SecretProviderClass invalid: team/app: spec.provider: invalid provider name: "a/b" must match ^[a-zA-Z0-9_-]{1,30}$`:                                                                                           "provider-name-invalid",
		`rpc error: code = DeadlineExceeded desc = failed to mount secrets store objects for pod team/p, err: provider "aws" failed for SecretProviderClass team/app: rpc error: context deadline exceeded`:                                                         "provider-timeout",
		`rpc error: code = ResourceExhausted desc = failed to mount secrets store objects for pod team/p, err: provider "aws" failed for SecretProviderClass team/app: throttled by backend after 5 attempts`:                                                       "provider-throttled",
		`rpc error: code = NotFound desc = failed to mount secrets store objects for pod team/p, err: provider "old" for SecretProviderClass team/app: mount request failed with provider error code NotFound`:                                                      "provider-error-code",
		`rpc error: code = Internal desc = failed to mount secrets store objects for pod team/p, err: invalid provider response: missing object versions: provider "x" returned none for SecretProviderClass team/app`:                                              "provider-response-invalid",
		`rpc error: code = Internal desc = failed to mount secrets store objects for pod team/p, err: invalid provider response: provider "x": object_version[0] has an empty id`:                                                                                   "provider-response-invalid",
		`rpc error: code = Internal desc = failed to mount secrets store objects for pod team/p, err: invalid provider response: provider "x": file "a" has negative mode -1`:                                                                                       "provider-response-invalid",
		`rpc error: code = Internal desc = failed to mount secrets store objects for pod team/p, err: invalid provider response: provider "fake" for SecretProviderClass team/app: invalid payload: path "a" appears more than once`:                                "payload-path-duplicate",
		`rpc error: code = Internal desc = failed to mount secrets store objects for pod team/p, err: invalid provider response: provider "fake" for SecretProviderClass team/app: invalid payload: path "a" is a file and also a parent directory of another file`: "payload-path-conflict",
		`rpc error: code = Internal desc = invalid provider response: provider "x" for SecretProviderClass team/app: invalid payload: file "a" has mode 04755; only permission bits (0000-0777) are allowed`:                                                        "payload-mode",
		`rpc error: code = Internal desc = invalid provider response: provider "x" for SecretProviderClass team/app: invalid payload: 1001 files exceed the limit of 1000`:                                                                                          "payload-too-large",
		`rpc error: code = Internal desc = invalid provider response: provider "x" for SecretProviderClass team/app: invalid payload: total size exceeds the limit of 67108864 bytes`:                                                                               "payload-too-large",
		`rpc error: code = Internal desc = invalid provider response: provider "x" for SecretProviderClass team/app: invalid payload: path "a/b/c" has 17 components; at most 16 are allowed`:                                                                       "payload-too-large",
		`rpc error: code = Internal desc = invalid provider response: provider "x" for SecretProviderClass team/app: invalid payload: path "d257/x": the payload creates more than 256 directories`:                                                                 "payload-too-large",
		`rpc error: code = Internal desc = mount failed: mount tmpfs at /var/lib/kubelet/pods/x: operation not permitted`:                                                                                                                                           "tmpfs-mount-failed",
		`rpc error: code = Internal desc = failed to mount secrets store objects for pod team/p, err: mount failed: write files: no space left on device`:                                                                                                           "write-failed",
		`rpc error: code = Aborted desc = an operation on volume csi-123 is already in progress`:                                                                                                                                                                    "operation-in-progress",
		`secret sync is disabled: the driver is not allowed to get, create and update Secrets: bind ClusterRole secretprovidersyncing-role to the driver's service account`:                                                                                         "sync-forbidden",
	}
	seen := map[string]bool{}
	for msg, want := range cases {
		d, ok := fromMessage(msg)
		if !ok || d.ID != want {
			t.Errorf("%q: got %q (%v), want %q", msg, d.ID, ok, want)
		}
		seen[d.ID] = true
	}
	for _, r := range rules {
		if !seen[r.id] {
			t.Errorf("rule %s: no message of this test names it", r.id)
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
	r, err := src.Pod(context.Background(), "team", "p")
	if err != nil {
		t.Fatal(err)
	}
	ds := r.Diagnoses
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
	if r, err := src.Pod(context.Background(), "team", "p"); err != nil || len(r.Diagnoses) != 0 {
		t.Fatalf("healthy pod: %+v, %v", r, err)
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
	if r, err := src.Class(context.Background(), "team", "ok"); err != nil || len(r.Diagnoses) != 0 || len(r.Checks) != 1 || !r.Checks[0].OK {
		t.Errorf("served provider: %+v %v", r, err)
	}
	r, err := src.Class(context.Background(), "team", "gone")
	if err != nil || len(r.Diagnoses) != 1 || r.Diagnoses[0].ID != "provider-not-found" {
		t.Errorf("absent provider: %+v %v", r, err)
	}
}
