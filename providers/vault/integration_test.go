//go:build vault

package vault_test

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/sscsi/secrets-store/providers/plugin"
	"github.com/sscsi/secrets-store/providers/plugintest"
	"github.com/sscsi/secrets-store/providers/vault"
	"github.com/sscsi/secrets-store/providers/vault/params"
	"github.com/sscsi/secrets-store/test/cluster/controlplane"
	"github.com/sscsi/secrets-store/test/vaulttest"
)

// realEnv is a real Vault (with kubernetes auth against a real
// kube-apiserver, so every login is a TokenReview) behind a counting
// fault proxy, and a provider backend pointed at the proxy.
type realEnv struct {
	t     *testing.T
	rc    *rest.Config
	vault *vaulttest.Server
	proxy *vaulttest.FaultProxy
	b     *vault.Backend
}

const appPolicy = `
path "secret/data/app/*" { capabilities = ["read"] }
path "kv1/app/*" { capabilities = ["read"] }
path "database/creds/app" { capabilities = ["read"] }
path "pki/issue/web" { capabilities = ["update"] }
`

func newRealEnv(t *testing.T, cfg vault.BackendConfig, opts ...vaulttest.Options) *realEnv {
	t.Helper()
	rc := controlplane.ForTest(t)
	s := vaulttest.Start(t, opts...)
	s.EnableKV(t, "secret", 2)
	s.EnableKV(t, "kv1", 1)
	s.WritePolicy(t, "app", appPolicy)
	s.WritePolicy(t, "other", `path "secret/data/other/*" { capabilities = ["read"] }`)
	s.EnableKubernetesAuth(t, "kubernetes", rc)
	s.KubernetesRole(t, "kubernetes", "app", vaulttest.Role{ServiceAccounts: []string{"app"}, Namespaces: []string{"team"}, Policies: []string{"app"}, TTL: time.Hour})
	s.KubernetesRole(t, "kubernetes", "other", vaulttest.Role{ServiceAccounts: []string{"other"}, Namespaces: []string{"team"}, Policies: []string{"other"}, TTL: time.Hour})
	p := s.FaultProxy(t)
	cfg.Defaults.Connection.Address = p.Addr
	b, err := vault.NewBackend(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &realEnv{t: t, rc: rc, vault: s, proxy: p, b: b}
}

// request builds a mount the way the driver does, with a real service
// account token for audience "vault" from the TokenRequest API.
func (e *realEnv) request(ns, pod, sa string, attrs map[string]string) *plugin.Request {
	e.t.Helper()
	tok := vaulttest.ServiceAccountToken(e.t, e.rc, ns, sa, time.Hour, "vault")
	r := request(ns, pod, sa, attrs)
	r.Tokens = map[string]plugin.Token{"vault": {Token: tok, ExpirationTimestamp: time.Now().Add(time.Hour)}}
	return r
}

func (e *realEnv) mount(r *plugin.Request) (map[string]string, map[string]string) {
	e.t.Helper()
	resp, err := e.b.Mount(e.t.Context(), r)
	if err != nil {
		e.t.Fatalf("mount %s: %v", r.Pod.Name, err)
	}
	return files(e.t, resp), versionsOf(resp)
}

func TestIntegrationConformance(t *testing.T) {
	e := newRealEnv(t, vault.BackendConfig{CacheTTL: vault.DefaultCacheTTL})
	const value = "real-vault-s3cr3t-77c1"
	e.vault.PutKV(t, "secret", "app/conf", map[string]any{"password": value})
	pg := vaulttest.StartPostgres(t)
	e.vault.EnableDatabase(t, "database", pg, vaulttest.DBRole{Name: "app"})
	req := e.request("team", "app-0", "app", spc("app",
		"- {objectName: password, secretPath: secret/data/app/conf, secretKey: password}",
		"- {objectName: db-user, secretPath: database/creds/app, secretKey: username}",
	))
	notFound := e.request("team", "app-0", "app", spc("app", "- {objectName: x, secretPath: secret/data/app/absent, secretKey: v}"))
	plugintest.Run(t, plugintest.Provider{
		Name: "vault", Backend: e.b, Attributes: req.Attributes, Tokens: req.Tokens, SecretValue: value, NotFoundAttributes: notFound.Attributes,
	})
}

func TestIntegrationKV(t *testing.T) {
	e := newRealEnv(t, vault.BackendConfig{CacheTTL: 0})
	e.vault.PutKV(t, "secret", "app/db", map[string]any{"password": "first", "port": 5432})
	e.vault.PutKV(t, "secret", "app/db", map[string]any{"password": "second", "port": 5432})
	e.vault.PutKV(t, "kv1", "app/config", map[string]any{"mode": "one", "blob": "aGVsbG8="})
	attrs := spc("app",
		"- {objectName: latest, secretPath: secret/data/app/db, secretKey: password}",
		"- {objectName: pinned, secretPath: 'secret/data/app/db?version=1', secretKey: password}",
		"- {objectName: port, secretPath: secret/data/app/db, secretKey: port}",
		"- {objectName: mode, secretPath: kv1/app/config, secretKey: mode}",
		"- {objectName: blob, secretPath: kv1/app/config, secretKey: blob, encoding: base64}",
		"- {objectName: whole, secretPath: secret/data/app/db}",
		"- {objectName: all, secretPath: secret/data/app/db, allKeys: true}",
	)
	got, vs := e.mount(e.request("team", "p", "app", attrs))
	for k, v := range map[string]string{"latest": "second", "pinned": "first", "port": "5432", "mode": "one", "blob": "hello", "all/password": "second", "all/port": "5432"} {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if vs["latest"] != "2" || vs["pinned"] != "1" || !strings.HasPrefix(vs["mode"], "hmac-") {
		t.Errorf("versions = %v", vs)
	}
	var whole struct {
		Data struct {
			Data     map[string]any `json:"data"`
			Metadata map[string]any `json:"metadata"`
		} `json:"data"`
		LeaseID string `json:"lease_id"`
	}
	if err := json.Unmarshal([]byte(got["whole"]), &whole); err != nil || whole.Data.Data["password"] != "second" || whole.Data.Metadata["version"] == nil {
		t.Errorf("whole response = %s (%v)", got["whole"], err)
	}
	// An update reaches the next mount (rotation); the pinned object stays.
	e.vault.PutKV(t, "secret", "app/db", map[string]any{"password": "third", "port": 5432})
	got, vs = e.mount(e.request("team", "p", "app", attrs))
	if got["latest"] != "third" || vs["latest"] != "3" || got["pinned"] != "first" {
		t.Errorf("after update: latest %q (v%s), pinned %q", got["latest"], vs["latest"], got["pinned"])
	}
	// Missing key and missing path name the object and field.
	_, err := e.b.Mount(t.Context(), e.request("team", "p", "app", spc("app", "- {objectName: o, secretPath: secret/data/app/db, secretKey: nope}")))
	if !errors.Is(err, plugin.ErrNotFound) || !strings.Contains(err.Error(), "secretKey") || strings.Contains(err.Error(), "third") {
		t.Errorf("missing key: %v", err)
	}
}

func TestIntegrationIdentityAndTokenReuse(t *testing.T) {
	e := newRealEnv(t, vault.BackendConfig{CacheTTL: time.Minute})
	e.vault.PutKV(t, "secret", "app/db", map[string]any{"password": "app-value"})
	e.vault.PutKV(t, "secret", "other/db", map[string]any{"password": "other-value"})
	attrs := spc("app", "- {objectName: pw, secretPath: secret/data/app/db, secretKey: password}")
	for _, pod := range []string{"a", "b", "c"} {
		if got, _ := e.mount(e.request("team", pod, "app", attrs)); got["pw"] != "app-value" {
			t.Errorf("pod %s got %q", pod, got["pw"])
		}
	}
	if n := e.proxy.Count(http.MethodPost, "/v1/auth/kubernetes/login") + e.proxy.Count(http.MethodPut, "/v1/auth/kubernetes/login"); n != 1 {
		t.Errorf("logins for 3 pods of one service account = %d, want 1", n)
	}
	if n := e.proxy.Count(http.MethodGet, "/v1/secret/data/app/db"); n != 1 {
		t.Errorf("reads = %d, want 1 (shared for the cache TTL)", n)
	}
	// The other service account with its own role: its own login, and the
	// app value cached for the app identity is not served to it.
	_, err := e.b.Mount(t.Context(), e.request("team", "x", "other", spc("other", "- {objectName: pw, secretPath: secret/data/app/db, secretKey: password}")))
	if !errors.Is(err, plugin.ErrPermissionDenied) {
		t.Fatalf("other reading app's secret: %v, want permission denied", err)
	}
	// The other service account cannot log in with app's role.
	_, err = e.b.Mount(t.Context(), e.request("team", "y", "other", attrs))
	if !errors.Is(err, plugin.ErrUnauthenticated) {
		t.Fatalf("other with role app: %v, want unauthenticated", err)
	}
	// A token for another audience is not used (the kubelet would not have
	// sent one for "vault"): fail closed.
	r := e.request("team", "z", "app", attrs)
	r.Tokens = map[string]plugin.Token{"sts.amazonaws.com": r.Tokens["vault"]}
	if _, err := e.b.Mount(t.Context(), r); !errors.Is(err, plugin.ErrUnauthenticated) {
		t.Fatalf("no vault-audience token: %v", err)
	}
}

func TestIntegrationJWTAuth(t *testing.T) {
	e := newRealEnv(t, vault.BackendConfig{})
	e.vault.EnableJWTAuth(t, "jwt", e.rc)
	e.vault.JWTRole(t, "jwt", "app", vaulttest.Role{ServiceAccounts: []string{"app"}, Namespaces: []string{"team"}, Policies: []string{"app"}})
	e.vault.PutKV(t, "secret", "app/db", map[string]any{"password": "via-jwt"})
	attrs := spc("app", "- {objectName: pw, secretPath: secret/data/app/db, secretKey: password}")
	attrs[params.ParamAuthMountPath] = "jwt"
	if got, _ := e.mount(e.request("team", "p", "app", attrs)); got["pw"] != "via-jwt" {
		t.Errorf("got %q", got["pw"])
	}
}

func TestIntegrationDatabaseCredentialsPerPodAcrossRotations(t *testing.T) {
	e := newRealEnv(t, vault.BackendConfig{CacheTTL: time.Minute, RenewFraction: 0.5, ReissueFraction: 0.8})
	pg := vaulttest.StartPostgres(t)
	e.vault.EnableDatabase(t, "database", pg, vaulttest.DBRole{Name: "app", DefaultTTL: 6 * time.Second, MaxTTL: 15 * time.Second})
	attrs := spc("app",
		"- {objectName: user, secretPath: database/creds/app, secretKey: username}",
		"- {objectName: pass, secretPath: database/creds/app, secretKey: password}",
	)
	first, _ := e.mount(e.request("team", "p1", "app", attrs))
	if _, err := pg.Query(t.Context(), first["user"], first["pass"], "SELECT 1"); err != nil {
		t.Fatalf("the mounted username and password do not log in (from different credentials?): %v", err)
	}
	second, _ := e.mount(e.request("team", "p2", "app", attrs))
	if second["user"] == first["user"] {
		t.Error("two pods share one database credential")
	}
	// Rotation every second: the same credential, renewed while the pod
	// republishes, until 0.8 of the 15s max TTL (12s).
	start := time.Now()
	user := first["user"]
	changes, rounds := 0, 0
	for time.Since(start) < 14*time.Second {
		time.Sleep(time.Second)
		rounds++
		got, _ := e.mount(e.request("team", "p1", "app", attrs))
		if got["user"] != user {
			if time.Since(start) < 8*time.Second {
				t.Fatalf("credential re-issued after %s (round %d), before it could reach 0.8 of its max TTL", time.Since(start), rounds)
			}
			changes++
			user = got["user"]
		}
		if _, err := pg.Query(t.Context(), got["user"], got["pass"], "SELECT 1"); err != nil {
			t.Fatalf("round %d: mounted credential does not work: %v", rounds, err)
		}
	}
	if changes != 1 {
		t.Errorf("credential changed %d times over %d rounds, want exactly once (near 0.8 of max TTL)", changes, rounds)
	}
	if n := e.proxy.Count(http.MethodPut, "/v1/sys/leases/renew") + e.proxy.Count(http.MethodPost, "/v1/sys/leases/renew"); n == 0 {
		t.Error("no lease renewal reached Vault")
	}
	if n := e.proxy.Count(http.MethodGet, "/v1/database/creds/app"); n != 3 {
		t.Errorf("credentials issued = %d, want 3 (p1, p2, p1 once more)", n)
	}
}

func TestIntegrationLeaseRevokedByOperator(t *testing.T) {
	e := newRealEnv(t, vault.BackendConfig{RenewFraction: 0.1})
	pg := vaulttest.StartPostgres(t)
	e.vault.EnableDatabase(t, "database", pg, vaulttest.DBRole{Name: "app", DefaultTTL: 20 * time.Second, MaxTTL: time.Hour})
	attrs := spc("app", "- {objectName: user, secretPath: database/creds/app, secretKey: username}", "- {objectName: pass, secretPath: database/creds/app, secretKey: password}")
	first, _ := e.mount(e.request("team", "p", "app", attrs))
	e.vault.RevokePrefix(t, "database/creds/app")
	time.Sleep(2100 * time.Millisecond) // past 0.1 of the TTL: the next republish renews
	got, _ := e.mount(e.request("team", "p", "app", attrs))
	if got["user"] == first["user"] {
		t.Fatal("a revoked credential was served again")
	}
	if _, err := pg.Query(t.Context(), got["user"], got["pass"], "SELECT 1"); err != nil {
		t.Fatalf("the new credential does not work: %v", err)
	}
}

func TestIntegrationPKICertificateAndKeyFromOneIssuance(t *testing.T) {
	e := newRealEnv(t, vault.BackendConfig{})
	e.vault.EnablePKI(t, "pki", vaulttest.PKIRole{Name: "web", AllowedDomains: []string{"example.com"}, GenerateLease: true, TTL: time.Hour})
	attrs := spc("app",
		"- {objectName: tls.crt, secretPath: pki/issue/web, method: PUT, secretArgs: {common_name: app.example.com}, secretKey: certificate}",
		"- {objectName: tls.key, secretPath: pki/issue/web, method: PUT, secretArgs: {common_name: app.example.com}, secretKey: private_key, filePermission: 0600}",
	)
	got, _ := e.mount(e.request("team", "p", "app", attrs))
	checkKeyPair(t, got["tls.crt"], got["tls.key"])
	again, _ := e.mount(e.request("team", "p", "app", attrs))
	if again["tls.crt"] != got["tls.crt"] {
		t.Error("the certificate was re-issued on a republish")
	}
	if n := e.proxy.Count(http.MethodPut, "/v1/pki/issue/web"); n != 1 {
		t.Errorf("issuances = %d, want 1", n)
	}
}

func checkKeyPair(t *testing.T, certPEM, keyPEM string) {
	t.Helper()
	cb, _ := pem.Decode([]byte(certPEM))
	kb, _ := pem.Decode([]byte(keyPEM))
	if cb == nil || kb == nil {
		t.Fatalf("certificate or key is not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	var key crypto.Signer
	if k, err := x509.ParsePKCS1PrivateKey(kb.Bytes); err == nil {
		key = k
	} else if k, err := x509.ParseECPrivateKey(kb.Bytes); err == nil {
		key = k
	} else if k, err := x509.ParsePKCS8PrivateKey(kb.Bytes); err == nil {
		key = k.(crypto.Signer)
	} else {
		t.Fatalf("private key: %v", err)
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if !key.Public().(equaler).Equal(cert.PublicKey) {
		t.Fatal("certificate and key come from different issuances")
	}
}

func TestIntegrationFaults(t *testing.T) {
	e := newRealEnv(t, vault.BackendConfig{CacheTTL: 0})
	e.vault.PutKV(t, "secret", "app/db", map[string]any{"password": "v"})
	attrs := spc("app", "- {objectName: pw, secretPath: secret/data/app/db, secretKey: password}")
	e.mount(e.request("team", "p", "app", attrs))

	t.Run("5xx", func(t *testing.T) {
		e.proxy.FailNext("/v1/secret/", http.StatusInternalServerError, 1)
		_, err := e.b.Mount(t.Context(), e.request("team", "p", "app", attrs))
		if !errors.Is(err, plugin.ErrUnavailable) || !strings.Contains(err.Error(), "500") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("403 then one re-login", func(t *testing.T) {
		time.Sleep(5 * time.Second) // the cached token is no longer fresh
		e.proxy.Reset()
		e.vault.RevokePrefix(t, "auth/kubernetes/login") // an operator revokes the provider's tokens
		for _, pod := range []string{"q1", "q2", "q3"} {
			if got, _ := e.mount(e.request("team", pod, "app", attrs)); got["pw"] != "v" {
				t.Errorf("%s got %q", pod, got["pw"])
			}
		}
		if n := e.proxy.Count(http.MethodPost, "/v1/auth/kubernetes/login") + e.proxy.Count(http.MethodPut, "/v1/auth/kubernetes/login"); n != 1 {
			t.Errorf("re-logins = %d, want 1", n)
		}
	})
	t.Run("sealed", func(t *testing.T) {
		e.vault.Seal(t)
		_, err := e.b.Mount(t.Context(), e.request("team", "p", "app", attrs))
		e.vault.Unseal(t)
		if !errors.Is(err, plugin.ErrUnavailable) {
			t.Fatalf("err = %v, want unavailable", err)
		}
		if got, _ := e.mount(e.request("team", "p", "app", attrs)); got["pw"] != "v" {
			t.Errorf("after unseal: %q", got["pw"])
		}
	})
	t.Run("down during rotation", func(t *testing.T) {
		pg := vaulttest.StartPostgres(t)
		e.vault.EnableDatabase(t, "database", pg, vaulttest.DBRole{Name: "app", DefaultTTL: time.Hour})
		dyn := spc("app", "- {objectName: user, secretPath: database/creds/app, secretKey: username}")
		first, _ := e.mount(e.request("team", "d", "app", dyn))
		e.vault.Down(t)
		_, err := e.b.Mount(t.Context(), e.request("team", "p", "app", attrs))
		if !errors.Is(err, plugin.ErrUnavailable) {
			e.vault.Up(t)
			t.Fatalf("KV read with Vault down: %v, want unavailable (the driver keeps the last files)", err)
		}
		// A dynamic secret whose lease is still valid is served as it is.
		got, _ := e.mount(e.request("team", "d", "app", dyn))
		e.vault.Up(t)
		if got["user"] != first["user"] {
			t.Errorf("dynamic secret with Vault down = %q, want the still-valid %q", got["user"], first["user"])
		}
	})
}
