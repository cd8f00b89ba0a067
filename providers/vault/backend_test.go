package vault_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/sscsi/secrets-store/providers/plugin"
	"github.com/sscsi/secrets-store/providers/vault"
	"github.com/sscsi/secrets-store/providers/vault/params"
)

// jwt builds an unsigned service-account token for ns/sa (the fake Vault
// reads only its subject).
func jwt(ns, sa, pod string) string {
	enc := base64.RawURLEncoding
	h := enc.EncodeToString([]byte(`{"alg":"RS256","kid":"test"}`))
	c, _ := json.Marshal(map[string]any{
		"sub": "system:serviceaccount:" + ns + ":" + sa, "aud": []string{"vault"},
		"exp": time.Now().Add(7 * 24 * time.Hour).Unix(), "kubernetes.io": map[string]any{"pod": map[string]string{"name": pod}},
	})
	return h + "." + enc.EncodeToString(c) + "." + enc.EncodeToString([]byte("sig-"+pod))
}

type env struct {
	t     *testing.T
	clock *clocktesting.FakeClock
	vault *fakeVault
	b     *vault.Backend
}

func newEnv(t *testing.T, cfg vault.BackendConfig) *env {
	t.Helper()
	clk := clocktesting.NewFakeClock(time.Now())
	fv := newFakeVault(t, clk)
	cfg.Clock = clk
	cfg.Defaults.Connection.Address = fv.srv.URL
	b, err := vault.NewBackend(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, clock: clk, vault: fv, b: b}
}

// request builds a mount for pod (service account sa in namespace ns).
func request(ns, pod, sa string, attrs map[string]string) *plugin.Request {
	a := map[string]string{
		plugin.AttrPodName: pod, plugin.AttrPodNamespace: ns, plugin.AttrPodUID: "uid-" + ns + "-" + pod, plugin.AttrServiceAccount: sa,
	}
	for k, v := range attrs {
		a[k] = v
	}
	return &plugin.Request{
		Attributes: a, Secrets: map[string]string{}, Permission: 0o644, CurrentVersions: map[string]string{},
		Pod:    plugin.Pod{Name: pod, Namespace: ns, UID: "uid-" + ns + "-" + pod, ServiceAccount: sa},
		Tokens: map[string]plugin.Token{"vault": {Token: jwt(ns, sa, pod), ExpirationTimestamp: time.Now().Add(time.Hour)}},
	}
}

func spc(role string, objects ...string) map[string]string {
	return map[string]string{params.ParamRoleName: role, params.ParamObjects: strings.Join(objects, "\n")}
}

func (e *env) mount(req *plugin.Request) map[string]string {
	e.t.Helper()
	resp, err := e.b.Mount(e.t.Context(), req)
	if err != nil {
		e.t.Fatalf("mount %s: %v", req.Pod.Name, err)
	}
	return files(e.t, resp)
}

func files(t *testing.T, resp *plugin.Response) map[string]string {
	t.Helper()
	versions := map[string]string{}
	for _, v := range resp.Versions {
		versions[v.ID] = v.Version
	}
	out := map[string]string{}
	for _, f := range resp.Files {
		if versions[f.Path] == "" {
			t.Errorf("file %s has no version", f.Path)
		}
		out[f.Path] = string(f.Contents)
	}
	return out
}

func versionsOf(resp *plugin.Response) map[string]string {
	out := map[string]string{}
	for _, v := range resp.Versions {
		out[v.ID] = v.Version
	}
	return out
}

