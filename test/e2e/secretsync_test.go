//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/sscsi/secrets-store/test/e2e/framework"
)

// The SecretSync controller runs on the local node as test/cluster/up.sh starts it: the chart's
// Deployment (SSCSI_DRIVER_MODE=chart, provider-fake and provider-aws as sidecars) or a host process
// on the node's provider sockets. Both poll every syncPollInterval (lib.sh SYNC_POLL_INTERVAL), and
// provider-aws caches reads for 5s (AWS_CACHE_TTL), below it.
const (
	syncPollInterval = 10 * time.Second
	syncTimeout      = 60 * time.Second
)

var secretSyncResource = schema.GroupVersionResource{Group: "secret-sync.x-k8s.io", Version: "v1alpha1", Resource: "secretsyncs"}

// secretSync is a SecretSync to create.
type secretSync struct {
	name, sa, spc string
	data          map[string]string // targetKey -> sourcePath
}

func createSecretSync(t *testing.T, ns string, s secretSync) *unstructured.Unstructured {
	t.Helper()
	var data []any
	for key, src := range s.data {
		data = append(data, map[string]any{"sourcePath": src, "targetKey": key})
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "secret-sync.x-k8s.io/v1alpha1",
		"kind":       "SecretSync",
		"metadata":   map[string]any{"name": s.name, "namespace": ns},
		"spec": map[string]any{
			"serviceAccountName":      s.sa,
			"secretProviderClassName": s.spc,
			"secretObject":            map[string]any{"type": "Opaque", "labels": map[string]any{"app": "e2e"}, "data": data},
		},
	}}
	out, err := fw.Dynamic.Resource(secretSyncResource).Namespace(ns).Create(t.Context(), u, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating SecretSync %s/%s: %v", ns, s.name, err)
	}
	return out
}

// until polls cond every 250 ms until it holds or timeout passes; it returns the last error cond
// gave (nil on success).
func until(ctx context.Context, timeout time.Duration, cond func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := cond(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// waitSecretData waits until Secret ns/name holds exactly want and returns it.
func waitSecretData(t *testing.T, ns, name string, want map[string]string, timeout time.Duration) *corev1.Secret {
	t.Helper()
	var s *corev1.Secret
	err := until(t.Context(), timeout, func(ctx context.Context) error {
		var err error
		if s, err = fw.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			return err
		}
		if len(s.Data) != len(want) {
			return fmt.Errorf("keys %v, want %d", keys(s.Data), len(want))
		}
		for k, v := range want {
			if string(s.Data[k]) != v {
				return fmt.Errorf("key %s differs (%d bytes)", k, len(s.Data[k]))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Secret %s/%s not as wanted within %s: %v\nSecretSync status: %s", ns, name, timeout, err, secretSyncStatus(t, ns, name))
	}
	return s
}

func keys(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// secretSyncStatus renders a SecretSync's conditions for failure messages.
func secretSyncStatus(t *testing.T, ns, name string) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 5*time.Second)
	defer cancel()
	u, err := fw.Dynamic.Resource(secretSyncResource).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	return fmt.Sprint(conds)
}

// waitCondition waits for a condition of SecretSync ns/name with the given type and status whose
// message contains every one of substrings, and returns its reason and message.
func waitCondition(t *testing.T, ns, name, typ, status string, substrings ...string) (reason, message string) {
	t.Helper()
	err := until(t.Context(), syncTimeout, func(ctx context.Context) error {
		u, err := fw.Dynamic.Resource(secretSyncResource).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	next:
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] != typ || m["status"] != status {
				continue
			}
			msg, _ := m["message"].(string)
			for _, s := range substrings {
				if !strings.Contains(msg, s) {
					continue next
				}
			}
			reason, _ = m["reason"].(string)
			message = msg
			return nil
		}
		return fmt.Errorf("conditions %v", conds)
	})
	if err != nil {
		t.Fatalf("SecretSync %s/%s: no condition %s=%s containing %q within %s: %v\nevents:\n%s", ns, name, typ, status, substrings,
			syncTimeout, err, framework.FormatEvents(fw.Events(t, ns, name)))
	}
	return reason, message
}

// checkOwnedSecret checks the marks and the single controller owner reference of a SecretSync's Secret.
func checkOwnedSecret(t *testing.T, s *corev1.Secret, ss *unstructured.Unstructured) {
	t.Helper()
	if s.Labels["secrets-store.csi.k8s.io/managed"] != "true" || s.Annotations["secrets-store.csi.k8s.io/created-by"] != "SecretSync/"+ss.GetName() {
		t.Errorf("Secret marks: labels %v, annotations %v", s.Labels, s.Annotations)
	}
	if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Kind != "SecretSync" || s.OwnerReferences[0].UID != ss.GetUID() ||
		s.OwnerReferences[0].Controller == nil || !*s.OwnerReferences[0].Controller {
		t.Errorf("Secret owners = %+v, want the SecretSync %s (uid %s) as controller", s.OwnerReferences, ss.GetName(), ss.GetUID())
	}
}

// deleteSecretSync deletes a SecretSync and waits until the garbage collector has removed its Secret.
func deleteSecretSync(t *testing.T, ns, name string) {
	t.Helper()
	if err := fw.Dynamic.Resource(secretSyncResource).Namespace(ns).Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting SecretSync %s/%s: %v", ns, name, err)
	}
	err := until(t.Context(), 90*time.Second, func(ctx context.Context) error {
		_, err := fw.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%v)", err)
	})
	if err != nil {
		t.Fatalf("Secret %s/%s still exists 90s after its SecretSync was deleted: %v", ns, name, err)
	}
}

