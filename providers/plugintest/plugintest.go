// Package plugintest is the conformance suite every provider backend
// passes: it serves the backend with providers/plugin on a real unix
// socket and checks the provider API contract the driver relies on.
package plugintest

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/sscsi/secrets-store/internal/atomicfs"
	"github.com/sscsi/secrets-store/providers/plugin"
)

// Provider describes the backend under test and a mount that works.
type Provider struct {
	// Name is the provider name (the socket's basename).
	Name string
	// Backend is the backend under test.
	Backend plugin.Backend
	// Attributes are the SecretProviderClass parameters and pod info of a
	// mount that succeeds (without the token key; see Tokens).
	Attributes map[string]string
	// Tokens are the service account tokens of that mount, by audience.
	// They must never appear in logs.
	Tokens map[string]plugin.Token
	// SecretValue is contained in a file of that mount; it must never
	// appear in logs.
	SecretValue string
	// NotFoundAttributes, if set, are the attributes of a mount that must
	// fail with codes.NotFound because an object does not exist.
	NotFoundAttributes map[string]string
}

// Run runs the conformance suite.
func Run(t *testing.T, p Provider) {
	t.Helper()
	if p.Name == "" || p.Backend == nil || p.Attributes == nil || p.SecretValue == "" {
		t.Fatal("plugintest: Provider needs Name, Backend, Attributes and SecretValue")
	}
	client := Serve(t, plugin.Config{Name: p.Name, Version: "conformance", Backend: p.Backend})

	t.Run("Version", func(t *testing.T) {
		v, err := client.Version(ctx(t), &v1alpha1.VersionRequest{Version: "v1alpha1"})
		if err != nil {
			t.Fatal(err)
		}
		if v.GetVersion() != "v1alpha1" || v.GetRuntimeName() != p.Name || v.GetRuntimeVersion() == "" {
			t.Errorf("Version = %+v, want version v1alpha1, runtime name %q and a runtime version", v, p.Name)
		}
	})

	t.Run("Mount", func(t *testing.T) {
		resp, err := client.Mount(ctx(t), mountRequest(t, p.Attributes, p.Tokens, "null", true))
		if err != nil {
			t.Fatal(err)
		}
		checkResponse(t, resp, p.SecretValue)
	})

	t.Run("TokensInSecrets", func(t *testing.T) {
		// Kubernetes >= 1.35 with serviceAccountTokenInSecrets: the token
		// key arrives in the secrets map.
		resp, err := client.Mount(ctx(t), mountRequest(t, p.Attributes, p.Tokens, "", false))
		if err != nil {
			t.Fatal(err)
		}
		checkResponse(t, resp, p.SecretValue)
	})

	t.Run("SecretsNullAndEmpty", func(t *testing.T) {
		for _, secrets := range []string{"null", "{}", ""} {
			if _, err := client.Mount(ctx(t), mountRequest(t, p.Attributes, p.Tokens, secrets, true)); err != nil {
				t.Errorf("secrets %q: %v", secrets, err)
			}
		}
	})

	t.Run("BadAttributes", func(t *testing.T) {
		for _, attrs := range []string{"{not json", `["a"]`, `{"a": 1}`} {
			_, err := client.Mount(ctx(t), &v1alpha1.MountRequest{Attributes: attrs, Secrets: "null", TargetPath: t.TempDir(), Permission: "420"})
			wantCode(t, err, codes.InvalidArgument, "InvalidParameters")
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		if p.NotFoundAttributes == nil {
			t.Skip("the provider has no not-found case")
		}
		_, err := client.Mount(ctx(t), mountRequest(t, p.NotFoundAttributes, p.Tokens, "null", true))
		wantCode(t, err, codes.NotFound, "NotFound")
	})

	t.Run("Redaction", func(t *testing.T) {
		logs := captureKlog(t)
		if _, err := client.Mount(ctx(t), mountRequest(t, p.Attributes, p.Tokens, "null", true)); err != nil {
			t.Fatal(err)
		}
		if p.NotFoundAttributes != nil {
			_, _ = client.Mount(ctx(t), mountRequest(t, p.NotFoundAttributes, p.Tokens, "null", true))
		}
		_, _ = client.Mount(ctx(t), mountRequest(t, p.Attributes, p.Tokens, `{"password":"`+p.SecretValue+`"}`, true))
		out := logs()
		if !strings.Contains(out, "provider call") {
			t.Fatalf("no request log captured at -v=10; the check would prove nothing:\n%s", out)
		}
		if strings.Contains(out, p.SecretValue) {
			t.Errorf("the secret value appears in the log output:\n%s", out)
		}
		for aud, tok := range p.Tokens {
			if strings.Contains(out, tok.Token) {
				t.Errorf("the token for %s appears in the log output", aud)
			}
		}
	})

	t.Run("ConcurrentMounts", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 32)
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := client.Mount(ctx(t), mountRequest(t, p.Attributes, p.Tokens, "null", true))
				if err != nil {
					errs <- err
					return
				}
				if len(resp.GetFiles()) == 0 || len(resp.GetObjectVersion()) == 0 {
					errs <- fmt.Errorf("empty response")
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// Serve serves cfg's backend with providers/plugin on a unix socket in a
// temporary directory, as a provider process does, and returns a client
// of that socket once it answers. The server stops in t.Cleanup.
func Serve(t *testing.T, cfg plugin.Config) v1alpha1.CSIDriverProviderClient {
	t.Helper()
	srv, err := plugin.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), cfg.Name+".sock")
	sctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, sock) }()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority("localhost"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	client := v1alpha1.NewCSIDriverProviderClient(conn)
	// Wait for the socket.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := client.Version(t.Context(), &v1alpha1.VersionRequest{Version: "v1alpha1"})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("provider did not come up on %s: %v", sock, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return client
}

