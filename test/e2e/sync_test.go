//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sscsi/secrets-store/test/e2e/framework"
)

// TestSyncSecretToEnv: a pod reads, as an environment variable, a Kubernetes Secret that the
// driver synced from its mounted volume (secretObjects), and the Secret is owned by the pod's
// SecretProviderClassPodStatus (a bare pod).
func TestSyncSecretToEnv(t *testing.T) {
	t.Parallel()
	ns := fw.Namespace(t, "sync")
	value := secretValue("sync")
	params := map[string]any{}
	for k, v := range fakeParams(t, fakeObject{ObjectName: "db/password", Value: value}) {
		params[k] = v
	}
	spc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": framework.SPCGroup + "/v1",
		"kind":       "SecretProviderClass",
		"metadata":   map[string]any{"name": "app", "namespace": ns},
		"spec": map[string]any{
			"provider":   "fake",
			"parameters": params,
			"secretObjects": []any{map[string]any{
				"secretName": "app-db",
				"type":       "Opaque",
				"labels":     map[string]any{"app": "e2e"},
				"data":       []any{map[string]any{"objectName": "db/password", "key": "password"}},
			}},
		},
	}}
	if _, err := fw.Dynamic.Resource(framework.SPCResource("v1")).Namespace(ns).Create(t.Context(), spc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating SecretProviderClass: %v", err)
	}
	pod := framework.BusyboxPod(ns, "app", framework.CSIVolume{Name: "secrets", SPC: "app"})
	pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "DB_PASSWORD", ValueFrom: &corev1.EnvVarSource{
		SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "app-db"}, Key: "password"},
	}}}
	fw.CreatePod(t, pod)
	// kubelet mounts the volume first, the driver then writes the Secret, and kubelet retries
	// the container until the Secret exists.
	fw.WaitPodRunning(t, ns, "app", podTimeout)

	out, err := fw.Exec(t.Context(), ns, "app", "/bin/sh", "-c", `echo "$DB_PASSWORD"`)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out); got != value {
		t.Errorf("DB_PASSWORD in the container is not the mounted value (%d bytes)", len(got))
	}
	s, err := fw.Client.CoreV1().Secrets(ns).Get(t.Context(), "app-db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Labels["secrets-store.csi.k8s.io/managed"] != "true" || s.Labels["app"] != "e2e" {
		t.Errorf("Secret labels = %v", s.Labels)
	}
	if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Kind != "SecretProviderClassPodStatus" || s.OwnerReferences[0].Name != "app-"+ns+"-app" {
		t.Errorf("Secret owners = %+v, want the pod's SecretProviderClassPodStatus app-%s-app", s.OwnerReferences, ns)
	}

	// The pod goes; the garbage collector removes its status and then the Secret.
	fw.DeletePod(t, ns, "app", podTimeout)
	deadline := time.Now().Add(90 * time.Second)
	for {
		_, err := fw.Client.CoreV1().Secrets(ns).Get(t.Context(), "app-db", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("synced Secret still exists 90s after its pod was deleted")
		}
		time.Sleep(time.Second)
	}
}