func TestKVAndCompatibleLayout(t *testing.T) {
	e := newEnv(t, vault.BackendConfig{})
	e.vault.role("app", "ns", "app", "secret/", "kv/")
	e.vault.putKV2("app/db", map[string]any{"password": "s3cr3t-v1", "port": 5432, "b64": base64.StdEncoding.EncodeToString([]byte{0, 1, 2}), "hex": "cafe"})
	e.vault.putKV2("app/db", map[string]any{"password": "s3cr3t-v2", "port": 5432, "b64": base64.StdEncoding.EncodeToString([]byte{0, 1, 2}), "hex": "cafe"})
	e.vault.putKV1("legacy", map[string]any{"token": "v1-value"})
	req := request("ns", "p1", "app", spc("app",
		"- {objectName: latest, secretPath: secret/data/app/db, secretKey: password}",
		"- {objectName: pinned, secretPath: 'secret/data/app/db?version=1', secretKey: password}",
		"- {objectName: port, secretPath: secret/data/app/db, secretKey: port}",
		"- {objectName: raw, secretPath: secret/data/app/db, secretKey: b64, encoding: base64}",
		"- {objectName: hexed, secretPath: secret/data/app/db, secretKey: hex, encoding: hex, filePermission: 0600}",
		"- {objectName: v1, secretPath: /kv/legacy, secretKey: token}",
		"- {objectName: whole, secretPath: kv/legacy}",
		"- {objectName: all, secretPath: secret/data/app/db, allKeys: true}",
	))
	resp, err := e.b.Mount(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	got := files(t, resp)
	want := map[string]string{
		"latest": "s3cr3t-v2", "pinned": "s3cr3t-v1", "port": "5432", "raw": "\x00\x01\x02", "hexed": "\xca\xfe", "v1": "v1-value",
		"all/password": "s3cr3t-v2", "all/port": "5432", "all/hex": "cafe",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("file %s = %q, want %q", k, got[k], v)
		}
	}
	var whole map[string]any
	if err := json.Unmarshal([]byte(got["whole"]), &whole); err != nil {
		t.Fatalf("whole response is not JSON: %v", err)
	}
	for _, k := range []string{"request_id", "lease_id", "lease_duration", "renewable", "data", "warnings"} {
		if _, ok := whole[k]; !ok {
			t.Errorf("whole response lacks %q: %s", k, got["whole"])
		}
	}
	vs := versionsOf(resp)
	if vs["latest"] != "2" || vs["pinned"] != "1" {
		t.Errorf("KV v2 versions = %v, want latest 2 and pinned 1", vs)
	}
	if !strings.HasPrefix(vs["v1"], "hmac-") {
		t.Errorf("KV v1 version %q is not a keyed hash", vs["v1"])
	}
	for _, f := range resp.Files {
		if f.Path == "hexed" && f.Mode != 0o600 {
			t.Errorf("hexed mode = %o", f.Mode)
		}
	}
	// One read per distinct request: latest, pinned, kv1.
	if n := e.vault.count("GET secret/data/app/db"); n != 2 {
		t.Errorf("KV v2 reads = %d, want 2 (latest and pinned, each once)", n)
	}
}

func TestTokenReusedPerIdentityAndNeverShared(t *testing.T) {
	e := newEnv(t, vault.BackendConfig{CacheTTL: time.Minute})
	e.vault.role("a", "ns", "sa-a", "secret/data/a")
	e.vault.role("b", "ns", "sa-b", "secret/data/b")
	e.vault.putKV2("a", map[string]any{"v": "value-a"})
	e.vault.putKV2("b", map[string]any{"v": "value-b"})
	for i := range 5 {
		e.mount(request("ns", "a"+string(rune('0'+i)), "sa-a", spc("a", "- {objectName: v, secretPath: secret/data/a, secretKey: v}")))
	}
	if n := e.vault.count("login"); n != 1 {
		t.Errorf("logins for 5 pods of one identity = %d, want 1", n)
	}
	if n := e.vault.count("GET secret/data/a"); n != 1 {
		t.Errorf("reads = %d, want 1 (shared within the cache TTL)", n)
	}
	// Another service account reading a's path with b's role is denied by
	// Vault even though a's value is cached.
	_, err := e.b.Mount(t.Context(), request("ns", "b0", "sa-b", spc("b", "- {objectName: v, secretPath: secret/data/a, secretKey: v}")))
	if !errors.Is(err, plugin.ErrPermissionDenied) {
		t.Fatalf("b reading a's path: %v, want permission denied", err)
	}
	// b logging in with role a (bound to sa-a) fails: no identity.
	_, err = e.b.Mount(t.Context(), request("ns", "b1", "sa-b", spc("a", "- {objectName: v, secretPath: secret/data/a, secretKey: v}")))
	if !errors.Is(err, plugin.ErrUnauthenticated) {
		t.Fatalf("b with role a: %v, want unauthenticated", err)
	}
	if got := e.mount(request("ns", "b2", "sa-b", spc("b", "- {objectName: v, secretPath: secret/data/b, secretKey: v}")))["v"]; got != "value-b" {
		t.Errorf("b got %q", got)
	}
	// The same service account and role in two Vault namespaces: a login
	// and a token in each (the fake, like Vault Enterprise, knows a token
	// only in the namespace it logged in to; Vault Community Edition, used
	// by the integration tests, has no namespaces).
	before := e.vault.count("login")
	for _, vns := range []string{"team-a", "team-b", "team-a", "team-b"} {
		attrs := spc("a", "- {objectName: v, secretPath: secret/data/a, secretKey: v}")
		attrs[params.ParamVaultNamespace] = vns
		if got := e.mount(request("ns", "a9", "sa-a", attrs))["v"]; got != "value-a" {
			t.Errorf("Vault namespace %s: got %q", vns, got)
		}
	}
	if n := e.vault.count("login") - before; n != 2 {
		t.Errorf("logins for one identity in two Vault namespaces = %d, want 2", n)
	}
	if n := e.vault.count("denied"); n != 0 {
		t.Errorf("%d requests carried a token of another Vault namespace", n)
	}
}

