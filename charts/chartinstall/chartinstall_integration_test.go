//go:build integration

package chartinstall_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/sscsi/secrets-store/charts/chartinstall"
	"github.com/sscsi/secrets-store/test/cluster/controlplane"
)

// TestInstallUpgradeUninstall installs the chart into a real kube-apiserver
// (so every object passes the server's validation, not only our decoding),
// upgrades it with Secret sync turned off, and uninstalls it.
func TestInstallUpgradeUninstall(t *testing.T) {
	rc := controlplane.ForTest(t)
	cs := kubernetes.NewForConfigOrDie(rc)
	ctx := t.Context()
	opts := chartinstall.Options{
		Kubeconfig: writeKubeconfig(t, rc),
		Namespace:  "kube-system",
		Release:    "csi-secrets-store",
		ChartDir:   "../secrets-store",
		SkipWait:   true,
		Timeout:    time.Minute,
		Logf:       t.Logf,
		Values: map[string]any{
			"syncSecret":           map[string]any{"enabled": true},
			"enableSecretRotation": true,
			"tokenRequests":        []any{map[string]any{"audience": "vault"}},
			"providers": map[string]any{
				"fake": map[string]any{"enabled": true},
				"aws":  map[string]any{"enabled": true, "region": "us-east-1"},
			},
		},
	}

	// A CSIDriver applied by hand (as test/cluster/up.sh does) is replaced, not a conflict.
	if _, err := cs.StorageV1().CSIDrivers().Create(ctx, csiDriver(), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	opts.ReplaceUnmanagedCSIDriver = true
	rel, err := chartinstall.Apply(ctx, opts)
	if err != nil {
		t.Fatalf("install: %v", err)
	}
	if rel.Version != 1 {
		t.Errorf("revision %d", rel.Version)
	}
	d, err := cs.StorageV1().CSIDrivers().Get(ctx, chartinstall.CSIDriverName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var auds []string
	for _, tr := range d.Spec.TokenRequests {
		auds = append(auds, tr.Audience)
	}
	if !slices.Equal(auds, []string{"vault", "sts.amazonaws.com"}) || d.Spec.RequiresRepublish == nil || !*d.Spec.RequiresRepublish {
		t.Errorf("CSIDriver: audiences %v, requiresRepublish %v", auds, d.Spec.RequiresRepublish)
	}
	if d.Spec.ServiceAccountTokenInSecrets == nil || !*d.Spec.ServiceAccountTokenInSecrets {
		t.Error("serviceAccountTokenInSecrets not set on a 1.37 API server")
	}
	for _, name := range []string{"csi-secrets-store-secrets-store-csi-driver", "csi-secrets-store-secrets-store-csi-driver-provider-aws", "csi-secrets-store-secrets-store-csi-driver-provider-fake"} {
		if _, err := cs.AppsV1().DaemonSets("kube-system").Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Errorf("DaemonSet %s: %v", name, err)
		}
	}
	if _, err := cs.RbacV1().ClusterRoles().Get(ctx, "secretprovidersyncing-role", metav1.GetOptions{}); err != nil {
		t.Errorf("sync role: %v", err)
	}
	// The CRDs from crds/ serve SecretProviderClasses.
	dyn := dynamic.NewForConfigOrDie(rc)
	spcs := schema.GroupVersionResource{Group: "secrets-store.csi.x-k8s.io", Version: "v1", Resource: "secretproviderclasses"}
	if _, err := dyn.Resource(spcs).Namespace("default").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("list SecretProviderClasses: %v", err)
	}

	// Upgrade: turning Secret sync off removes the Secret role.
	opts.Values["syncSecret"] = map[string]any{"enabled": false}
	rel, err = chartinstall.Apply(ctx, opts)
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	if rel.Version != 2 {
		t.Errorf("upgrade revision %d", rel.Version)
	}
	if _, err := cs.RbacV1().ClusterRoles().Get(ctx, "secretprovidersyncing-role", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("sync role after syncSecret.enabled=false: %v, want NotFound", err)
	}

	if err := chartinstall.Uninstall(ctx, opts); err != nil {
		t.Fatalf("uninstall: %v", err)
	}
	if _, err := cs.AppsV1().DaemonSets("kube-system").Get(ctx, "csi-secrets-store-secrets-store-csi-driver", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("driver DaemonSet after uninstall: %v", err)
	}
	// CRDs stay, so SecretProviderClasses survive an uninstall.
	if _, err := dyn.Resource(spcs).Namespace("default").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("CRDs gone after uninstall: %v", err)
	}
	// Uninstalling twice is not an error.
	if err := chartinstall.Uninstall(ctx, opts); err != nil {
		t.Errorf("second uninstall: %v", err)
	}
}

func writeKubeconfig(t *testing.T, rc *rest.Config) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: rc.Host, CertificateAuthorityData: rc.CAData, CertificateAuthority: rc.CAFile, InsecureSkipTLSVerify: rc.Insecure}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: rc.BearerToken, ClientCertificateData: rc.CertData, ClientKeyData: rc.KeyData, ClientCertificate: rc.CertFile, ClientKey: rc.KeyFile}
	cfg.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	cfg.CurrentContext = "c"
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, p); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func csiDriver() *storagev1.CSIDriver {
	f := false
	return &storagev1.CSIDriver{
		ObjectMeta: metav1.ObjectMeta{Name: chartinstall.CSIDriverName},
		Spec: storagev1.CSIDriverSpec{
			AttachRequired:       &f,
			VolumeLifecycleModes: []storagev1.VolumeLifecycleMode{storagev1.VolumeLifecycleEphemeral},
		},
	}
}
