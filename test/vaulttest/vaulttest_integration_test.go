//go:build integration

package vaulttest

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sscsi/secrets-store/test/cluster/controlplane"
)

func TestStartTLSAndKV(t *testing.T) {
	t0 := time.Now()
	s := Start(t, Options{TLS: true})
	t.Logf("Vault started (TLS) in %s", time.Since(t0).Round(time.Millisecond))
	if !strings.HasPrefix(s.Addr, "https://127.0.0.1:") {
		t.Fatalf("Addr = %q, want https://127.0.0.1:<port>", s.Addr)
	}
	s.EnableKV(t, "kv1", 1)
	s.EnableKV(t, "secret", 2)
	if v := s.PutKV(t, "kv1", "app/config", map[string]any{"mode": "one"}); v != 0 {
		t.Fatalf("KV v1 version = %d, want 0", v)
	}
	if v := s.PutKV(t, "secret", "app/db", map[string]any{"password": "first"}); v != 1 {
		t.Fatalf("first KV v2 version = %d, want 1", v)
	}
	if v := s.PutKV(t, "secret", "app/db", map[string]any{"password": "second"}); v != 2 {
		t.Fatalf("second KV v2 version = %d, want 2", v)
	}
	c := s.Client(t)
	old, err := c.KVv2("secret").GetVersion(t.Context(), "app/db", 1)
	if err != nil || old.Data["password"] != "first" {
		t.Fatalf("KV v2 version 1 = %v, %v; want password=first", old, err)
	}
	latest := s.Read(t, "secret/data/app/db")
	if got := latest.Data["data"].(map[string]any)["password"]; got != "second" {
		t.Fatalf("latest KV v2 = %v, want second", got)
	}
	if got := s.Read(t, "kv1/app/config").Data["mode"]; got != "one" {
		t.Fatalf("KV v1 = %v, want one", got)
	}
	// The log must never hold the root token.
	s.stop()
	if b := logTail(s.LogPath, 10000); strings.Contains(b, s.RootToken) {
		t.Fatalf("Vault's log holds the root token")
	}
}

func TestKubernetesAndJWTLoginsAreRealTokenReviews(t *testing.T) {
	rc := controlplane.ForTest(t)
	s := Start(t)
	s.EnableKV(t, "secret", 2)
	s.PutKV(t, "secret", "app/db", map[string]any{"password": "p1"})
	s.WritePolicy(t, "app-read", `path "secret/data/app/*" { capabilities = ["read"] }`)
	s.EnableKubernetesAuth(t, "kubernetes", rc)
	s.KubernetesRole(t, "kubernetes", "app", Role{
		ServiceAccounts: []string{"reader"}, Namespaces: []string{"app"}, Policies: []string{"app-read"}, TTL: 10 * time.Minute,
	})
	s.EnableJWTAuth(t, "jwt", rc)
	s.JWTRole(t, "jwt", "app", Role{
		ServiceAccounts: []string{"reader"}, Namespaces: []string{"app"}, Policies: []string{"app-read"}, Audience: "vault",
	})

	reader := ServiceAccountToken(t, rc, "app", "reader", time.Hour)
	tok := s.Login(t, "kubernetes", "app", reader)
	sec, err := s.ClientWithToken(t, tok).Logical().ReadWithContext(t.Context(), "secret/data/app/db")
	if err != nil || sec.Data["data"].(map[string]any)["password"] != "p1" {
		t.Fatalf("read with the kubernetes login's token: %v, %v", sec, err)
	}
	if _, err := s.ClientWithToken(t, tok).Logical().ReadWithContext(t.Context(), "sys/mounts"); responseStatus(err) != http.StatusForbidden {
		t.Fatalf("the app token read sys/mounts: err %v, want 403", err)
	}

	// Another service account of the same namespace is refused by the role.
	other := ServiceAccountToken(t, rc, "app", "other", time.Hour)
	if _, err := s.ClientWithToken(t, "").Logical().WriteWithContext(t.Context(), "auth/kubernetes/login",
		map[string]any{"role": "app", "jwt": other}); responseStatus(err) != http.StatusForbidden {
		t.Fatalf("login as app/other: err %v, want 403", err)
	}
	// A token the apiserver no longer accepts (its service account deleted) fails the TokenReview.
	doomed := ServiceAccountToken(t, rc, "app", "reader2", time.Hour)
	s.KubernetesRole(t, "kubernetes", "app2", Role{ServiceAccounts: []string{"reader2"}, Namespaces: []string{"app"}, Policies: []string{"app-read"}})
	s.Login(t, "kubernetes", "app2", doomed)
	if err := clientset(t, rc).CoreV1().ServiceAccounts("app").Delete(t.Context(), "reader2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// kube-apiserver caches a successful token authentication for 10 s (its token success cache),
	// so the refusal may take that long; it must come.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := s.ClientWithToken(t, "").Logical().WriteWithContext(t.Context(), "auth/kubernetes/login",
			map[string]any{"role": "app2", "jwt": doomed})
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("login with the token of a deleted service account still succeeds after 30 s: the TokenReview is not real")
		}
		time.Sleep(time.Second)
	}

	// jwt: the audience is enforced.
	withAud := ServiceAccountToken(t, rc, "app", "reader", time.Hour, "vault")
	jtok := s.Login(t, "jwt", "app", withAud)
	if _, err := s.ClientWithToken(t, jtok).Logical().ReadWithContext(t.Context(), "secret/data/app/db"); err != nil {
		t.Fatalf("read with the jwt login's token: %v", err)
	}
	if _, err := s.ClientWithToken(t, "").Logical().WriteWithContext(t.Context(), "auth/jwt/login",
		map[string]any{"role": "app", "jwt": reader}); err == nil {
		t.Fatalf("jwt login with a token without the vault audience succeeded")
	}
}