func TestFailsClosedWithoutIdentity(t *testing.T) {
	e := newEnv(t, vault.BackendConfig{})
	e.vault.role("app", "ns", "app", "secret/")
	e.vault.putKV2("x", map[string]any{"v": "x"})
	attrs := spc("app", "- {objectName: v, secretPath: secret/data/x, secretKey: v}")
	cases := map[string]func(r *plugin.Request){
		"no namespace":       func(r *plugin.Request) { r.Pod.Namespace = "" },
		"no service account": func(r *plugin.Request) { r.Pod.ServiceAccount = "" },
		"no token":           func(r *plugin.Request) { r.Tokens = nil },
		"token of another service account": func(r *plugin.Request) {
			r.Tokens = map[string]plugin.Token{"vault": {Token: jwt("ns", "other", "p")}}
		},
		"not a JWT": func(r *plugin.Request) { r.Tokens = map[string]plugin.Token{"vault": {Token: "opaque"}} },
	}
	// First a good mount, so that a token for the identity is cached.
	e.mount(request("ns", "p", "app", attrs))
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			r := request("ns", "p", "app", attrs)
			mutate(r)
			_, err := e.b.Mount(t.Context(), r)
			if !errors.Is(err, plugin.ErrUnauthenticated) {
				t.Fatalf("err = %v, want unauthenticated", err)
			}
		})
	}
}

func TestReloginOnceOn403(t *testing.T) {
	e := newEnv(t, vault.BackendConfig{CacheTTL: 0})
	e.vault.role("app", "ns", "app", "secret/")
	e.vault.putKV2("x", map[string]any{"v": "x"})
	attrs := spc("app", "- {objectName: v, secretPath: secret/data/x, secretKey: v}")
	e.mount(request("ns", "p0", "app", attrs))
	e.clock.Step(time.Minute)
	e.vault.revokeTokens() // an operator revoked the token
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.b.Mount(context.Background(), request("ns", "p"+string(rune('a'+i)), "app", attrs))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := e.vault.count("login"); n != 2 {
		t.Errorf("logins = %d, want 2 (first + exactly one re-login for 20 mounts that saw the revoked token)", n)
	}
	// A real denial with a fresh token does not log in again and again.
	e.vault.role("app", "ns", "app", "secret/data/other")
	before := e.vault.count("login")
	for i := range 3 {
		_, err := e.b.Mount(t.Context(), request("ns", "q"+string(rune('0'+i)), "app", attrs))
		if !errors.Is(err, plugin.ErrPermissionDenied) {
			t.Fatalf("err = %v, want permission denied", err)
		}
		if strings.Contains(err.Error(), "hvs.") {
			t.Fatalf("error quotes a token: %v", err)
		}
	}
	if n := e.vault.count("login") - before; n > 1 {
		t.Errorf("logins for a real denial = %d, want at most 1", n)
	}
}

func TestTokenRenewedThenReplaced(t *testing.T) {
	e := newEnv(t, vault.BackendConfig{CacheTTL: 0})
	e.vault.role("app", "ns", "app", "secret/")
	e.vault.putKV2("x", map[string]any{"v": "x"})
	attrs := spc("app", "- {objectName: v, secretPath: secret/data/x, secretKey: v}")
	e.mount(request("ns", "p", "app", attrs))
	e.clock.Step(50 * time.Minute) // past 2/3 of the 1h token TTL
	e.mount(request("ns", "p", "app", attrs))
	if e.vault.count("renew-token") != 1 || e.vault.count("login") != 1 {
		t.Errorf("renewals = %d, logins = %d; want 1 and 1", e.vault.count("renew-token"), e.vault.count("login"))
	}
	e.clock.Step(2 * time.Hour) // expired: log in again
	e.mount(request("ns", "p", "app", attrs))
	if e.vault.count("login") != 2 {
		t.Errorf("logins after expiry = %d, want 2", e.vault.count("login"))
	}
}

