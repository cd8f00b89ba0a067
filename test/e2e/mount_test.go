//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sscsi/secrets-store/test/e2e/framework"
)

const (
	podTimeout   = 90 * time.Second
	eventTimeout = 60 * time.Second
)

// TestMount: a pod mounts objects of a SecretProviderClass served through each API version.
func TestMount(t *testing.T) {
	t.Parallel()
	for _, version := range []string{"v1", "v1alpha1"} {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			ns := fw.Namespace(t, "mount-"+version)
			user, pass := secretValue("user"), secretValue("pass")
			fw.CreateSPC(t, framework.SPC{Name: "app", Namespace: ns, Version: version, Provider: "fake",
				Parameters: fakeParams(t,
					fakeObject{ObjectName: "username", Value: user},
					fakeObject{ObjectName: "password", Value: pass, FilePermission: "0640"},
					fakeObject{ObjectName: "nested", Value: user, Path: "dir/sub/nested"})})
			vol := framework.CSIVolume{Name: "secrets", SPC: "app"}
			fw.CreatePod(t, framework.BusyboxPod(ns, "app", vol))
			fw.WaitPodRunning(t, ns, "app", podTimeout)

			if got := fw.ReadFile(t, ns, "app", vol.MountPath()+"/username"); got != user {
				t.Errorf("username = %q, want %q", got, user)
			}
			if got := fw.ReadFile(t, ns, "app", vol.MountPath()+"/password"); got != pass {
				t.Errorf("password = %q, want %q", got, pass)
			}
			if got := fw.ReadFile(t, ns, "app", vol.MountPath()+"/dir/sub/nested"); got != user {
				t.Errorf("dir/sub/nested = %q, want %q", got, user)
			}
			mode, err := fw.Exec(t.Context(), ns, "app", "stat", "-L", "-c", "%a", vol.MountPath()+"/password")
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(mode) != "640" {
				t.Errorf("password mode = %s, want 640", strings.TrimSpace(mode))
			}

			// The driver records the mount: SecretProviderClassPodStatus <pod>-<ns>-<spc>.
			st := fw.WaitSPCPodStatus(t, ns, "app", "app", 30*time.Second)
			objs, _, _ := unstructured.NestedSlice(st.Object, "status", "objects")
			if len(objs) != 3 {
				t.Errorf("SecretProviderClassPodStatus lists %d objects, want 3: %v", len(objs), st.Object["status"])
			}
			if node := st.GetLabels()["internal.secrets-store.csi.k8s.io/node-name"]; node != "localhost" {
				t.Errorf("SecretProviderClassPodStatus node-name label = %q, want localhost", node)
			}
		})
	}
}

// TestSPCInOtherNamespace: a SecretProviderClass is looked up in the pod's namespace only.
func TestSPCInOtherNamespace(t *testing.T) {
	t.Parallel()
	nsSPC := fw.Namespace(t, "spc-owner")
	nsPod := fw.Namespace(t, "spc-user")
	fw.CreateSPC(t, framework.SPC{Name: "elsewhere", Namespace: nsSPC, Provider: "fake",
		Parameters: fakeParams(t, fakeObject{ObjectName: "x", Value: secretValue("ns")})})
	fw.CreatePod(t, framework.BusyboxPod(nsPod, "app", framework.CSIVolume{Name: "secrets", SPC: "elsewhere"}))
	ev := fw.WaitEvent(t, nsPod, "app", "FailedMount", eventTimeout, "elsewhere")
	t.Logf("FailedMount: %s", ev.Message)
	if !strings.Contains(ev.Message, nsPod) && !strings.Contains(strings.ToLower(ev.Message), "not found") {
		t.Errorf("FailedMount message does not say the SecretProviderClass is missing from %s: %s", nsPod, ev.Message)
	}
}