// TestSecretSyncFake: a SecretSync with provider-fake produces its Secret with no pod in the
// namespace; a pod then reads it as an environment variable; a SecretSync naming a service account
// that does not exist gets a Create=False condition naming it; deleting the SecretSync removes the
// Secret.
func TestSecretSyncFake(t *testing.T) {
	t.Parallel()
	ns := fw.Namespace(t, "ssync")
	value := secretValue("ssync")
	fw.CreateSPC(t, framework.SPC{Name: "fake", Namespace: ns, Provider: "fake",
		Parameters: fakeParams(t, fakeObject{ObjectName: "password", Value: value}, fakeObject{ObjectName: "user", Value: "app"})})
	if _, err := fw.Client.CoreV1().ServiceAccounts(ns).Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ss := createSecretSync(t, ns, secretSync{name: "app-db", sa: "app", spc: "fake", data: map[string]string{"password": "password", "username": "user"}})
	wrong := createSecretSync(t, ns, secretSync{name: "wrong-sa", sa: "no-such-sa", spc: "fake", data: map[string]string{"password": "password"}})

	s := waitSecretData(t, ns, "app-db", map[string]string{"password": value, "username": "app"}, syncTimeout)
	checkOwnedSecret(t, s, ss)
	if s.Labels["app"] != "e2e" {
		t.Errorf("Secret labels %v lack spec.secretObject.labels", s.Labels)
	}
	pods, err := fw.Client.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil || len(pods.Items) != 0 {
		t.Fatalf("the namespace has %d pods (%v): the Secret must come without any", len(pods.Items), err)
	}
	waitCondition(t, ns, "app-db", "Create", "True")

	reason, msg := waitCondition(t, ns, wrong.GetName(), "Create", "False", "no-such-sa", "spec.serviceAccountName")
	t.Logf("wrong service account: %s: %s", reason, msg)
	if _, err := fw.Client.CoreV1().Secrets(ns).Get(t.Context(), wrong.GetName(), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Secret of the SecretSync with a wrong service account: %v, want NotFound", err)
	}

	pod := framework.BusyboxPod(ns, "env")
	pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "DB_PASSWORD", ValueFrom: &corev1.EnvVarSource{
		SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "app-db"}, Key: "password"},
	}}}
	fw.CreatePod(t, pod)
	fw.WaitPodRunning(t, ns, "env", podTimeout)
	out, err := fw.Exec(t.Context(), ns, "env", "/bin/sh", "-c", `echo "$DB_PASSWORD"`)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out); got != value {
		t.Errorf("DB_PASSWORD in the container is not the synced value (%d bytes)", len(got))
	}

	deleteSecretSync(t, ns, "app-db")
}

