package kubeapi

import (
	"bytes"
	"encoding/base64"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
)

const value = "hunter2-very-secret"

type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// verbose sets klog to -v=10 into a buffer for the test.
func verbose(t *testing.T) *syncBuffer {
	t.Helper()
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	_ = fs.Set("v", "10")
	_ = fs.Set("logtostderr", "false")
	_ = fs.Set("alsologtostderr", "false")
	buf := &syncBuffer{}
	klog.SetOutput(buf)
	t.Cleanup(func() {
		klog.Flush()
		_ = fs.Set("v", "0")
		_ = fs.Set("logtostderr", "true")
		klog.SetOutput(os.Stderr)
	})
	return buf
}

// secretServer answers every GET with a Secret holding value and accepts
// every write.
func secretServer(t *testing.T) *rest.Config {
	t.Helper()
	sec := &corev1.Secret{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}, ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns"},
		Data: map[string][]byte{"password": []byte(value)}}
	s := runtime.NewScheme()
	_ = corev1.AddToScheme(s)
	codecs := serializer.NewCodecFactory(s)
	enc := codecs.LegacyCodec(corev1.SchemeGroupVersion)
	body, err := runtime.Encode(enc, sec)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return &rest.Config{Host: srv.URL, ContentConfig: rest.ContentConfig{GroupVersion: &corev1.SchemeGroupVersion, NegotiatedSerializer: codecs.WithoutConversion()}, APIPath: "/api"}
}

func forms() []string {
	return []string{value, base64.StdEncoding.EncodeToString([]byte(value)), base64.StdEncoding.EncodeToString([]byte(value))[:16]}
}

func exercise(t *testing.T, rc *rest.Config) {
	t.Helper()
	c, err := rest.RESTClientFor(rc)
	if err != nil {
		t.Fatal(err)
	}
	got := &corev1.Secret{}
	if err := c.Get().Namespace("ns").Resource("secrets").Name("db").Do(t.Context()).Into(got); err != nil {
		t.Fatal(err)
	}
	if string(got.Data["password"]) != value {
		t.Fatal("the request did not return the Secret")
	}
	if err := c.Put().Namespace("ns").Resource("secrets").Name("db").Body(got).Do(t.Context()).Error(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get().Namespace("ns").Resource("secrets").Name("db").DoRaw(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestNoBodiesAtV10: client-go at -v=10 logs the requests (so the test
// sees the log lines it guards) but no body: neither the value nor its
// base64 form.
func TestNoBodiesAtV10(t *testing.T) {
	buf := verbose(t)
	exercise(t, secretServer(t))
	klog.Flush()
	out := buf.String()
	if !strings.Contains(out, "Response Body") || !strings.Contains(out, Omitted) {
		t.Fatalf("expected client-go's body lines with the body omitted at -v=10; log:\n%s", out)
	}
	for _, f := range forms() {
		if strings.Contains(out, f) {
			t.Fatalf("log carries %q:\n%s", f, out)
		}
	}
}

// TestNoBodiesWithJSONLogger: the driver's --log-format-json sets a logr
// logger with klog.SetLogger; the filter still applies.
func TestNoBodiesWithJSONLogger(t *testing.T) {
	_ = verbose(t)
	var buf syncBuffer
	klog.SetLogger(funcr.NewJSON(func(obj string) { _, _ = buf.Write([]byte(obj + "\n")) }, funcr.Options{Verbosity: 10}))
	t.Cleanup(klog.ClearLogger)
	exercise(t, secretServer(t))
	out := buf.String()
	if !strings.Contains(out, "Response Body") {
		t.Fatalf("expected client-go's body lines at -v=10; log:\n%s", out)
	}
	for _, f := range forms() {
		if strings.Contains(out, f) {
			t.Fatalf("JSON log carries %q:\n%s", f, out)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	kc := dir + "/kubeconfig"
	if err := os.WriteFile(kc, []byte("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: https://example.invalid:6443}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\nusers:\n- name: u\n  user: {token: abc}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rc, err := Load(kc)
	if err != nil || rc.Host != "https://example.invalid:6443" {
		t.Fatalf("Load = %v, %v", rc, err)
	}
	if _, err := Load(dir + "/missing"); err == nil || !strings.Contains(err.Error(), "--kubeconfig") {
		t.Fatalf("missing file: err = %v, want one naming --kubeconfig", err)
	}
}