// TestMultipleVolumes: one pod mounts two SecretProviderClasses.
func TestMultipleVolumes(t *testing.T) {
	t.Parallel()
	ns := fw.Namespace(t, "multi")
	a, b := secretValue("a"), secretValue("b")
	fw.CreateSPC(t, framework.SPC{Name: "spc-a", Namespace: ns, Provider: "fake", Parameters: fakeParams(t, fakeObject{ObjectName: "a", Value: a})})
	fw.CreateSPC(t, framework.SPC{Name: "spc-b", Namespace: ns, Provider: "fake", Parameters: fakeParams(t, fakeObject{ObjectName: "b", Value: b})})
	va, vb := framework.CSIVolume{Name: "vol-a", SPC: "spc-a"}, framework.CSIVolume{Name: "vol-b", SPC: "spc-b"}
	fw.CreatePod(t, framework.BusyboxPod(ns, "app", va, vb))
	fw.WaitPodRunning(t, ns, "app", podTimeout)
	if got := fw.ReadFile(t, ns, "app", va.MountPath()+"/a"); got != a {
		t.Errorf("vol-a/a = %q, want %q", got, a)
	}
	if got := fw.ReadFile(t, ns, "app", vb.MountPath()+"/b"); got != b {
		t.Errorf("vol-b/b = %q, want %q", got, b)
	}
}

// TestRotation: with requiresRepublish, a value changed in the provider reaches the file within
// kubelet's republish period (about a minute) plus the driver's rotation interval (10 s) plus slack.
func TestRotation(t *testing.T) {
	t.Parallel()
	ns := fw.Namespace(t, "rotation")
	obj := "rotating-" + framework.RandomSuffix()
	v1, v2 := secretValue("v1"), secretValue("v2")
	fw.CreateSPC(t, framework.SPC{Name: "rot", Namespace: ns, Provider: "fake", Parameters: fakeParams(t, fakeObject{ObjectName: obj, Value: v1})})
	vol := framework.CSIVolume{Name: "secrets", SPC: "rot"}
	fw.CreatePod(t, framework.BusyboxPod(ns, "app", vol))
	fw.WaitPodRunning(t, ns, "app", podTimeout)
	if got := fw.ReadFile(t, ns, "app", vol.MountPath()+"/"+obj); got != v1 {
		t.Fatalf("before rotation: %q, want %q", got, v1)
	}
	if err := framework.SetFakeObject(t.Context(), obj, v2); err != nil {
		t.Fatal(err)
	}
	took := fw.WaitFileContent(t, ns, "app", vol.MountPath()+"/"+obj, v2, 150*time.Second)
	t.Logf("rotated value visible in the pod after %s", took.Round(time.Second))
}

