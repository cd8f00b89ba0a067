//go:build integration

package spc_test

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
	"github.com/sscsi/secrets-store/driver/internal/kubeclient"
	"github.com/sscsi/secrets-store/driver/internal/spc"
	"github.com/sscsi/secrets-store/test/cluster/controlplane"
	"github.com/sscsi/secrets-store/test/driverharness"
)

// TestResolveAgainstAPIServer looks SecretProviderClasses up in a real
// kube-apiserver: v1 and v1alpha1 objects, namespacing, and invalid specs.
func TestResolveAgainstAPIServer(t *testing.T) {
	rc := controlplane.ForTest(t)
	if err := driverharness.InstallCRDs(t.Context(), rc); err != nil {
		t.Fatal(err)
	}
	kc, err := kubeclient.NewForConfig(rc, kubeclient.Config{QPS: 50, Burst: 100})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(ns, name, provider string) {
		t.Helper()
		if _, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !strings.Contains(err.Error(), "already exists") {
			t.Fatal(err)
		}
		obj := &ssv1.SecretProviderClass{
			TypeMeta:   metav1.TypeMeta{APIVersion: "secrets-store.csi.x-k8s.io/v1", Kind: "SecretProviderClass"},
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       ssv1.SecretProviderClassSpec{Provider: ssv1.Provider(provider), Parameters: map[string]string{"objects": "x"}},
		}
		if err := kc.CRD.Post().Namespace(ns).Resource("secretproviderclasses").Body(obj).Do(t.Context()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	mk("team-a", "db", "aws")
	mk("team-a", "empty", "")
	mk("team-a", "evil", "../../run/x")
	// A v1alpha1 object written by an old manifest is served as v1.
	alpha := []byte(`{"apiVersion":"secrets-store.csi.x-k8s.io/v1alpha1","kind":"SecretProviderClass","metadata":{"name":"old","namespace":"team-a"},"spec":{"provider":"fake","parameters":{"objects":"y"}}}`)
	if err := cs.CoreV1().RESTClient().Post().AbsPath("/apis/secrets-store.csi.x-k8s.io/v1alpha1/namespaces/team-a/secretproviderclasses").Body(alpha).SetHeader("Content-Type", "application/json").Do(t.Context()).Error(); err != nil {
		t.Fatal(err)
	}
	g := spc.RESTGetter{Client: kc.CRD}

	s, err := spc.Resolve(t.Context(), g, "team-a", "db")
	if err != nil || s.Provider != "aws" || s.Parameters["objects"] != "x" || s.UID == "" {
		t.Fatalf("Resolve(db) = %+v, %v", s, err)
	}
	if s, err := spc.Resolve(t.Context(), g, "team-a", "old"); err != nil || s.Provider != "fake" {
		t.Fatalf("Resolve(v1alpha1 old) = %+v, %v", s, err)
	}
	// SecretProviderClasses are namespaced: the same name elsewhere is not found.
	_, err = spc.Resolve(t.Context(), g, "team-b", "db")
	if !errors.Is(err, spc.ErrNotFound) || !strings.Contains(err.Error(), "team-b/db") {
		t.Fatalf("other namespace: %v", err)
	}
	for _, name := range []string{"empty", "evil"} {
		if _, err := spc.Resolve(t.Context(), g, "team-a", name); !errors.Is(err, spc.ErrInvalid) || !strings.Contains(err.Error(), "spec.provider") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