// mountRequest builds a request the way the driver does: the tokens go
// into the attributes, or into the secrets map when inAttrs is false.
func mountRequest(t *testing.T, attrs map[string]string, tokens map[string]plugin.Token, secrets string, inAttrs bool) *v1alpha1.MountRequest {
	t.Helper()
	a := make(map[string]string, len(attrs)+1)
	for k, v := range attrs {
		a[k] = v
	}
	if len(tokens) > 0 {
		tj, err := json.Marshal(tokens)
		if err != nil {
			t.Fatal(err)
		}
		if inAttrs {
			a[plugin.AttrTokens] = string(tj)
		} else {
			sj, _ := json.Marshal(map[string]string{plugin.AttrTokens: string(tj)})
			secrets = string(sj)
		}
	}
	aj, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	return &v1alpha1.MountRequest{Attributes: string(aj), Secrets: secrets, TargetPath: t.TempDir(), Permission: "420"}
}

func checkResponse(t *testing.T, resp *v1alpha1.MountResponse, secret string) {
	t.Helper()
	if resp.GetError().GetCode() != "" {
		t.Errorf("successful mount carries error.code %q", resp.GetError().GetCode())
	}
	if len(resp.GetFiles()) == 0 {
		t.Fatal("no files returned")
	}
	versions := map[string]string{}
	for _, v := range resp.GetObjectVersion() {
		if v.GetId() == "" || v.GetVersion() == "" {
			t.Errorf("object version %+v has an empty id or version", v)
		}
		versions[v.GetId()] = v.GetVersion()
	}
	found := false
	for _, f := range resp.GetFiles() {
		if err := atomicfs.ValidatePath(f.GetPath()); err != nil {
			t.Errorf("file path: %v", err)
		}
		if f.GetMode() < 0 || f.GetMode() > 0o777 {
			t.Errorf("file %s has mode %#o", f.GetPath(), f.GetMode())
		}
		if _, ok := versions[f.GetPath()]; !ok {
			t.Errorf("file %s has no object version (versions: %v)", f.GetPath(), versions)
		}
		if bytes.Contains(f.GetContents(), []byte(secret)) {
			found = true
		}
	}
	if !found {
		t.Errorf("no file contains the provider's SecretValue")
	}
}

func wantCode(t *testing.T, err error, code codes.Code, errorCode string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || err == nil {
		t.Fatalf("error %v is not a gRPC status", err)
	}
	if st.Code() != code {
		t.Fatalf("code = %s (%s), want %s", st.Code(), st.Message(), code)
	}
	for _, d := range st.Details() {
		if mr, ok := d.(*v1alpha1.MountResponse); ok {
			if mr.GetError().GetCode() != errorCode {
				t.Errorf("error.code in status details = %q, want %q", mr.GetError().GetCode(), errorCode)
			}
			return
		}
	}
	t.Errorf("status has no MountResponse detail with error.code")
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// captureKlog sends klog output at -v=10 to a buffer until the test ends
// and returns a function that flushes and reads it. klog is process-wide,
// so callers must not run this in parallel with other captures.
func captureKlog(t *testing.T) func() string {
	t.Helper()
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	oldV := fs.Lookup("v").Value.String()
	buf := &syncBuffer{}
	for k, v := range map[string]string{"v": "10", "logtostderr": "false", "alsologtostderr": "false", "stderrthreshold": "FATAL"} {
		if err := fs.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	klog.SetOutput(buf)
	t.Cleanup(func() {
		klog.Flush()
		_ = fs.Set("v", oldV)
		_ = fs.Set("logtostderr", "true")
		klog.SetOutput(nil)
	})
	return func() string {
		klog.Flush()
		return buf.String()
	}
}