// TestSecretSyncAWS: a SecretSync with provider-aws, authenticated by IRSA (the service account's
// role annotation, a token of audience sts.amazonaws.com, moto's STS), produces its Secret with no
// pod; a new value in Secrets Manager reaches the Secret within one poll interval; a service account
// without the role annotation gets a condition naming it.
func TestSecretSyncAWS(t *testing.T) {
	t.Parallel()
	ns := fw.Namespace(t, "ssync-aws")
	name := "e2e-ssync-" + framework.RandomSuffix()
	value := secretValue("ssync-aws")
	sm := secretsmanager.NewFromConfig(sdkaws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: sdkaws.String(motoURL),
	})
	if _, err := sm.CreateSecret(t.Context(), &secretsmanager.CreateSecretInput{Name: &name, SecretString: &value}); err != nil {
		t.Fatalf("creating secret %s in moto (is moto_server running? up.sh starts it): %v", name, err)
	}
	for sa, ann := range map[string]map[string]string{
		"app":     {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/sscsi-e2e"},
		"no-role": nil,
	} {
		if _, err := fw.Client.CoreV1().ServiceAccounts(ns).Create(t.Context(), &corev1.ServiceAccount{
			ObjectMeta: metav1.ObjectMeta{Name: sa, Annotations: ann}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	fw.CreateSPC(t, framework.SPC{Name: "aws", Namespace: ns, Provider: "aws", Parameters: map[string]string{
		"region":  "us-east-1",
		"objects": "- objectName: " + name + "\n  objectType: secretsmanager\n  objectAlias: db-password\n",
	}})
	ss := createSecretSync(t, ns, secretSync{name: "app-db", sa: "app", spc: "aws", data: map[string]string{"password": "db-password"}})
	createSecretSync(t, ns, secretSync{name: "no-role", sa: "no-role", spc: "aws", data: map[string]string{"password": "db-password"}})

	s := waitSecretData(t, ns, "app-db", map[string]string{"password": value}, syncTimeout)
	checkOwnedSecret(t, s, ss)
	waitCondition(t, ns, "app-db", "Create", "True")
	reason, msg := waitCondition(t, ns, "no-role", "Create", "False", ns+"/no-role", "eks.amazonaws.com/role-arn")
	t.Logf("service account without a role: %s: %s", reason, msg)

	// The backend changes; the next refresh (every syncPollInterval, ±10% jitter, checked every
	// tenth of it) writes the new value.
	rotated := secretValue("ssync-aws-rotated")
	if _, err := sm.PutSecretValue(t.Context(), &secretsmanager.PutSecretValueInput{SecretId: &name, SecretString: &rotated}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	bound := syncPollInterval + syncPollInterval/10 + syncPollInterval/10 + 2*time.Second
	waitSecretData(t, ns, "app-db", map[string]string{"password": rotated}, bound)
	t.Logf("backend change reached the Secret after %s (poll interval %s, bound %s)", time.Since(start).Round(100*time.Millisecond), syncPollInterval, bound)
	waitCondition(t, ns, "app-db", "Update", "True")

	deleteSecretSync(t, ns, "app-db")
}

// TestSecretSyncUpstreamManifests applies SecretSync manifests of upstream's own e2e suite
// (testdata/upstream) unchanged with kubectl, next to a SecretProviderClass like upstream's:
// the valid one produces its Secret; a service-account-token Secret is refused; a custom type is
// refused by the chart's admission policy where it is installed (upstream's tests expect the same
// of theirs) and created where it is not (the controller itself accepts any valid type but Kubernetes'
// own token types).
func TestSecretSyncUpstreamManifests(t *testing.T) {
	t.Parallel()
	ns := fw.Namespace(t, "ssync-up")
	value := secretValue("ssync-upstream")
	fw.CreateSPC(t, framework.SPC{Name: "e2e-providerspc", Namespace: ns, Provider: "fake",
		Parameters: fakeParams(t, fakeObject{ObjectName: "foo", Value: value})})
	dir, err := filepath.Abs("testdata/upstream")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"valid.yaml", "service_account_token.yaml", "api_credential.yaml"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
		if out, err := fw.Kubectl(t.Context(), "apply", "-n", ns, "-f", filepath.Join(dir, f)); err != nil {
			t.Fatalf("kubectl apply %s: %v\n%s", f, err, out)
		}
	}

	ss, err := fw.Dynamic.Resource(secretSyncResource).Namespace(ns).Get(t.Context(), "sse2esecret", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := waitSecretData(t, ns, "sse2esecret", map[string]string{"bar": value}, syncTimeout)
	checkOwnedSecret(t, s, ss)

	reason, msg := waitCondition(t, ns, "sse2eserviceaccountsecret", "Create", "False", "kubernetes.io/service-account-token")
	t.Logf("service-account-token: %s: %s", reason, msg)

	policies, err := fw.Client.AdmissionregistrationV1().ValidatingAdmissionPolicies().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vap := ""
	for _, p := range policies.Items {
		if strings.HasSuffix(p.Name, "-sync-controller-secrets") {
			vap = p.Name
		}
	}
	if vap != "" {
		reason, msg := waitCondition(t, ns, "my-custom-api-secret", "Create", "False", "example.com/api-credentials", vap)
		t.Logf("custom type under the chart's policy %s: %s: %s", vap, reason, msg)
		if _, err := fw.Client.CoreV1().Secrets(ns).Get(t.Context(), "my-custom-api-secret", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("Secret of a refused type: %v, want NotFound", err)
		}
	} else {
		t.Log("no SecretSync admission policy installed (host-process controller): the custom type is created")
		s := waitSecretData(t, ns, "my-custom-api-secret", map[string]string{"bar": value}, syncTimeout)
		if s.Type != "example.com/api-credentials" {
			t.Errorf("Secret type %q", s.Type)
		}
	}
}