func TestDynamicSecretsKeptPerPodAndRenewed(t *testing.T) {
	e := newEnv(t, vault.BackendConfig{CacheTTL: time.Minute})
	e.vault.role("app", "ns", "app", "database/", "pki/")
	e.vault.credTTL, e.vault.credMax = time.Hour, 3*time.Hour
	attrs := spc("app",
		"- {objectName: user, secretPath: database/creds/app, secretKey: username}",
		"- {objectName: pass, secretPath: database/creds/app, secretKey: password}",
		"- {objectName: tls.crt, secretPath: pki/issue/web, method: PUT, secretArgs: {common_name: a.example}, secretKey: certificate}",
		"- {objectName: tls.key, secretPath: pki/issue/web, method: PUT, secretArgs: {common_name: a.example}, secretKey: private_key}",
	)
	first := e.mount(request("ns", "p1", "app", attrs))
	if !strings.HasSuffix(first["user"], strings.TrimPrefix(first["pass"], "pw-")) {
		t.Errorf("username %q and password %q come from different credentials", first["user"], first["pass"])
	}
	if strings.TrimPrefix(strings.Split(first["tls.crt"], "\n")[1], "cert-") != strings.TrimPrefix(strings.Split(first["tls.key"], "\n")[1], "key-") {
		t.Errorf("certificate and key from different issuances:\n%s\n%s", first["tls.crt"], first["tls.key"])
	}
	other := e.mount(request("ns", "p2", "app", attrs))
	if other["user"] == first["user"] || other["tls.crt"] == first["tls.crt"] {
		t.Error("a second pod got the first pod's dynamic secret")
	}
	// Republish every 2 minutes for 2.5 hours: the same credential,
	// renewed, until it has lived 0.8 of its 3h max TTL.
	start := e.clock.Now()
	changes := 0
	user := first["user"]
	for i := 0; i < 75; i++ {
		e.clock.Step(2 * time.Minute)
		got := e.mount(request("ns", "p1", "app", attrs))
		if got["user"] != user {
			changes++
			if age := e.clock.Since(start); age < 144*time.Minute {
				t.Fatalf("credential re-issued after %s, before 0.8 of its 3h max TTL", age)
			}
			user = got["user"]
		}
	}
	if changes != 1 {
		t.Errorf("credential changed %d times in 2.5h, want exactly 1 (at 0.8 of max TTL)", changes)
	}
	if n := e.vault.count("GET database/creds/app"); n != 3 {
		t.Errorf("credentials issued = %d; want 3 (p1, p2, and p1 again at 0.8 of the max TTL)", n)
	}
	if e.vault.count("renew-lease") == 0 {
		t.Error("no lease renewed")
	}
}

func TestDynamicSecretReissuedWhenRevoked(t *testing.T) {
	e := newEnv(t, vault.BackendConfig{})
	e.vault.role("app", "ns", "app", "database/")
	e.vault.tokenTTL = 24 * time.Hour
	attrs := spc("app", "- {objectName: user, secretPath: database/creds/app, secretKey: username}")
	first := e.mount(request("ns", "p1", "app", attrs))["user"]
	e.vault.revokeAllLeases()
	e.clock.Step(40 * time.Minute) // due for renewal; the lease is gone
	if got := e.mount(request("ns", "p1", "app", attrs))["user"]; got == first {
		t.Error("revoked credential served again")
	}
	// Vault down while the lease is still valid: the pod keeps its value.
	cur := e.mount(request("ns", "p1", "app", attrs))["user"]
	e.clock.Step(40 * time.Minute)
	e.vault.mu.Lock()
	e.vault.fail = 1
	e.vault.mu.Unlock()
	if got := e.mount(request("ns", "p1", "app", attrs))["user"]; got != cur {
		t.Errorf("Vault down during renewal: got %q, want the still-valid %q", got, cur)
	}
}

