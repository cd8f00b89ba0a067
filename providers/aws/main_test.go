package aws_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/sscsi/secrets-store/providers/aws"
	"github.com/sscsi/secrets-store/providers/aws/auth"
	"github.com/sscsi/secrets-store/providers/plugin"
	"github.com/sscsi/secrets-store/test/faultproxy"
	"github.com/sscsi/secrets-store/test/moto"
)

// motoURL is the emulator shared by every test of this package run; set
// once by TestMain, read-only afterwards.
var motoURL string

func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.fuzzworker"); f != nil && f.Value.String() == "true" {
		// Fuzz workers run fuzz targets only, none of which needs moto.
		os.Exit(m.Run())
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := moto.Start(ctx, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: these tests need moto_server:", err)
		cancel()
		os.Exit(1)
	}
	motoURL = srv.URL
	code := m.Run()
	srv.Stop()
	cancel()
	os.Exit(code)
}

const (
	region         = "us-east-1"
	failoverRegion = "us-west-2"
	roleARN        = "arn:aws:iam::123456789012:role/app"
)

// env is one test's provider wired to moto through a fault proxy.
type env struct {
	t       *testing.T
	prefix  string
	proxy   *faultproxy.Proxy
	kube    *kubefake.Clientset
	clock   *clocktesting.FakeClock
	backend *aws.Backend
	metrics *aws.Metrics
}

type envOptions struct {
	cacheTTL            time.Duration
	noRoleCache         bool
	noCredentialsCache  bool
	podIdentityEndpoint string
	maxAttempts         int
}

var nonName = regexp.MustCompile(`[^a-zA-Z0-9]+`)

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	p, err := faultproxy.New(motoURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if o.maxAttempts == 0 {
		o.maxAttempts = 3
	}
	cfg, err := aws.NewAWSConfig(t.Context(), aws.AWSOptions{EndpointURL: p.URL, MaxAttempts: o.maxAttempts, MaxBackoff: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	kube := kubefake.NewClientset(
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "app", Annotations: map[string]string{auth.RoleAnnotation: roleARN}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "other", Annotations: map[string]string{auth.RoleAnnotation: "arn:aws:iam::123456789012:role/other"}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "plain"}},
	)
	clk := clocktesting.NewFakeClock(time.Now())
	m := aws.NewMetrics(nil)
	b, err := aws.NewBackend(aws.BackendConfig{AWS: cfg, Kube: kube, Clock: clk, CacheTTL: o.cacheTTL, PodIdentityEndpoint: o.podIdentityEndpoint, Metrics: m,
		NoRoleCache: o.noRoleCache, NoCredentialsCache: o.noCredentialsCache})
	if err != nil {
		t.Fatal(err)
	}
	prefix := strings.Trim(nonName.ReplaceAllString(t.Name(), "-"), "-") + "-"
	return &env{t: t, prefix: prefix, proxy: p, kube: kube, clock: clk, backend: b, metrics: m}
}

func (e *env) name(n string) string { return e.prefix + n }

// seedConfig talks to moto directly (not through the proxy).
func seedConfig(r string) sdkaws.Config {
	return sdkaws.Config{
		Region:       r,
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: sdkaws.String(motoURL),
	}
}

func (e *env) sm(r string) *secretsmanager.Client { return secretsmanager.NewFromConfig(seedConfig(r)) }
func (e *env) ssm(r string) *ssm.Client           { return ssm.NewFromConfig(seedConfig(r)) }

// putSecret creates or updates a secret and returns the new version id.
func (e *env) putSecret(r, name string, str *string, bin []byte) string {
	e.t.Helper()
	ctx := e.t.Context()
	c := e.sm(r)
	out, err := c.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: sdkaws.String(name), SecretString: str, SecretBinary: bin})
	if err == nil {
		return sdkaws.ToString(out.VersionId)
	}
	up, uerr := c.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: sdkaws.String(name), SecretString: str, SecretBinary: bin})
	if uerr != nil {
		e.t.Fatalf("seed secret %s: %v / %v", name, err, uerr)
	}
	return sdkaws.ToString(up.VersionId)
}

func (e *env) putParam(r, name, value string, typ ssmtypes.ParameterType) int64 {
	e.t.Helper()
	out, err := e.ssm(r).PutParameter(e.t.Context(), &ssm.PutParameterInput{Name: sdkaws.String(name), Value: sdkaws.String(value), Type: typ, Overwrite: sdkaws.Bool(true)})
	if err != nil {
		e.t.Fatalf("seed parameter %s: %v", name, err)
	}
	return out.Version
}

// jwt builds an unsigned service-account token for ns/sa.
func jwt(ns, sa, pod string) string {
	enc := base64.RawURLEncoding
	h := enc.EncodeToString([]byte(`{"alg":"RS256","kid":"test"}`))
	c, _ := json.Marshal(map[string]any{
		"sub": "system:serviceaccount:" + ns + ":" + sa, "aud": []string{auth.AudienceIRSA},
		"exp": time.Now().Add(time.Hour).Unix(), "kubernetes.io": map[string]any{"pod": map[string]string{"name": pod}},
	})
	return h + "." + enc.EncodeToString(c) + "." + enc.EncodeToString([]byte("sig-"+pod))
}

// request builds a mount request for pod (service account sa).
func request(pod, sa string, params map[string]string) *plugin.Request {
	attrs := map[string]string{
		plugin.AttrPodName: pod, plugin.AttrPodNamespace: "default", plugin.AttrPodUID: "uid-" + pod,
		plugin.AttrServiceAccount: sa, "region": region,
	}
	for k, v := range params {
		attrs[k] = v
	}
	tok := jwt("default", sa, pod)
	return &plugin.Request{
		Attributes: attrs, Secrets: map[string]string{}, Permission: 0o644, CurrentVersions: map[string]string{},
		Pod: plugin.Pod{Name: pod, Namespace: "default", UID: "uid-" + pod, ServiceAccount: sa},
		Tokens: map[string]plugin.Token{
			auth.AudienceIRSA:        {Token: tok, ExpirationTimestamp: time.Now().Add(time.Hour)},
			auth.AudiencePodIdentity: {Token: tok, ExpirationTimestamp: time.Now().Add(time.Hour)},
		},
	}
}

func (e *env) mount(pod, sa string, params map[string]string) (*plugin.Response, error) {
	return e.backend.Mount(e.t.Context(), request(pod, sa, params))
}

func (e *env) mustMount(pod, sa string, params map[string]string) map[string]mounted {
	e.t.Helper()
	resp, err := e.mount(pod, sa, params)
	if err != nil {
		e.t.Fatalf("mount %s: %v", pod, err)
	}
	return files(e.t, resp)
}

type mounted struct {
	contents string
	mode     uint32
	version  string
}

func files(t *testing.T, resp *plugin.Response) map[string]mounted {
	t.Helper()
	versions := map[string]string{}
	for _, v := range resp.Versions {
		versions[v.ID] = v.Version
	}
	out := map[string]mounted{}
	for _, f := range resp.Files {
		v, ok := versions[f.Path]
		if !ok || v == "" {
			t.Errorf("file %s has no object version", f.Path)
		}
		out[f.Path] = mounted{contents: string(f.Contents), mode: uint32(f.Mode), version: v}
	}
	return out
}

func wantKind(t *testing.T, err error, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("error = %v, want kind %v", err, kind)
	}
}

func objects(lines ...string) map[string]string {
	return map[string]string{"objects": strings.Join(lines, "\n")}
}
