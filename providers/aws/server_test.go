package aws_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/sscsi/secrets-store/providers/aws"
	"github.com/sscsi/secrets-store/providers/aws/auth"
	"github.com/sscsi/secrets-store/providers/plugin"
	"github.com/sscsi/secrets-store/providers/plugintest"
	"github.com/sscsi/secrets-store/test/faultproxy"
)

// grpcClient serves e.backend on a unix socket in a temp dir.
func (e *env) grpcClient(writeToTarget bool) v1alpha1.CSIDriverProviderClient {
	e.t.Helper()
	return plugintest.Serve(e.t, plugin.Config{Name: "aws", Version: "test", Backend: e.backend, WriteToTarget: writeToTarget})
}

func wireRequest(t *testing.T, req *plugin.Request, target string) *v1alpha1.MountRequest {
	t.Helper()
	attrs := map[string]string{}
	for k, v := range req.Attributes {
		attrs[k] = v
	}
	tj, _ := json.Marshal(req.Tokens)
	attrs[plugin.AttrTokens] = string(tj)
	aj, _ := json.Marshal(attrs)
	return &v1alpha1.MountRequest{Attributes: string(aj), Secrets: "null", TargetPath: target, Permission: "420"}
}

func TestGRPCThrottledIsResourceExhausted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{maxAttempts: 2})
	n := e.name("hot")
	e.putSecret(region, n, sdkaws.String("v"), nil)
	e.proxy.Inject(faultproxy.Rule{API: "secretsmanager.BatchGetSecretValue", Status: 400, Code: "ThrottlingException"})
	c := e.grpcClient(false)
	resp, err := c.Mount(t.Context(), wireRequest(t, request("p", "app", objects("- {objectName: "+n+", objectType: secretsmanager}")), t.TempDir()))
	if status.Code(err) != codes.ResourceExhausted || resp != nil {
		t.Fatalf("Mount = %v, %v; want ResourceExhausted and no response", resp, err)
	}
}

func TestGRPCLegacyWriteToTarget(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	n := e.name("legacy")
	e.putSecret(region, n, sdkaws.String("on-disk"), nil)
	c := e.grpcClient(true)
	target := t.TempDir()
	resp, err := c.Mount(t.Context(), wireRequest(t, request("p", "app", objects("- {objectName: "+n+", objectType: secretsmanager, objectAlias: s}")), target))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetFiles()) != 0 || len(resp.GetObjectVersion()) != 1 {
		t.Errorf("legacy mode returned %d files and %d versions; want none and 1", len(resp.GetFiles()), len(resp.GetObjectVersion()))
	}
	if b, err := os.ReadFile(filepath.Join(target, "s")); err != nil || string(b) != "on-disk" {
		t.Errorf("file in target = %q, %v", b, err)
	}
}

func TestPodIdentity(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	var lastAuth atomic.Value
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		lastAuth.Store(r.Header.Get("Authorization"))
		if r.Header.Get("Authorization") == "" {
			http.Error(w, "no token", http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"AccessKeyId": "ASIAPODIDENTITY", "SecretAccessKey": "secret", "Token": "session",
			"AccountId": "123456789012", "Expiration": time.Now().Add(6 * time.Hour).UTC().Format(time.RFC3339),
		})
	}))
	t.Cleanup(agent.Close)
	e := newEnv(t, envOptions{podIdentityEndpoint: agent.URL + "/v1/credentials"})
	n := e.name("pi")
	e.putSecret(region, n, sdkaws.String("via-pod-identity"), nil)
	params := objects("- {objectName: " + n + ", objectType: secretsmanager}")
	params["usePodIdentity"] = "true"
	// A service account without an IRSA annotation: Pod Identity needs none.
	for _, pod := range []string{"a", "b"} {
		req := request(pod, "plain", params)
		resp, err := e.backend.Mount(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		if got := files(t, resp)[n].contents; got != "via-pod-identity" {
			t.Errorf("got %q", got)
		}
		if lastAuth.Load() != req.Tokens[auth.AudiencePodIdentity].Token && pod == "a" {
			t.Errorf("agent got Authorization %q, want the pod's token", lastAuth.Load())
		}
	}
	if calls.Load() != 1 {
		t.Errorf("agent calls = %d, want 1 (credentials cached per service account)", calls.Load())
	}
	if e.proxy.Counts()["sts.AssumeRoleWithWebIdentity"] != 0 {
		t.Errorf("STS called with Pod Identity: %v", e.proxy.Counts())
	}

	t.Run("agent refuses", func(t *testing.T) {
		refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "no association", http.StatusForbidden)
		}))
		t.Cleanup(refusing.Close)
		e := newEnv(t, envOptions{podIdentityEndpoint: refusing.URL})
		_, err := e.mount("c", "plain", params)
		wantKind(t, err, plugin.ErrUnauthenticated)
	})
}