func TestErrorsNameObjectAndFieldNeverValue(t *testing.T) {
	e := newEnv(t, vault.BackendConfig{})
	e.vault.role("app", "ns", "app", "secret/")
	e.vault.putKV2("x", map[string]any{"v": "TOPSECRET", "b": "not base64 TOPSECRET"})
	cases := map[string]struct {
		objects string
		kind    error
		want    string
	}{
		"missing key":  {"- {objectName: o, secretPath: secret/data/x, secretKey: nope}", plugin.ErrNotFound, "secretKey"},
		"bad encoding": {"- {objectName: o, secretPath: secret/data/x, secretKey: b, encoding: base64}", plugin.ErrInvalidParameters, "encoding"},
		"not found":    {"- {objectName: o, secretPath: secret/data/none, secretKey: v}", plugin.ErrNotFound, "secret/data/none"},
		"bad method":   {"- {objectName: o, secretPath: secret/data/x, method: DELETE}", plugin.ErrInvalidParameters, "method"},
		"dup name":     {"- {objectName: o, secretPath: a}\n- {objectName: o, secretPath: b}", plugin.ErrInvalidParameters, "objectName"},
		"traversal":    {"- {objectName: o, secretPath: secret/../sys/raw}", plugin.ErrInvalidParameters, "secretPath"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := e.b.Mount(t.Context(), request("ns", "p", "app", spc("app", c.objects)))
			if !errors.Is(err, c.kind) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v; want kind %v naming %q", err, c.kind, c.want)
			}
			if strings.Contains(err.Error(), "TOPSECRET") {
				t.Fatalf("error quotes a value: %v", err)
			}
		})
	}
}

func TestSealedAndServerErrorsAreUnavailable(t *testing.T) {
	e := newEnv(t, vault.BackendConfig{})
	e.vault.role("app", "ns", "app", "secret/")
	e.vault.putKV2("x", map[string]any{"v": "x"})
	e.vault.mu.Lock()
	e.vault.sealed = true
	e.vault.mu.Unlock()
	_, err := e.b.Mount(t.Context(), request("ns", "p", "app", spc("app", "- {objectName: v, secretPath: secret/data/x, secretKey: v}")))
	if !errors.Is(err, plugin.ErrUnavailable) || !strings.Contains(err.Error(), "503") {
		t.Fatalf("sealed: %v", err)
	}
}

// TestKVWithExpirationKeyIsNotKeptPerPod: a KV secret with a numeric
// "expiration" key is a plain read: shared, and updates reach the pod.
func TestKVWithExpirationKeyIsNotKeptPerPod(t *testing.T) {
	e := newEnv(t, vault.BackendConfig{CacheTTL: 0})
	e.vault.role("app", "ns", "app", "kv/")
	e.vault.putKV1("x", map[string]any{"v": "one", "expiration": time.Now().Add(24 * time.Hour).Unix()})
	attrs := spc("app", "- {objectName: v, secretPath: kv/x, secretKey: v}")
	e.mount(request("ns", "p", "app", attrs))
	e.vault.putKV1("x", map[string]any{"v": "two", "expiration": time.Now().Add(24 * time.Hour).Unix()})
	if got := e.mount(request("ns", "p", "app", attrs))["v"]; got != "two" {
		t.Errorf("got %q after an update, want two", got)
	}
}

// TestVaultAddressAllowList: a SecretProviderClass whose vaultAddress
// names a Vault the operator did not allow is refused InvalidArgument,
// naming the field, before anything is sent there; with AnyAddress
// (vault-csi-provider's behaviour) that host receives the pod's token.
func TestVaultAddressAllowList(t *testing.T) {
	var mu sync.Mutex
	var got []string
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.URL.Path+" "+string(body))
		mu.Unlock()
		http.Error(w, "no", http.StatusForbidden)
	}))
	t.Cleanup(attacker.Close)
	e := newEnv(t, vault.BackendConfig{})
	e.vault.role("app", "ns", "app", "secret/")
	e.vault.putKV2("x", map[string]any{"v": "x"})
	attrs := spc("app", "- {objectName: v, secretPath: secret/data/x, secretKey: v}")
	req := func(addr string) *plugin.Request {
		r := request("ns", "p", "app", attrs)
		r.Attributes[params.ParamVaultAddress] = addr
		return r
	}
	// The provider's own address, spelled differently, is allowed.
	if f := e.mount(req(strings.ToUpper(e.vault.srv.URL[:4]) + e.vault.srv.URL[4:] + "/")); f["v"] != "x" {
		t.Errorf("own address: %v", f)
	}
	r := req(attacker.URL)
	tok := r.Tokens["vault"].Token
	_, err := e.b.Mount(t.Context(), r)
	if code, _ := plugin.Classify(err); code != codes.InvalidArgument || !strings.Contains(err.Error(), params.ParamVaultAddress) {
		t.Fatalf("err = %v (%v), want InvalidArgument naming %s", err, code, params.ParamVaultAddress)
	}
	if strings.Contains(err.Error(), tok) || strings.Contains(err.Error(), attacker.URL) {
		t.Errorf("error quotes the token or the address: %v", err)
	}
	mu.Lock()
	if len(got) != 0 {
		t.Errorf("the refused address received %d requests", len(got))
	}
	mu.Unlock()

	// Allowed by the operator: the mount goes there.
	allow := newEnv(t, vault.BackendConfig{Defaults: params.Defaults{AllowedAddresses: []string{attacker.URL}}})
	if _, err := allow.b.Mount(t.Context(), req(attacker.URL)); err == nil {
		t.Fatal("the attacker's 403 did not fail the mount")
	}
	// AnyAddress: the hole this control closes (the token reaches the host).
	anyAddr := newEnv(t, vault.BackendConfig{Defaults: params.Defaults{AnyAddress: true}})
	r = req(attacker.URL)
	_, _ = anyAddr.b.Mount(t.Context(), r)
	mu.Lock()
	defer mu.Unlock()
	if len(got) == 0 || !strings.Contains(strings.Join(got, "\n"), r.Tokens["vault"].Token) {
		t.Errorf("with AnyAddress the other host did not receive the login: %q", got)
	}
}

