//go:build integration

package synccontroller_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/sscsi/secrets-store/charts/chartinstall"
	"github.com/sscsi/secrets-store/internal/secretdata"
	"github.com/sscsi/secrets-store/providers/fake"
	"github.com/sscsi/secrets-store/providers/plugin"
	"github.com/sscsi/secrets-store/synccontroller"
	syncv1 "github.com/sscsi/secrets-store/synccontroller/apis/v1alpha1"
	"github.com/sscsi/secrets-store/test/cluster/controlplane"
)

const (
	release   = "secrets-store-csi-driver" // fullname = release name
	ctrlSA    = release + "-sync-controller"
	ctrlUser  = "system:serviceaccount:kube-system:" + ctrlSA
	appNS     = "app"
	pollEvery = 2 * time.Second
)

var (
	ssGVR  = schema.GroupVersionResource{Group: "secret-sync.x-k8s.io", Version: "v1alpha1", Resource: "secretsyncs"}
	spcGVR = schema.GroupVersionResource{Group: "secrets-store.csi.x-k8s.io", Version: "v1", Resource: "secretproviderclasses"}
)

type env struct {
	admin   kubernetes.Interface
	dyn     dynamic.Interface
	asCtrl  kubernetes.Interface // the controller's identity, for RBAC and policy checks
	backend *fake.Backend
}

// setup starts a control plane with the garbage collector, installs the
// chart with syncController on (CRDs, RBAC, admission policies), a fake
// provider on a unix socket and the controller in-process, acting as the
// chart's service account.
func setup(t *testing.T, audiences []string) *env {
	t.Helper()
	ctx := t.Context()
	rc := controlplane.ForTest(t)
	admin := kubernetes.NewForConfigOrDie(rc)
	vals := map[string]any{"syncController": map[string]any{"enabled": true, "tokenRequestAudiences": toAny(audiences)}}
	if _, err := chartinstall.Apply(ctx, chartinstall.Options{
		Kubeconfig: writeKubeconfig(t, rc), Namespace: "kube-system", Release: release,
		ChartDir: "../charts/secrets-store", SkipWait: true, Timeout: 2 * time.Minute, Logf: t.Logf, Values: vals,
	}); err != nil {
		t.Fatalf("install chart: %v", err)
	}
	// The garbage collector learns which resources exist when it starts and again only every
	// 30 s (kube-controller-manager's fixed GC sync period). Started before the chart's CRDs, it
	// could miss a SecretSync's deletion for that long (a CI flake: "Secret db not
	// garbage-collected"), so it starts once discovery lists them.
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		rl, err := admin.Discovery().ServerResourcesForGroupVersion(ssGVR.GroupVersion().String())
		return err == nil && slices.ContainsFunc(rl.APIResources, func(r metav1.APIResource) bool { return r.Name == ssGVR.Resource }), nil
	}); err != nil {
		t.Fatalf("%s not served after the chart's install: %v", ssGVR, err)
	}
	controlplane.ControllerManagerForTest(t, rc)
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, sa := range []string{"app-sa", "default"} {
		_, err := admin.CoreV1().ServiceAccounts(appNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	dir, err := os.MkdirTemp("", "sscsi-sync-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	backend := fake.New()
	srv, err := plugin.New(plugin.Config{Name: "fake", Version: "test", Backend: backend})
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithCancel(context.WithoutCancel(ctx))
	pdone := make(chan struct{})
	go func() { defer close(pdone); _ = srv.Serve(pctx, filepath.Join(dir, "fake.sock")) }()
	t.Cleanup(func() { pcancel(); <-pdone })

	ctrlCfg := rest.CopyConfig(rc)
	ctrlCfg.Impersonate = rest.ImpersonationConfig{UserName: ctrlUser, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"}}
	cctx, ccancel := context.WithCancel(context.WithoutCancel(ctx))
	cdone := make(chan error, 1)
	go func() {
		cdone <- synccontroller.Run(cctx, synccontroller.Config{
			RESTConfig: ctrlCfg, ProviderDirs: []string{dir}, RotationPollInterval: pollEvery,
			LeaderElect: true, LeaderElectionNamespace: "kube-system", LeaderElectionID: ctrlSA,
			TokenRequestAudiences: audiences, Workers: 2,
		})
	}()
	t.Cleanup(func() {
		ccancel()
		if err := <-cdone; err != nil {
			t.Errorf("controller: %v", err)
		}
	})
	return &env{admin: admin, dyn: dynamic.NewForConfigOrDie(rc), asCtrl: kubernetes.NewForConfigOrDie(ctrlCfg), backend: backend}
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func writeKubeconfig(t *testing.T, rc *rest.Config) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: rc.Host, CertificateAuthorityData: rc.CAData, CertificateAuthority: rc.CAFile}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: rc.BearerToken, ClientCertificateData: rc.CertData, ClientKeyData: rc.KeyData, ClientCertificate: rc.CertFile, ClientKey: rc.KeyFile}
	cfg.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	cfg.CurrentContext = "c"
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// apply creates a namespaced object from YAML in appNS, exactly as written.
func (e *env) apply(t *testing.T, gvr schema.GroupVersionResource, doc string) {
	t.Helper()
	var obj map[string]any
	if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: obj}
	if _, err := e.dyn.Resource(gvr).Namespace(appNS).Create(t.Context(), u, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create %s: %v", gvr.Resource, err)
	}
}

func (e *env) spc(t *testing.T, name, objects string) {
	t.Helper()
	b, _ := json.Marshal(objects)
	e.apply(t, spcGVR, fmt.Sprintf(`
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {name: %s}
spec:
  provider: fake
  parameters:
    objects: %s
`, name, b))
}

func (e *env) getSS(t *testing.T, name string) *syncv1.SecretSync {
	t.Helper()
	u, err := e.dyn.Resource(ssGVR).Namespace(appNS).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := u.MarshalJSON()
	ss := &syncv1.SecretSync{}
	if err := json.Unmarshal(b, ss); err != nil {
		t.Fatal(err)
	}
	return ss
}

// waitCond waits for condition typ of SecretSync name to have reason.
func (e *env) waitCond(t *testing.T, name, typ, reason string) metav1.Condition {
	t.Helper()
	var got metav1.Condition
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		c := meta.FindStatusCondition(e.getSS(t, name).Status.Conditions, typ)
		if c != nil {
			got = *c
		}
		return c != nil && c.Reason == reason, nil
	})
	if err != nil {
		t.Fatalf("SecretSync %s: condition %s = %+v, want reason %s", name, typ, got, reason)
	}
	return got
}

