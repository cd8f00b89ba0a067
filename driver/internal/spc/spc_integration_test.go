//go:build integration

package spc_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

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
	var mu sync.Mutex
	var queries []string
	counted := rest.CopyConfig(rc)
	counted.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(r *http.Request) (*http.Response, error) {
			if r.Method == http.MethodGet {
				mu.Lock()
				queries = append(queries, r.URL.RawQuery)
				mu.Unlock()
			}
			return rt.RoundTrip(r)
		})
	})
	kc, err := kubeclient.NewForConfig(counted, kubeclient.Config{QPS: 50, Burst: 100})
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
	// Reads come from the API server's watch cache (resourceVersion=0);
	// a class created a moment ago is found all the same, and an update
	// shows up.
	mu.Lock()
	first := queries[0]
	mu.Unlock()
	if !strings.Contains("&"+first+"&", "&resourceVersion=0&") {
		t.Errorf("first read's query = %q, want resourceVersion=0 (the watch cache)", first)
	}
	for i := range 20 {
		name := fmt.Sprintf("fresh-%d", i)
		mk("team-a", name, "fake")
		if s, err := spc.Resolve(t.Context(), g, "team-a", name); err != nil || s.Provider != "fake" {
			t.Fatalf("Resolve right after create(%s) = %+v, %v", name, s, err)
		}
	}
	cur, err := g.Get(t.Context(), "team-a", "db")
	if err != nil {
		t.Fatal(err)
	}
	upd := cur.DeepCopy()
	upd.Spec.Parameters = map[string]string{"objects": "changed"}
	if err := kc.CRD.Put().Namespace("team-a").Resource("secretproviderclasses").Name("db").Body(upd).Do(t.Context()).Error(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, err := spc.Resolve(t.Context(), g, "team-a", "db")
		if err == nil && s.Parameters["objects"] == "changed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("an updated class still reads %+v, %v after 5s", s, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