func TestDatabaseCredentialsArePostgresUsersWithLeases(t *testing.T) {
	t0 := time.Now()
	pg := StartPostgres(t)
	t.Logf("PostgreSQL started in %s", time.Since(t0).Round(time.Millisecond))
	s := Start(t)
	s.EnableDatabase(t, "database", pg, DBRole{Name: "app", DefaultTTL: time.Hour, MaxTTL: 2 * time.Hour})

	creds := s.Read(t, "database/creds/app")
	user, _ := creds.Data["username"].(string)
	pass, _ := creds.Data["password"].(string)
	if user == "" || pass == "" || creds.LeaseID == "" || !creds.Renewable || creds.LeaseDuration != 3600 {
		t.Fatalf("database credential: user %q, lease %q renewable %v duration %d", user, creds.LeaseID, creds.Renewable, creds.LeaseDuration)
	}
	if got, err := pg.Query(t.Context(), user, pass, "SELECT current_user"); err != nil || got != user {
		t.Fatalf("logging in to PostgreSQL with the credential: %q, %v", got, err)
	}
	if leases := s.Leases(t, "database/creds/app"); len(leases) != 1 || leases[0] != creds.LeaseID {
		t.Fatalf("Leases = %v, want [%s]", leases, creds.LeaseID)
	}
	renewed, err := s.Client(t).Sys().RenewWithContext(t.Context(), creds.LeaseID, 1800)
	if err != nil || renewed.LeaseID != creds.LeaseID {
		t.Fatalf("renewing the lease: %v, %v", renewed, err)
	}
	s.RevokeLease(t, creds.LeaseID)
	if _, err := pg.Query(t.Context(), user, pass, "SELECT 1"); err == nil {
		t.Fatalf("the credential still logs in after its lease was revoked")
	}
	if leases := s.Leases(t, "database/creds/app"); len(leases) != 0 {
		t.Fatalf("Leases after revocation = %v, want none", leases)
	}
}

func TestPKIIssuesLeasedCertificates(t *testing.T) {
	s := Start(t)
	caPEM := s.EnablePKI(t, "pki", PKIRole{Name: "web", AllowedDomains: []string{"example.com"}, GenerateLease: true})
	sec := s.Write(t, "pki/issue/web", map[string]any{"common_name": "app.example.com", "ttl": "10m"})
	if sec.LeaseID == "" {
		t.Fatalf("PKI issue with generate_lease: no lease")
	}
	block, _ := pem.Decode([]byte(sec.Data["certificate"].(string)))
	if block == nil {
		t.Fatalf("no certificate PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("EnablePKI returned no CA PEM")
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "app.example.com"}); err != nil {
		t.Fatalf("issued certificate does not chain to the CA: %v", err)
	}
	if k, _ := sec.Data["private_key"].(string); !strings.Contains(k, "PRIVATE KEY") {
		t.Fatalf("no private key in the issue response")
	}
	if _, err := s.ClientWithToken(t, "").Logical().WriteWithContext(t.Context(), "pki/issue/web",
		map[string]any{"common_name": "evil.test"}); err == nil {
		t.Fatalf("issued without a token")
	}
}

func TestFaults(t *testing.T) {
	s := Start(t)
	s.EnableKV(t, "secret", 2)
	s.PutKV(t, "secret", "a", map[string]any{"k": "v"})
	read := func(c *api.Client) error {
		_, err := c.Logical().ReadWithContext(t.Context(), "secret/data/a")
		return err
	}

	s.Seal(t)
	if err := read(s.Client(t)); responseStatus(err) != http.StatusServiceUnavailable {
		t.Fatalf("read while sealed: %v, want 503", err)
	}
	s.Unseal(t)
	if err := read(s.Client(t)); err != nil {
		t.Fatalf("read after unseal: %v", err)
	}

	s.Down(t)
	if err := read(s.Client(t)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("read while down: %v, want connection refused", err)
	}
	s.Up(t)
	if err := read(s.Client(t)); err != nil {
		t.Fatalf("read after up: %v", err)
	}

	p := s.FaultProxy(t)
	pc := s.Client(t)
	if err := pc.SetAddress(p.Addr); err != nil {
		t.Fatal(err)
	}
	p.FailNext("/v1/secret/", http.StatusInternalServerError, 1)
	p.FailNext("/v1/secret/", http.StatusForbidden, 1)
	if err := read(pc); responseStatus(err) != http.StatusInternalServerError {
		t.Fatalf("first read through the proxy: %v, want 500", err)
	}
	if err := read(pc); responseStatus(err) != http.StatusForbidden {
		t.Fatalf("second read through the proxy: %v, want 403", err)
	}
	if err := read(pc); err != nil {
		t.Fatalf("third read through the proxy: %v", err)
	}
	if n := p.Count("GET", "/v1/secret/data/a"); n != 3 {
		t.Fatalf("proxy counted %d reads, want 3", n)
	}
}

// responseStatus is the HTTP status of a Vault error response, 0 if err is not one.
func responseStatus(err error) int {
	var re *api.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}