func TestConfigAllowedAddresses(t *testing.T) {
	cfg := vault.Config{Socket: "/x.sock", Defaults: params.Defaults{AllowedAddresses: []string{"https://vault-dr:8200"}}}
	if err := cfg.Validate(); err != nil {
		t.Errorf("valid: %v", err)
	}
	cfg.Defaults.AllowedAddresses = append(cfg.Defaults.AllowedAddresses, "https://vault/path")
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), params.AllowedAddressesFlag) {
		t.Errorf("an address with a path: err = %v", err)
	}
}

// syncRequest builds a mount the way our SecretSync controller sends it
// (no pod; the SecretSync's name and UID), decoded by the providers' own
// decoder.
func syncRequest(t *testing.T, ns, name, uid, sa string, attrs map[string]string) *plugin.Request {
	t.Helper()
	a := map[string]string{plugin.AttrPodNamespace: ns, plugin.AttrServiceAccount: sa, plugin.AttrSecretSyncName: name, plugin.AttrSecretSyncUID: uid}
	maps.Copy(a, attrs)
	toks, _ := json.Marshal(map[string]plugin.Token{"vault": {Token: jwt(ns, sa, ""), ExpirationTimestamp: time.Now().Add(time.Hour)}})
	a[plugin.AttrTokens] = string(toks)
	ab, _ := json.Marshal(a)
	r, err := plugin.DecodeRequest(&v1alpha1.MountRequest{Attributes: string(ab), Secrets: "null", Permission: "420"})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestLeasedValueKeptPerSecretSync: a SecretSync's database credential
// and PKI certificate are issued once and kept across the controller's
// refreshes (renewed at RenewFraction of the TTL, issued anew at
// ReissueFraction of the max TTL), never shared with another SecretSync,
// a pod or a re-created SecretSync of the same name; once a SecretSync
// stops refreshing (deleted), its lease is never renewed again.
func TestLeasedValueKeptPerSecretSync(t *testing.T) {
	e := newEnv(t, vault.BackendConfig{CacheTTL: time.Minute})
	e.vault.role("app", "ns", "app", "database/", "pki/", "secret/")
	e.vault.credTTL, e.vault.credMax = time.Hour, 3*time.Hour
	e.vault.tokenTTL = 24 * time.Hour
	e.vault.putKV2("x", map[string]any{"v": "kv"})
	attrs := spc("app",
		"- {objectName: user, secretPath: database/creds/app, secretKey: username}",
		"- {objectName: pass, secretPath: database/creds/app, secretKey: password}",
		"- {objectName: tls.crt, secretPath: pki/issue/web, method: PUT, secretArgs: {common_name: a.example}, secretKey: certificate}",
		"- {objectName: v, secretPath: secret/data/x, secretKey: v}",
	)
	db := func(uid string) map[string]string { return e.mount(syncRequest(t, "ns", "db", uid, "app", attrs)) }
	first := db("uid-1")
	if first["v"] != "kv" || !strings.HasSuffix(first["user"], strings.TrimPrefix(first["pass"], "pw-")) {
		t.Fatalf("first refresh: %v", first)
	}
	other := e.mount(syncRequest(t, "ns", "db-2", "uid-9", "app", attrs))
	pod := e.mount(request("ns", "p1", "app", attrs))
	recreated := db("uid-2")
	for name, got := range map[string]map[string]string{"another SecretSync": other, "a pod of the same service account": pod, "the SecretSync re-created (same name, new UID)": recreated} {
		if got["user"] == first["user"] || got["tls.crt"] == first["tls.crt"] {
			t.Errorf("%s got the SecretSync's leased value", name)
		}
	}
	// A pod's UID wins over SecretSync attributes a class could carry
	// into the pod's mount: the pod keeps its own credential.
	forged := request("ns", "p1", "app", attrs)
	forged.SecretSync = plugin.SecretSync{Name: "db", UID: "uid-1"}
	if got := e.mount(forged); got["user"] != pod["user"] {
		t.Errorf("pod mount with SecretSync attributes: user %q, want the pod's own %q", got["user"], pod["user"])
	}

	// The controller refreshes uid-1 every 10 minutes for 2.5 hours: the
	// same credential and certificate, renewed, until 0.8 of the 3h max
	// TTL. uid-2 was deleted after its first refresh: never renewed.
	issued := e.vault.count("GET database/creds/app")
	start := e.clock.Now()
	user, cert, changes, polls := first["user"], first["tls.crt"], 0, 0
	for e.clock.Since(start) < 150*time.Minute {
		e.clock.Step(10 * time.Minute)
		polls++
		got := db("uid-1")
		if got["tls.crt"] != cert {
			t.Errorf("poll %d: certificate re-issued (it lives 10h)", polls)
		}
		if got["user"] != user {
			changes++
			if age := e.clock.Since(start); age < 144*time.Minute {
				t.Fatalf("credential re-issued after %s (poll %d), before 0.8 of its 3h max TTL", age, polls)
			}
			user = got["user"]
		}
	}
	if changes != 1 {
		t.Errorf("credential changed %d times over %d polls in 2.5h, want exactly 1 (at 0.8 of max TTL)", changes, polls)
	}
	if n := e.vault.count("GET database/creds/app") - issued; n != 1 {
		t.Errorf("credentials issued for the SecretSync over %d polls = %d, want 1 (the re-issue at 0.8 of max TTL)", polls, n)
	}
	if n := e.vault.count("PUT pki/issue/web"); n != 4 {
		t.Errorf("certificates issued = %d, want 4 (one per SecretSync, pod and re-created SecretSync)", n)
	}
	firstLease := "database/creds/x/" + strings.TrimPrefix(first["user"], "v-user-")
	if e.vault.count("renew "+firstLease) == 0 {
		t.Errorf("lease %s of the refreshed SecretSync never renewed", firstLease)
	}
	deletedLease := "database/creds/x/" + strings.TrimPrefix(recreated["user"], "v-user-")
	if n := e.vault.count("renew " + deletedLease); n != 0 {
		t.Errorf("lease of a SecretSync that stopped refreshing renewed %d times, want 0", n)
	}
}

// TestLeasedValueWithoutOwner: a mount naming neither a pod UID nor a
// SecretSync (upstream's SecretSync controller) cannot keep a leased
// value. A write (PKI issue) is refused before any Vault call; a leased
// read is known only from Vault's answer, so the first attempt issues
// one credential that is never served (it expires in Vault) and later
// ones are refused before any call; KV values still mount. Malformed
// SecretSync attributes are refused before any Vault call.
func TestLeasedValueWithoutOwner(t *testing.T) {
	e := newEnv(t, vault.BackendConfig{})
	e.vault.role("app", "ns", "app", "database/", "secret/", "pki/")
	e.vault.putKV2("x", map[string]any{"v": "kv"})
	noOwner := func(attrs map[string]string) *plugin.Request {
		r := syncRequest(t, "ns", "", "", "app", attrs)
		if r.SecretSync != (plugin.SecretSync{}) || r.Pod.UID != "" {
			t.Fatalf("request names an owner: %+v %+v", r.Pod, r.SecretSync)
		}
		return r
	}
	pki := spc("app", "- {objectName: crt, secretPath: pki/issue/web, method: PUT, secretArgs: {common_name: a.example}, secretKey: certificate}")
	_, err := e.b.Mount(t.Context(), noOwner(pki))
	if !errors.Is(err, plugin.ErrUnauthenticated) || !strings.Contains(err.Error(), `object "crt"`) || !strings.Contains(err.Error(), "SecretSync") {
		t.Fatalf("PKI issue without an owner: err = %v, want Unauthenticated naming the object and the missing key", err)
	}
	if n := e.vault.count("PUT pki/issue/web") + e.vault.count("login"); n != 0 {
		t.Errorf("Vault calls for a refused write = %d, want 0", n)
	}
	db := spc("app", "- {objectName: user, secretPath: database/creds/app, secretKey: username}")
	for i := range 3 {
		_, err := e.b.Mount(t.Context(), noOwner(db))
		if !errors.Is(err, plugin.ErrUnauthenticated) || !strings.Contains(err.Error(), "neither a pod") {
			t.Fatalf("attempt %d: err = %v, want Unauthenticated naming the missing owner", i, err)
		}
	}
	// This fake Vault does not answer the engine lookup
	// (sys/internal/ui/mounts): the fallback. The real Vault answers it and
	// nothing is issued (TestIntegration/OwnerlessLeasedReadRefusedBeforeIssue).
	if n := e.vault.count("GET sys/internal/ui/mounts/database/creds/app"); n != 1 {
		t.Errorf("engine lookups = %d over 3 attempts, want 1 (then the path is known as leased)", n)
	}
	if n := e.vault.count("GET database/creds/app"); n != 1 {
		t.Errorf("credentials issued = %d over 3 attempts, want 1 (the first, before the lease was known)", n)
	}
	if f := e.mount(noOwner(spc("app", "- {objectName: v, secretPath: secret/data/x, secretKey: v}"))); f["v"] != "kv" {
		t.Errorf("KV without an owner: %v", f)
	}
	logins := e.vault.count("login")
	for attr, r := range map[string]*plugin.Request{
		plugin.AttrSecretSyncName: syncRequest(t, "ns", "Not/A name", "uid-1", "app", db),
		plugin.AttrSecretSyncUID:  syncRequest(t, "ns", "db", "", "app", db),
	} {
		_, err := e.b.Mount(t.Context(), r)
		if !errors.Is(err, plugin.ErrInvalidParameters) || !strings.Contains(err.Error(), attr) {
			t.Errorf("malformed %s: err = %v, want InvalidArgument naming it", attr, err)
		}
	}
	if e.vault.count("login") != logins || e.vault.count("GET database/creds/app") != 1 {
		t.Error("a mount with malformed SecretSync attributes called Vault")
	}
}

// TestLeasedValueExpiredBetweenRefreshes: a SecretSync refreshed less
// often than its lease's TTL cannot be renewed in time: each refresh
// finds its value expired and gets a new one, counted as "expired" (and
// logged) so that the operator learns the poll interval is too long;
// refreshed often enough, it is kept.
func TestLeasedValueExpiredBetweenRefreshes(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, vault.BackendConfig{Metrics: vault.NewMetrics(reg)})
	e.vault.role("app", "ns", "app", "database/", "secret/")
	e.vault.credTTL, e.vault.credMax = time.Hour, 24*time.Hour
	e.vault.tokenTTL = 48 * time.Hour
	e.vault.putKV2("x", map[string]any{"v": "kv"})
	attrs := spc("app", "- {objectName: user, secretPath: database/creds/app, secretKey: username}")
	poll := func() string { return e.mount(syncRequest(t, "ns", "db", "uid-1", "app", attrs))["user"] }
	// Every mount ends with a sweep of expired values; other mounts
	// happen between a SecretSync's refreshes.
	sweep := func() {
		e.mount(request("ns", "kv-pod", "app", spc("app", "- {objectName: v, secretPath: secret/data/x, secretKey: v}")))
	}
	outcomes := func() map[string]float64 {
		out := map[string]float64{}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "vault_provider_dynamic_secrets_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
		return out
	}
	user := poll()
	for i := 1; i <= 3; i++ { // every 70 minutes: past the 1h TTL each time
		e.clock.Step(65 * time.Minute)
		sweep()
		e.clock.Step(5 * time.Minute)
		if got := poll(); got == user {
			t.Fatalf("poll %d: an expired credential was served", i)
		} else {
			user = got
		}
	}
	if o := outcomes(); o["expired"] != 3 || o["issued"] != 1 {
		t.Errorf("outcomes %v, want issued 1 and expired 3", o)
	}
	for i := 1; i <= 6; i++ { // every 20 minutes: renewed in time
		e.clock.Step(20 * time.Minute)
		if got := poll(); got != user {
			t.Fatalf("poll %d every 20 min: credential re-issued", i)
		}
	}
	if o := outcomes(); o["expired"] != 3 || o["renewed"] == 0 {
		t.Errorf("outcomes %v after timely polls, want no new expired and some renewed", o)
	}
	// Remembered (without its value) for a day after it expired, then
	// forgotten: a SecretSync back after that is simply issued a value.
	e.clock.Step(26 * time.Hour)
	sweep() // the value is dropped
	e.clock.Step(time.Minute)
	sweep() // past a day after expiry: forgotten
	poll()
	if o := outcomes(); o["expired"] != 3 || o["issued"] != 2 {
		t.Errorf("outcomes %v, want expired still 3 and issued 2 (the SecretSync's first, then once forgotten)", o)
	}
}