// TestEndpointsFromEnvironment: with no --endpoint-url, the standard
// AWS_ENDPOINT_URL_<SERVICE> variables route every call, STS included.
// Not parallel: it changes the process environment.
func TestEndpointsFromEnvironment(t *testing.T) {
	e := newEnv(t, envOptions{})
	n := e.name("env")
	e.putSecret(region, n, sdkaws.String("routed"), nil)
	t.Setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1") // must lose to the per-service ones
	t.Setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", e.proxy.URL)
	t.Setenv("AWS_ENDPOINT_URL_STS", e.proxy.URL)
	cfg, err := aws.NewAWSConfig(t.Context(), aws.AWSOptions{MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	b, err := aws.NewBackend(aws.BackendConfig{AWS: cfg, Kube: e.kube})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := b.Mount(t.Context(), request("p", "app", objects("- {objectName: "+n+", objectType: secretsmanager}")))
	if err != nil {
		t.Fatal(err)
	}
	if files(t, resp)[n].contents != "routed" {
		t.Errorf("got %+v", files(t, resp))
	}
	if c := e.proxy.Counts(); c["sts.AssumeRoleWithWebIdentity"] != 1 || c["secretsmanager.BatchGetSecretValue"] != 1 {
		t.Errorf("proxy saw %v", c)
	}
}

func TestRegionFromNodeLabel(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	n := e.name("node-region")
	e.putSecret(failoverRegion, n, sdkaws.String("west"), nil)
	if _, err := e.kube.CoreV1().Nodes().Create(t.Context(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1", Labels: map[string]string{aws.RegionLabel: failoverRegion}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := aws.NewAWSConfig(t.Context(), aws.AWSOptions{EndpointURL: e.proxy.URL})
	if err != nil {
		t.Fatal(err)
	}
	b, err := aws.NewBackend(aws.BackendConfig{AWS: cfg, Kube: e.kube, NodeName: "node-1"})
	if err != nil {
		t.Fatal(err)
	}
	req := request("p", "app", objects("- {objectName: "+n+", objectType: secretsmanager}"))
	delete(req.Attributes, "region")
	resp, err := b.Mount(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := files(t, resp)[n].contents; got != "west" {
		t.Errorf("got %q, want the value from the node's region", got)
	}
}

// TestIdentityFailsClosed: a request that does not name the pod's
// namespace and service account is refused on both paths, even when
// another pod of the service account the token names has warmed the
// credential and value caches.
func TestIdentityFailsClosed(t *testing.T) {
	t.Parallel()
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"AccessKeyId": "ASIAPODIDENTITY", "SecretAccessKey": "secret", "Token": "session",
			"AccountId": "123456789012", "Expiration": time.Now().Add(6 * time.Hour).UTC().Format(time.RFC3339),
		})
	}))
	t.Cleanup(agent.Close)
	e := newEnv(t, envOptions{podIdentityEndpoint: agent.URL + "/v1/credentials"})
	n := e.name("closed")
	e.putSecret(region, n, sdkaws.String("only-for-app"), nil)
	for _, podIdentity := range []bool{false, true} {
		params := objects("- {objectName: " + n + ", objectType: secretsmanager}")
		if podIdentity {
			params["usePodIdentity"] = "true"
		}
		// A pod of default/app warms every cache.
		if got := e.mustMount("warm", "app", params)[n].contents; got != "only-for-app" {
			t.Fatalf("warm-up mount got %q", got)
		}
		for name, strip := range map[string]func(*plugin.Request){
			"no service account": func(r *plugin.Request) { r.Pod.ServiceAccount = "" },
			"no namespace":       func(r *plugin.Request) { r.Pod.Namespace = "" },
			"neither":            func(r *plugin.Request) { r.Pod.Namespace, r.Pod.ServiceAccount = "", "" },
		} {
			req := request("intruder", "app", params) // its token names default/app
			strip(req)
			resp, err := e.backend.Mount(t.Context(), req)
			if !errors.Is(err, plugin.ErrUnauthenticated) || resp != nil {
				t.Errorf("podIdentity=%v, %s: Mount = %v, %v; want ErrUnauthenticated", podIdentity, name, resp, err)
			}
		}
		// Over the wire the code is Unauthenticated.
		req := request("intruder", "app", params)
		req.Pod.ServiceAccount = ""
		delete(req.Attributes, plugin.AttrServiceAccount)
		_, err := e.grpcClient(false).Mount(t.Context(), wireRequest(t, req, t.TempDir()))
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("podIdentity=%v over gRPC: %v, want Unauthenticated", podIdentity, err)
		}
	}
}