func (e *env) waitSecret(t *testing.T, name string, ok func(*corev1.Secret) bool) *corev1.Secret {
	t.Helper()
	var s *corev1.Secret
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var err error
		s, err = e.admin.CoreV1().Secrets(appNS).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil && ok(s), err
	})
	if err != nil {
		t.Fatalf("Secret %s: %v (last %+v)", name, err, s)
	}
	return s
}

const dbObjects = `
- objectName: username
  value: admin
- objectName: password
  value: s3cret
`

func TestSecretSync(t *testing.T) {
	e := setup(t, []string{"sync-test"})
	ctx := t.Context()
	e.spc(t, "db-spc", dbObjects)

	t.Run("reconcile", func(t *testing.T) {
		e.apply(t, ssGVR, `
apiVersion: secret-sync.x-k8s.io/v1alpha1
kind: SecretSync
metadata: {name: db}
spec:
  serviceAccountName: app-sa
  secretProviderClassName: db-spc
  secretObject:
    type: kubernetes.io/basic-auth
    data:
    - {sourcePath: username, targetKey: username}
    - {sourcePath: password, targetKey: password}
    labels: {app: db}
    annotations: {team: payments}
`)
		s := e.waitSecret(t, "db", func(s *corev1.Secret) bool { return string(s.Data["password"]) == "s3cret" })
		ss := e.getSS(t, "db")
		if s.Type != corev1.SecretTypeBasicAuth || string(s.Data["username"]) != "admin" {
			t.Errorf("Secret %s %v", s.Type, s.Data)
		}
		if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != ss.UID || s.OwnerReferences[0].Kind != "SecretSync" {
			t.Errorf("owners %+v", s.OwnerReferences)
		}
		if s.Labels["app"] != "db" || s.Labels[secretdata.ManagedLabel] != "true" || s.Labels["secrets-store.sync.x-k8s.io/secretsync"] != "db" ||
			s.Annotations["team"] != "payments" || s.Annotations[secretdata.CreatedByAnnotation] != "SecretSync/db" {
			t.Errorf("labels %v annotations %v", s.Labels, s.Annotations)
		}
		e.waitCond(t, "db", syncv1.ConditionTypeCreate, syncv1.ReasonCreateSucceeded)
		ss = e.getSS(t, "db")
		if ss.Status.SyncHash == "" || ss.Status.LastSuccessfulSyncTime == nil {
			t.Errorf("status %+v", ss.Status)
		}
		if strings.Contains(ss.Status.SyncHash, "s3cret") {
			t.Error("hash carries the value")
		}
	})

	t.Run("unchanged refresh writes nothing", func(t *testing.T) {
		before := e.waitSecret(t, "db", func(*corev1.Secret) bool { return true })
		calls := e.backend.Calls()
		time.Sleep(3 * pollEvery)
		if e.backend.Calls() <= calls {
			t.Fatalf("no refresh within %s", 3*pollEvery)
		}
		after := e.waitSecret(t, "db", func(*corev1.Secret) bool { return true })
		if after.ResourceVersion != before.ResourceVersion {
			t.Errorf("Secret rewritten without a change: %s -> %s", before.ResourceVersion, after.ResourceVersion)
		}
	})

	t.Run("backend change within a poll interval", func(t *testing.T) {
		e.backend.Set("password", []byte("r0tated"))
		start := time.Now()
		e.waitSecret(t, "db", func(s *corev1.Secret) bool { return string(s.Data["password"]) == "r0tated" })
		if d := time.Since(start); d > pollEvery*3/2+time.Second {
			t.Errorf("change took %s with a %s poll interval", d, pollEvery)
		}
		e.waitCond(t, "db", syncv1.ConditionTypeUpdate, syncv1.ReasonValueChangeOrForce)
	})

	t.Run("drift is repaired", func(t *testing.T) {
		s := e.waitSecret(t, "db", func(*corev1.Secret) bool { return true })
		s.Data["password"] = []byte("tampered")
		s.Labels["extra"] = "kept"
		if _, err := e.admin.CoreV1().Secrets(appNS).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitSecret(t, "db", func(s *corev1.Secret) bool {
			return string(s.Data["password"]) == "r0tated" && s.Labels["extra"] == "kept"
		})
	})

	t.Run("forceSynchronization", func(t *testing.T) {
		calls := e.backend.Calls()
		patch := []byte(`{"spec":{"forceSynchronization":"now-1"}}`)
		if _, err := e.dyn.Resource(ssGVR).Namespace(appNS).Patch(ctx, "db", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, pollEvery, true, func(context.Context) (bool, error) {
			ss := e.getSS(t, "db")
			c := meta.FindStatusCondition(ss.Status.Conditions, syncv1.ConditionTypeUpdate)
			return c != nil && c.ObservedGeneration == ss.Generation && e.backend.Calls() > calls, nil
		})
		if err != nil {
			t.Fatalf("no sync right after forceSynchronization changed: %v", err)
		}
	})

	t.Run("foreign Secret refused, then adopted on its owner's opt-in", func(t *testing.T) {
		foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "mine", Namespace: appNS}, Data: map[string][]byte{"password": []byte("hands-off")}}
		if _, err := e.admin.CoreV1().Secrets(appNS).Create(ctx, foreign, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		e.apply(t, ssGVR, `
apiVersion: secret-sync.x-k8s.io/v1alpha1
kind: SecretSync
metadata: {name: mine}
spec:
  serviceAccountName: app-sa
  secretProviderClassName: db-spc
  secretObject:
    data:
    - {sourcePath: password, targetKey: password}
`)
		c := e.waitCond(t, "mine", syncv1.ConditionTypeCreate, syncv1.ReasonSecretNotOwned)
		if c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, secretdata.AllowAdoptionAnnotation) {
			t.Errorf("condition %+v", c)
		}
		s := e.waitSecret(t, "mine", func(*corev1.Secret) bool { return true })
		if string(s.Data["password"]) != "hands-off" || len(s.OwnerReferences) != 0 {
			t.Fatalf("foreign Secret changed: %v %v", s.Data, s.OwnerReferences)
		}
		s.Annotations = map[string]string{secretdata.AllowAdoptionAnnotation: "true"}
		if _, err := e.admin.CoreV1().Secrets(appNS).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitSecret(t, "mine", func(s *corev1.Secret) bool {
			_, open := s.Annotations[secretdata.AllowAdoptionAnnotation]
			return string(s.Data["password"]) == "r0tated" && len(s.OwnerReferences) == 1 && s.Annotations[secretdata.CreatedByAnnotation] == "SecretSync/mine" && !open
		})
	})

	t.Run("wrong service account", func(t *testing.T) {
		e.apply(t, ssGVR, `
apiVersion: secret-sync.x-k8s.io/v1alpha1
kind: SecretSync
metadata: {name: nosa}
spec:
  serviceAccountName: not-there
  secretProviderClassName: db-spc
  secretObject:
    data:
    - {sourcePath: password, targetKey: password}
`)
		c := e.waitCond(t, "nosa", syncv1.ConditionTypeCreate, syncv1.ReasonServiceAccountError)
		if !strings.Contains(c.Message, "not-there") {
			t.Errorf("message does not name the service account: %s", c.Message)
		}
	})

	t.Run("missing SecretProviderClass, then created", func(t *testing.T) {
		e.apply(t, ssGVR, `
apiVersion: secret-sync.x-k8s.io/v1alpha1
kind: SecretSync
metadata: {name: late}
spec:
  serviceAccountName: app-sa
  secretProviderClassName: late-spc
  secretObject:
    data:
    - {sourcePath: username, targetKey: user}
`)
		e.waitCond(t, "late", syncv1.ConditionTypeCreate, syncv1.ReasonControllerSPCError)
		e.spc(t, "late-spc", dbObjects)
		e.waitSecret(t, "late", func(s *corev1.Secret) bool { return string(s.Data["user"]) == "admin" })
	})

	t.Run("bad sourcePath and refused type", func(t *testing.T) {
		e.apply(t, ssGVR, `
apiVersion: secret-sync.x-k8s.io/v1alpha1
kind: SecretSync
metadata: {name: badpath}
spec:
  serviceAccountName: app-sa
  secretProviderClassName: db-spc
  secretObject:
    data:
    - {sourcePath: nope, targetKey: x}
`)
		c := e.waitCond(t, "badpath", syncv1.ConditionTypeCreate, syncv1.ReasonUserInputValidation)
		if !strings.Contains(c.Message, "nope") || strings.Contains(c.Message, "s3cret") || strings.Contains(c.Message, "r0tated") {
			t.Errorf("message %q", c.Message)
		}
		e.apply(t, ssGVR, `
apiVersion: secret-sync.x-k8s.io/v1alpha1
kind: SecretSync
metadata: {name: satoken}
spec:
  serviceAccountName: app-sa
  secretProviderClassName: db-spc
  secretObject:
    type: kubernetes.io/service-account-token
    data:
    - {sourcePath: password, targetKey: token}
`)
		e.waitCond(t, "satoken", syncv1.ConditionTypeCreate, syncv1.ReasonUserInputValidation)
		if _, err := e.admin.CoreV1().Secrets(appNS).Get(ctx, "satoken", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("service-account-token Secret written: %v", err)
		}
	})

	t.Run("upstream manifest applies unchanged", func(t *testing.T) {
		e.spc(t, "e2e-providerspc", "- objectName: foo\n  value: bar-value\n")
		// test/e2e/testdata/secretsyncs/valid.yaml of the upstream project.
		e.apply(t, ssGVR, `apiVersion: secret-sync.x-k8s.io/v1alpha1
kind: SecretSync
metadata:
  name: sse2esecret  # this is the name of the secret that will be created
spec:
  serviceAccountName: default
  secretProviderClassName: e2e-providerspc
  secretObject:
    type: Opaque
    data:
      - sourcePath: foo # name of the object in the SecretProviderClass
        targetKey:  bar # name of the key in the Kubernetes secret
`)
		e.waitSecret(t, "sse2esecret", func(s *corev1.Secret) bool { return string(s.Data["bar"]) == "bar-value" })
	})

	t.Run("the provider is told which SecretSync", func(t *testing.T) {
		// provider-vault keeps leased values under this key; the fake
		// provider echoes what it received.
		e.spc(t, "info-spc", "- {objectName: info, source: podInfo}\n")
		e.apply(t, ssGVR, `
apiVersion: secret-sync.x-k8s.io/v1alpha1
kind: SecretSync
metadata: {name: info}
spec:
  serviceAccountName: app-sa
  secretProviderClassName: info-spc
  secretObject:
    data:
    - {sourcePath: info, targetKey: info}
`)
		s := e.waitSecret(t, "info", func(s *corev1.Secret) bool { return len(s.Data["info"]) > 0 })
		var got map[string]string
		if err := json.Unmarshal(s.Data["info"], &got); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"namespace": appNS, "serviceAccount": "app-sa", "name": "", "uid": "", "secretSyncName": "info", "secretSyncUID": string(e.getSS(t, "info").UID)}
		if !maps.Equal(got, want) {
			t.Errorf("the provider got %v, want %v", got, want)
		}
	})

	t.Run("delete removes the Secret", func(t *testing.T) {
		if err := e.dyn.Resource(ssGVR).Namespace(appNS).Delete(ctx, "db", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			_, err := e.admin.CoreV1().Secrets(appNS).Get(ctx, "db", metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			t.Fatal("Secret db not garbage-collected after its SecretSync was deleted")
		}
	})

	t.Run("RBAC: no reads, no deletes", func(t *testing.T) {
		secrets := e.asCtrl.CoreV1().Secrets(appNS)
		if _, err := secrets.Get(ctx, "mine", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("get: %v", err)
		}
		if _, err := secrets.List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("list: %v", err)
		}
		if err := secrets.Delete(ctx, "mine", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("delete: %v", err)
		}
		if _, err := e.asCtrl.CoreV1().ConfigMaps(appNS).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("configmaps: %v", err)
		}
	})

	t.Run("admission policies", func(t *testing.T) {
		secrets := e.asCtrl.CoreV1().Secrets(appNS)
		denied := func(what string, err error) {
			t.Helper()
			if !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
				t.Errorf("%s: allowed or wrong error: %v", what, err)
			} else if !strings.Contains(err.Error(), "ValidatingAdmissionPolicy") {
				t.Errorf("%s: refused, but not by a policy: %v", what, err)
			}
		}
		_, err := secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "free"}, StringData: map[string]string{"a": "b"}}, metav1.CreateOptions{})
		denied("create without owner", err)

		ss := e.getSS(t, "mine")
		yes := true
		owned := metav1.ObjectMeta{Name: "mine-typed", Annotations: map[string]string{secretdata.CreatedByAnnotation: "SecretSync/mine-typed"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "secret-sync.x-k8s.io/v1alpha1", Kind: "SecretSync", Name: "mine-typed", UID: ss.UID, Controller: &yes}}}
		_, err = secrets.Create(ctx, &corev1.Secret{ObjectMeta: owned, Type: "example.com/custom", StringData: map[string]string{"a": "b"}}, metav1.CreateOptions{})
		denied("create of a type not allowed", err)

		other := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: appNS}, Data: map[string][]byte{"k": []byte("v")}}
		if _, err := e.admin.CoreV1().Secrets(appNS).Create(ctx, other, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		hijack := fmt.Sprintf(`{"metadata":{"annotations":{%q:"SecretSync/other"},"ownerReferences":[{"apiVersion":"secret-sync.x-k8s.io/v1alpha1","kind":"SecretSync","name":"other","uid":%q,"controller":true}]},"data":{"k":"eA=="}}`,
			secretdata.CreatedByAnnotation, ss.UID)
		_, err = secrets.Patch(ctx, "other", types.MergePatchType, []byte(hijack), metav1.PatchOptions{})
		denied("taking over a foreign Secret", err)

		sas := e.asCtrl.CoreV1().ServiceAccounts(appNS)
		long, short := int64(3600), int64(600)
		_, err = sas.CreateToken(ctx, "app-sa", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"vault"}, ExpirationSeconds: &short}}, metav1.CreateOptions{})
		denied("token for an audience not configured", err)
		_, err = sas.CreateToken(ctx, "app-sa", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &long}}, metav1.CreateOptions{})
		denied("long-lived token", err)
		if _, err := sas.CreateToken(ctx, "app-sa", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"sync-test"}, ExpirationSeconds: &short}}, metav1.CreateOptions{}); err != nil {
			t.Errorf("the controller's own kind of token refused: %v", err)
		}
	})
}