// TestUnmountOnPodDeletion: deleting the pod removes its tmpfs mount from the node.
func TestUnmountOnPodDeletion(t *testing.T) {
	t.Parallel()
	ns := fw.Namespace(t, "unmount")
	fw.CreateSPC(t, framework.SPC{Name: "app", Namespace: ns, Provider: "fake", Parameters: fakeParams(t, fakeObject{ObjectName: "x", Value: secretValue("unmount")})})
	fw.CreatePod(t, framework.BusyboxPod(ns, "app", framework.CSIVolume{Name: "secrets", SPC: "app"}))
	pod := fw.WaitPodRunning(t, ns, "app", podTimeout)
	podDir := framework.KubeletDir + "/pods/" + string(pod.UID) + "/volumes/kubernetes.io~csi/secrets"
	mounts, err := framework.MountsUnder(podDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) == 0 {
		t.Fatalf("no mount under %s while the pod runs", podDir)
	}
	fw.WaitSPCPodStatus(t, ns, "app", "app", 30*time.Second)
	fw.DeletePod(t, ns, "app", 60*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for {
		mounts, err = framework.MountsUnder(podDir)
		if err != nil {
			t.Fatal(err)
		}
		if len(mounts) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mounts left after pod deletion: %v", mounts)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Its owner (the pod) is gone: the garbage collector removes the status too.
	fw.WaitSPCPodStatusGone(t, ns, "app", "app", 60*time.Second)
}

// TestMetrics: the driver's metrics endpoint counts publishes.
func TestMetrics(t *testing.T) {
	t.Parallel()
	ns := fw.Namespace(t, "metrics")
	fw.CreateSPC(t, framework.SPC{Name: "app", Namespace: ns, Provider: "fake", Parameters: fakeParams(t, fakeObject{ObjectName: "x", Value: secretValue("metrics")})})
	fw.CreatePod(t, framework.BusyboxPod(ns, "app", framework.CSIVolume{Name: "secrets", SPC: "app"}))
	fw.WaitPodRunning(t, ns, "app", podTimeout)
	m, err := framework.Metrics(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m, "node_publish_total") || !strings.Contains(m, `provider="fake"`) {
		t.Errorf("metrics lack node_publish_total{provider=\"fake\"}:\n%s", m)
	}
}

// TestTokenRequests: the CSIDriver's tokenRequests reach the provider, one token per audience.
func TestTokenRequests(t *testing.T) {
	t.Parallel()
	ns := fw.Namespace(t, "tokens")
	fw.CreateSPC(t, framework.SPC{Name: "app", Namespace: ns, Provider: "fake",
		Parameters: fakeParams(t, fakeObject{ObjectName: "audiences", Source: "serviceAccountTokenAudiences"})})
	vol := framework.CSIVolume{Name: "secrets", SPC: "app"}
	fw.CreatePod(t, framework.BusyboxPod(ns, "app", vol))
	fw.WaitPodRunning(t, ns, "app", podTimeout)
	got := fw.ReadFile(t, ns, "app", vol.MountPath()+"/audiences")
	for _, aud := range []string{"sscsi-e2e", "sts.amazonaws.com"} {
		if !strings.Contains(got, aud) {
			t.Errorf("provider received audiences %q, want %s among them", got, aud)
		}
	}
}

// TestNodePublishSecretRef: the secret named by nodePublishSecretRef reaches the provider.
func TestNodePublishSecretRef(t *testing.T) {
	t.Parallel()
	ns := fw.Namespace(t, "npsecret")
	pass := secretValue("nodepublish")
	_, err := fw.Client.CoreV1().Secrets(ns).Create(t.Context(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: ns, Labels: map[string]string{"secrets-store.csi.k8s.io/used": "true"}},
		StringData: map[string]string{"password": pass},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fw.CreateSPC(t, framework.SPC{Name: "app", Namespace: ns, Provider: "fake",
		Parameters: fakeParams(t, fakeObject{ObjectName: "from-secret", Source: "nodePublishSecret", Key: "password"})})
	vol := framework.CSIVolume{Name: "secrets", SPC: "app", NodePublishSecret: "creds"}
	fw.CreatePod(t, framework.BusyboxPod(ns, "app", vol))
	fw.WaitPodRunning(t, ns, "app", podTimeout)
	if got := fw.ReadFile(t, ns, "app", vol.MountPath()+"/from-secret"); got != pass {
		t.Errorf("from-secret = %q, want %q", got, pass)
	}
}

// TestMissingProvider: a provider with no socket fails the mount in seconds with a clear event.
func TestMissingProvider(t *testing.T) {
	t.Parallel()
	ns := fw.Namespace(t, "noprovider")
	fw.CreateSPC(t, framework.SPC{Name: "app", Namespace: ns, Provider: "nosuchprovider",
		Parameters: fakeParams(t, fakeObject{ObjectName: "x", Value: secretValue("noprovider")})})
	fw.CreatePod(t, framework.BusyboxPod(ns, "app", framework.CSIVolume{Name: "secrets", SPC: "app"}))
	// The clock starts once the pod is on the node: after the restart cases (API server restarted)
	// the scheduler may take tens of seconds to get its lease back, which is not the driver's time.
	if err := until(t.Context(), podTimeout, func(ctx context.Context) error {
		p, err := fw.Client.CoreV1().Pods(ns).Get(ctx, "app", metav1.GetOptions{})
		if err != nil || p.Spec.NodeName == "" {
			return fmt.Errorf("pod not scheduled yet (%v)", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ev := fw.WaitEvent(t, ns, "app", "FailedMount", eventTimeout, "nosuchprovider")
	took := time.Since(start)
	t.Logf("FailedMount after %s: %s", took.Round(time.Second), ev.Message)
	// kubelet's own deadline is two minutes; failing fast means well under that.
	if took > 45*time.Second {
		t.Errorf("missing provider took %s to fail the mount, want seconds", took)
	}
}
