//go:build integration

package vault_test

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"k8s.io/client-go/rest"

	"github.com/sscsi/secrets-store/providers/plugin"
	"github.com/sscsi/secrets-store/providers/plugintest"
	"github.com/sscsi/secrets-store/providers/vault"
	"github.com/sscsi/secrets-store/providers/vault/params"
	"github.com/sscsi/secrets-store/test/cluster/controlplane"
	"github.com/sscsi/secrets-store/test/vaulttest"
)

// shared is one real kube-apiserver, one real Vault (HTTPS, kubernetes
// and jwt auth configured against that apiserver, so every login is a
// TokenReview or a JWKS check) and one PostgreSQL for all integration
// subtests; each subtest uses its own KV paths, database roles and
// provider backend (behind its own counting fault proxy), so they do not
// see each other's state. Starting these once keeps the package's wall
// time low enough for make test.
type shared struct {
	rc    *rest.Config
	vault *vaulttest.Server
	pg    *vaulttest.Postgres
}

const appPolicy = `
path "secret/data/app/*" { capabilities = ["read"] }
path "kv1/app/*" { capabilities = ["read"] }
path "database/creds/*" { capabilities = ["read"] }
path "pki/issue/*" { capabilities = ["update"] }
`

func startShared(t *testing.T) *shared {
	t.Helper()
	rc := controlplane.ForTest(t)
	s := vaulttest.Start(t, vaulttest.Options{TLS: true})
	pg := vaulttest.StartPostgres(t)
	s.EnableKV(t, "secret", 2)
	s.EnableKV(t, "kv1", 1)
	s.WritePolicy(t, "app", appPolicy)
	s.WritePolicy(t, "other", `path "secret/data/other/*" { capabilities = ["read"] }`)
	s.EnableKubernetesAuth(t, "kubernetes", rc)
	for _, r := range []struct {
		name, ns, sa, policy string
		ttl                  time.Duration
	}{
		{"app", "team", "app", "app", time.Hour},
		{"other", "team", "other", "other", time.Hour},
		// The same service account name in another namespace.
		{"app-team2", "team2", "app", "app", time.Hour},
		// A short token TTL: renewed on a later mount, not replaced.
		{"short", "team", "app", "app", 10 * time.Second},
	} {
		s.KubernetesRole(t, "kubernetes", r.name, vaulttest.Role{ServiceAccounts: []string{r.sa}, Namespaces: []string{r.ns}, Policies: []string{r.policy}, TTL: r.ttl, MaxTTL: time.Hour})
	}
	s.EnableJWTAuth(t, "jwt", rc)
	s.JWTRole(t, "jwt", "app", vaulttest.Role{ServiceAccounts: []string{"app"}, Namespaces: []string{"team"}, Policies: []string{"app"}})
	s.EnableDatabase(t, "database", pg)
	s.EnablePKI(t, "pki", vaulttest.PKIRole{Name: "web", AllowedDomains: []string{"example.com"}, GenerateLease: true, TTL: time.Hour})
	// Without generate_lease (Vault's default): no lease, only the
	// certificate's expiration.
	s.Write(t, "pki/roles/web-nolease", map[string]any{
		"allowed_domains": []string{"example.com"}, "allow_subdomains": true, "key_type": "ec", "key_bits": 256, "ttl": "1h", "max_ttl": "24h",
	})
	return &shared{rc: rc, vault: s, pg: pg}
}

func TestIntegration(t *testing.T) {
	sh := startShared(t)
	for _, c := range []struct {
		name string
		run  func(*testing.T, *shared)
	}{
		{"Conformance", integrationConformance},
		{"KV", integrationKV},
		{"IdentityAndTokenReuse", integrationIdentityAndTokenReuse},
		{"TokenRenewedNotReplaced", integrationTokenRenewed},
		{"JWTAuth", integrationJWTAuth},
		{"DatabaseCredentialsPerPodAcrossRotations", integrationDatabaseAcrossRotations},
		{"DatabaseCredentialsPerSecretSync", integrationDatabasePerSecretSync},
		{"SecretSyncRestarts", integrationSecretSyncRestarts},
		{"OwnerlessLeasedReadRefusedBeforeIssue", integrationOwnerlessLeasedRead},
		{"LeaseRevokedByOperator", integrationLeaseRevokedByOperator},
		{"PKICertificateAndKeyFromOneIssuance", integrationPKI},
		{"VersionsAcrossProviderRestart", integrationVersionsAcrossRestart},
		{"ConfinedTLSFiles", integrationConfinedTLSFiles},
		{"VaultAddressAllowList", integrationVaultAddressAllowList},
		{"Faults", integrationFaults},
	} {
		if !t.Run(c.name, func(t *testing.T) { c.run(t, sh) }) && c.name == "Conformance" {
			t.Fatal("the provider does not pass the conformance suite against the real Vault; later subtests would only repeat it")
		}
	}
}

// realEnv is a provider backend pointed at the shared Vault through a
// counting fault proxy of its own.
type realEnv struct {
	t     *testing.T
	sh    *shared
	vault *vaulttest.Server
	proxy *vaulttest.FaultProxy
	b     *vault.Backend
}

func newRealEnv(t *testing.T, sh *shared, cfg vault.BackendConfig) *realEnv {
	t.Helper()
	p := sh.vault.FaultProxy(t)
	cfg.Defaults.Connection.Address = p.Addr
	b, err := vault.NewBackend(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &realEnv{t: t, sh: sh, vault: sh.vault, proxy: p, b: b}
}

// request builds a mount the way the driver does, with a real service
// account token for audience "vault" from the TokenRequest API.
func (e *realEnv) request(ns, pod, sa string, attrs map[string]string) *plugin.Request {
	e.t.Helper()
	tok := vaulttest.ServiceAccountToken(e.t, e.sh.rc, ns, sa, time.Hour, "vault")
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

func (e *realEnv) logins(mount string) int {
	return e.proxy.Count("", "/v1/auth/"+mount+"/login")
}

func integrationConformance(t *testing.T, sh *shared) {
	e := newRealEnv(t, sh, vault.BackendConfig{CacheTTL: vault.DefaultCacheTTL})
	const value = "real-vault-s3cr3t-77c1"
	e.vault.PutKV(t, "secret", "app/conformance/conf", map[string]any{"password": value})
	e.vault.DatabaseRole(t, "database", vaulttest.DBRole{Name: "conformance"})
	req := e.request("team", "app-0", "app", spc("app",
		"- {objectName: password, secretPath: secret/data/app/conformance/conf, secretKey: password}",
		"- {objectName: db-user, secretPath: database/creds/conformance, secretKey: username}",
	))
	notFound := e.request("team", "app-0", "app", spc("app", "- {objectName: x, secretPath: secret/data/app/conformance/absent, secretKey: v}"))
	plugintest.Run(t, plugintest.Provider{
		Name: "vault", Backend: e.b, Attributes: req.Attributes, Tokens: req.Tokens, SecretValue: value, NotFoundAttributes: notFound.Attributes,
	})
}

func integrationKV(t *testing.T, sh *shared) {
	e := newRealEnv(t, sh, vault.BackendConfig{CacheTTL: 0})
	e.vault.PutKV(t, "secret", "app/kv/db", map[string]any{"password": "first", "port": 5432})
	e.vault.PutKV(t, "secret", "app/kv/db", map[string]any{"password": "second", "port": 5432})
	e.vault.PutKV(t, "kv1", "app/kv/config", map[string]any{"mode": "one", "blob": "aGVsbG8="})
	attrs := spc("app",
		"- {objectName: latest, secretPath: secret/data/app/kv/db, secretKey: password}",
		"- {objectName: pinned, secretPath: 'secret/data/app/kv/db?version=1', secretKey: password}",
		"- {objectName: port, secretPath: secret/data/app/kv/db, secretKey: port}",
		"- {objectName: mode, secretPath: kv1/app/kv/config, secretKey: mode}",
		"- {objectName: blob, secretPath: kv1/app/kv/config, secretKey: blob, encoding: base64}",
		"- {objectName: whole, secretPath: secret/data/app/kv/db}",
		"- {objectName: all, secretPath: secret/data/app/kv/db, allKeys: true}",
	)
	got, vs := e.mount(e.request("team", "p", "app", attrs))
	for k, v := range map[string]string{"latest": "second", "pinned": "first", "port": "5432", "mode": "one", "blob": "hello", "all/password": "second", "all/port": "5432"} {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if _, ok := got["all"]; ok {
		t.Error("allKeys wrote a file named after the object as well")
	}
	if vs["latest"] != "2" || vs["pinned"] != "1" || vs["all/password"] != "2" || !strings.HasPrefix(vs["mode"], "hmac-") {
		t.Errorf("versions = %v (KV v2: the metadata version; KV v1: a keyed hash)", vs)
	}
	var whole struct {
		Data struct {
			Data     map[string]any `json:"data"`
			Metadata map[string]any `json:"metadata"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(got["whole"]), &whole); err != nil || whole.Data.Data["password"] != "second" || whole.Data.Metadata["version"] == nil {
		t.Errorf("whole response = %s (%v)", got["whole"], err)
	}
	// An update reaches the next mount (rotation); the pinned object stays.
	e.vault.PutKV(t, "secret", "app/kv/db", map[string]any{"password": "third", "port": 5432})
	got, vs = e.mount(e.request("team", "p", "app", attrs))
	if got["latest"] != "third" || vs["latest"] != "3" || got["pinned"] != "first" || vs["pinned"] != "1" {
		t.Errorf("after update: latest %q (v%s), pinned %q (v%s)", got["latest"], vs["latest"], got["pinned"], vs["pinned"])
	}
	// Errors name the object and field and never quote a value.
	for name, c := range map[string]struct {
		object string
		want   error
		field  string
	}{
		"missing key":  {"- {objectName: o, secretPath: secret/data/app/kv/db, secretKey: nope}", plugin.ErrNotFound, "secretKey"},
		"missing path": {"- {objectName: o, secretPath: secret/data/app/kv/absent, secretKey: password}", plugin.ErrNotFound, "secretPath"},
		"bad encoding": {"- {objectName: o, secretPath: secret/data/app/kv/db, secretKey: password, encoding: base64}", plugin.ErrInvalidParameters, "encoding"},
		"denied":       {"- {objectName: o, secretPath: secret/data/other/x, secretKey: password}", plugin.ErrPermissionDenied, "o"},
	} {
		_, err := e.b.Mount(t.Context(), e.request("team", "p", "app", spc("app", c.object)))
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: err = %v, want %v naming %s", name, err, c.want, c.field)
		}
		if err != nil && (strings.Contains(err.Error(), "third") || strings.Contains(err.Error(), "5432")) {
			t.Errorf("%s: error quotes a secret value: %v", name, err)
		}
	}
}

func integrationIdentityAndTokenReuse(t *testing.T, sh *shared) {
	e := newRealEnv(t, sh, vault.BackendConfig{CacheTTL: time.Minute})
	e.vault.PutKV(t, "secret", "app/id/db", map[string]any{"password": "app-value"})
	e.vault.PutKV(t, "secret", "other/id/db", map[string]any{"password": "other-value"})
	attrs := spc("app", "- {objectName: pw, secretPath: secret/data/app/id/db, secretKey: password}")
	// Three pods of one service account, each republished: one login.
	for range 2 {
		for _, pod := range []string{"a", "b", "c"} {
			if got, _ := e.mount(e.request("team", pod, "app", attrs)); got["pw"] != "app-value" {
				t.Errorf("pod %s got %q", pod, got["pw"])
			}
		}
	}
	if n := e.logins("kubernetes"); n != 1 {
		t.Errorf("logins for 3 pods of one service account, each mounted twice = %d, want 1", n)
	}
	if n := e.proxy.Count(http.MethodGet, "/v1/secret/data/app/id/db"); n != 1 {
		t.Errorf("reads = %d, want 1 (shared for the cache TTL)", n)
	}
	// The same service account name in another namespace: its own login
	// (a TokenReview of its own token), never the team/app token.
	if got, _ := e.mount(e.request("team2", "a", "app", spc("app-team2", "- {objectName: pw, secretPath: secret/data/app/id/db, secretKey: password}"))); got["pw"] != "app-value" {
		t.Errorf("team2/app got %q", got["pw"])
	}
	if n := e.logins("kubernetes"); n != 2 {
		t.Errorf("logins after a pod of team2/app = %d, want 2 (one per namespace)", n)
	}
	// team2/app cannot borrow team/app's role: Vault's TokenReview check
	// refuses its token for role app (bound to namespace team).
	if _, err := e.b.Mount(t.Context(), e.request("team2", "b", "app", attrs)); !errors.Is(err, plugin.ErrUnauthenticated) {
		t.Errorf("team2/app with role app: %v, want unauthenticated", err)
	}
	// Another service account with its own role: the value cached for the
	// app identity is not served to it; Vault denies its own read.
	_, err := e.b.Mount(t.Context(), e.request("team", "x", "other", spc("other", "- {objectName: pw, secretPath: secret/data/app/id/db, secretKey: password}")))
	if !errors.Is(err, plugin.ErrPermissionDenied) || strings.Contains(err.Error(), "app-value") {
		t.Fatalf("other reading app's secret: %v, want permission denied", err)
	}
	// The other service account cannot log in with app's role.
	if _, err := e.b.Mount(t.Context(), e.request("team", "y", "other", attrs)); !errors.Is(err, plugin.ErrUnauthenticated) {
		t.Fatalf("other with role app: %v, want unauthenticated", err)
	}
	// A token for another audience is not used: fail closed.
	r := e.request("team", "z", "app", attrs)
	r.Tokens = map[string]plugin.Token{"sts.amazonaws.com": r.Tokens["vault"]}
	if _, err := e.b.Mount(t.Context(), r); !errors.Is(err, plugin.ErrUnauthenticated) {
		t.Fatalf("no vault-audience token: %v", err)
	}
	// A pod presenting another service account's token: fail closed
	// before any Vault call.
	r = e.request("team", "z", "app", attrs)
	r.Tokens = e.request("team", "z", "other", attrs).Tokens
	before := e.proxy.Count("", "/")
	if _, err := e.b.Mount(t.Context(), r); !errors.Is(err, plugin.ErrUnauthenticated) || e.proxy.Count("", "/") != before {
		t.Fatalf("token of another service account: %v (%d Vault calls)", err, e.proxy.Count("", "/")-before)
	}
}

// integrationTokenRenewed: a renewable Vault token is renewed when it
// nears expiry (renew-self), not replaced by a new login.
func integrationTokenRenewed(t *testing.T, sh *shared) {
	e := newRealEnv(t, sh, vault.BackendConfig{CacheTTL: 0})
	e.vault.PutKV(t, "secret", "app/renew/db", map[string]any{"password": "v"})
	attrs := spc("short", "- {objectName: pw, secretPath: secret/data/app/renew/db, secretKey: password}")
	e.mount(e.request("team", "p", "app", attrs))
	e.mount(e.request("team", "p", "app", attrs))
	if n, r := e.logins("kubernetes"), e.proxy.Count("", "/v1/auth/token/renew-self"); n != 1 || r != 0 {
		t.Fatalf("before the token nears expiry: %d logins, %d renewals; want 1, 0", n, r)
	}
	time.Sleep(7500 * time.Millisecond) // past 0.67 of the 10 s token TTL, well before it ends
	if got, _ := e.mount(e.request("team", "q", "app", attrs)); got["pw"] != "v" {
		t.Errorf("after renewal: %q", got["pw"])
	}
	if n, r := e.logins("kubernetes"), e.proxy.Count("", "/v1/auth/token/renew-self"); n != 1 || r != 1 {
		t.Errorf("after the token neared expiry: %d logins, %d renewals; want 1, 1 (renewed, not replaced)", n, r)
	}
}

func integrationJWTAuth(t *testing.T, sh *shared) {
	e := newRealEnv(t, sh, vault.BackendConfig{})
	e.vault.PutKV(t, "secret", "app/jwt/db", map[string]any{"password": "via-jwt"})
	attrs := spc("app", "- {objectName: pw, secretPath: secret/data/app/jwt/db, secretKey: password}")
	attrs[params.ParamAuthMountPath] = "jwt"
	if got, _ := e.mount(e.request("team", "p", "app", attrs)); got["pw"] != "via-jwt" {
		t.Errorf("got %q", got["pw"])
	}
	if n := e.logins("jwt"); n != 1 {
		t.Errorf("jwt logins = %d, want 1", n)
	}
	if _, err := e.b.Mount(t.Context(), e.request("team", "x", "other", attrs)); !errors.Is(err, plugin.ErrUnauthenticated) {
		t.Errorf("other service account through jwt role app: %v, want unauthenticated", err)
	}
}

func integrationDatabaseAcrossRotations(t *testing.T, sh *shared) {
	e := newRealEnv(t, sh, vault.BackendConfig{CacheTTL: time.Minute, RenewFraction: 0.5, ReissueFraction: 0.8})
	e.vault.DatabaseRole(t, "database", vaulttest.DBRole{Name: "rot", DefaultTTL: 6 * time.Second, MaxTTL: 15 * time.Second})
	attrs := spc("app",
		"- {objectName: user, secretPath: database/creds/rot, secretKey: username}",
		"- {objectName: pass, secretPath: database/creds/rot, secretKey: password}",
	)
	first, _ := e.mount(e.request("team", "p1", "app", attrs))
	if _, err := sh.pg.Query(t.Context(), first["user"], first["pass"], "SELECT 1"); err != nil {
		t.Fatalf("the mounted username and password do not log in (from different credentials?): %v", err)
	}
	second, _ := e.mount(e.request("team", "p2", "app", attrs))
	if second["user"] == first["user"] {
		t.Error("two pods share one database credential")
	}
	// Rotation every second: the same credential, renewed (every 3 s, half
	// its 6 s TTL, not on every poll) while the pod republishes, until 0.8
	// of the 15 s max TTL (12 s).
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
		if _, err := sh.pg.Query(t.Context(), got["user"], got["pass"], "SELECT 1"); err != nil {
			t.Fatalf("round %d: mounted credential does not work: %v", rounds, err)
		}
	}
	if changes != 1 {
		t.Errorf("credential changed %d times over %d rounds, want exactly once (near 0.8 of max TTL)", changes, rounds)
	}
	renewals := e.proxy.Count("", "/v1/sys/leases/renew")
	if renewals == 0 || renewals > rounds/2 {
		t.Errorf("lease renewals = %d over %d republishes; want some, and only when due (at most one every 2 polls)", renewals, rounds)
	}
	if n := e.proxy.Count(http.MethodGet, "/v1/database/creds/rot"); n != 3 {
		t.Errorf("credentials issued = %d, want 3 (p1, p2, p1 once more)", n)
	}
}

// syncRequest builds a mount as our SecretSync controller does (no pod,
// the SecretSync's name and UID), with a real token of sa.
func (e *realEnv) syncRequest(ns, name, uid, sa string, attrs map[string]string) *plugin.Request {
	e.t.Helper()
	r := syncRequest(e.t, ns, name, uid, sa, attrs)
	tok := vaulttest.ServiceAccountToken(e.t, e.sh.rc, ns, sa, time.Hour, "vault")
	r.Tokens = map[string]plugin.Token{"vault": {Token: tok, ExpirationTimestamp: time.Now().Add(time.Hour)}}
	return r
}

// integrationDatabasePerSecretSync: SecretSync mounts (no pod) of a real
// database role. Each SecretSync gets its own credential (a re-created
// one, same name and new UID, too); refreshed every second, one keeps its
// credential past the lease's first TTL because the refreshes renew it
// (PostgreSQL still accepts it); the one that stopped refreshing (its
// SecretSync deleted) is never renewed and Vault revokes it at its TTL.
func integrationDatabasePerSecretSync(t *testing.T, sh *shared) {
	e := newRealEnv(t, sh, vault.BackendConfig{CacheTTL: time.Minute, RenewFraction: 0.5, ReissueFraction: 0.8})
	const ttl = 5 * time.Second
	e.vault.DatabaseRole(t, "database", vaulttest.DBRole{Name: "ssync", DefaultTTL: ttl, MaxTTL: time.Minute})
	attrs := spc("app",
		"- {objectName: user, secretPath: database/creds/ssync, secretKey: username}",
		"- {objectName: pass, secretPath: database/creds/ssync, secretKey: password}",
	)
	mount := func(name, uid string) map[string]string {
		f, _ := e.mount(e.syncRequest("team", name, uid, "app", attrs))
		return f
	}
	deleted := mount("db", "uid-1")
	other := mount("db-other", "uid-2")
	current := mount("db", "uid-3") // "db" deleted and created again
	if deleted["user"] == current["user"] || other["user"] == current["user"] || other["user"] == deleted["user"] {
		t.Fatal("two SecretSyncs share a database credential")
	}
	start := time.Now()
	polls := 0
	for time.Since(start) < ttl+2*time.Second {
		time.Sleep(time.Second)
		polls++
		for _, c := range []struct {
			name, uid string
			want      map[string]string
		}{{"db", "uid-3", current}, {"db-other", "uid-2", other}} {
			if got := mount(c.name, c.uid); got["user"] != c.want["user"] || got["pass"] != c.want["pass"] {
				t.Fatalf("poll %d (%s): SecretSync %s got another credential", polls, time.Since(start).Round(time.Millisecond), c.name)
			}
		}
	}
	for _, f := range []map[string]string{current, other} {
		if _, err := sh.pg.Query(t.Context(), f["user"], f["pass"], "SELECT 1"); err != nil {
			t.Fatalf("a refreshed SecretSync's credential no longer logs in past its first %s TTL: %v", ttl, err)
		}
	}
	if n := e.proxy.Count(http.MethodGet, "/v1/database/creds/ssync"); n != 3 {
		t.Errorf("credentials issued = %d over %d polls of 2 SecretSyncs, want 3 (one per SecretSync)", n, polls)
	}
	if n := e.proxy.Count("", "/v1/sys/leases/renew"); n == 0 || n > polls {
		t.Errorf("lease renewals = %d over %d polls of 2 SecretSyncs; want some, and only when due", n, polls)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := sh.pg.Query(t.Context(), deleted["user"], deleted["pass"], "SELECT 1")
		if err != nil && len(e.vault.Leases(t, "database/creds/ssync")) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the deleted SecretSync's credential is still live %s after its last use (login err %v, %d leases, want 2)", time.Since(start).Round(time.Second), err, len(e.vault.Leases(t, "database/creds/ssync")))
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("%d polls of 2 SecretSyncs: %d credentials issued (3 SecretSyncs), %d lease renewals; the deleted SecretSync's credential was gone %s after it was issued",
		polls, e.proxy.Count(http.MethodGet, "/v1/database/creds/ssync"), e.proxy.Count("", "/v1/sys/leases/renew"), time.Since(start).Round(100*time.Millisecond))
}

func integrationLeaseRevokedByOperator(t *testing.T, sh *shared) {
	e := newRealEnv(t, sh, vault.BackendConfig{RenewFraction: 0.1})
	e.vault.DatabaseRole(t, "database", vaulttest.DBRole{Name: "revoked", DefaultTTL: 20 * time.Second, MaxTTL: time.Hour})
	attrs := spc("app", "- {objectName: user, secretPath: database/creds/revoked, secretKey: username}", "- {objectName: pass, secretPath: database/creds/revoked, secretKey: password}")
	first, _ := e.mount(e.request("team", "p", "app", attrs))
	e.vault.RevokePrefix(t, "database/creds/revoked")
	if _, err := sh.pg.Query(t.Context(), first["user"], first["pass"], "SELECT 1"); err == nil {
		t.Fatal("the revoked credential still logs in to PostgreSQL")
	}
	time.Sleep(2100 * time.Millisecond) // past 0.1 of the TTL: the next republish renews
	got, _ := e.mount(e.request("team", "p", "app", attrs))
	if got["user"] == first["user"] {
		t.Fatal("a revoked credential was served again")
	}
	if _, err := sh.pg.Query(t.Context(), got["user"], got["pass"], "SELECT 1"); err != nil {
		t.Fatalf("the new credential does not work: %v", err)
	}
}

func integrationPKI(t *testing.T, sh *shared) {
	e := newRealEnv(t, sh, vault.BackendConfig{})
	attrs := spc("app",
		"- {objectName: tls.crt, secretPath: pki/issue/web, method: PUT, secretArgs: {common_name: app.example.com}, secretKey: certificate}",
		"- {objectName: tls.key, secretPath: pki/issue/web, method: PUT, secretArgs: {common_name: app.example.com}, secretKey: private_key, filePermission: 0600}",
	)
	resp, err := e.b.Mount(t.Context(), e.request("team", "p", "app", attrs))
	if err != nil {
		t.Fatal(err)
	}
	got := files(t, resp)
	checkKeyPair(t, got["tls.crt"], got["tls.key"])
	if strings.Contains(got["tls.crt"], "PRIVATE KEY") || strings.Contains(got["tls.key"], "CERTIFICATE") {
		t.Error("certificate and key are not in separate files")
	}
	for _, f := range resp.Files {
		if f.Path == "tls.key" && f.Mode != 0o600 {
			t.Errorf("tls.key mode = %o, want 600", f.Mode)
		}
	}
	again, _ := e.mount(e.request("team", "p", "app", attrs))
	if again["tls.crt"] != got["tls.crt"] {
		t.Error("the certificate was re-issued on a republish")
	}
	other, _ := e.mount(e.request("team", "p2", "app", attrs))
	if other["tls.crt"] == got["tls.crt"] {
		t.Error("two pods share one certificate and key")
	}
	if n := e.proxy.Count(http.MethodPut, "/v1/pki/issue/web"); n != 2 {
		t.Errorf("issuances = %d, want 2 (one per pod)", n)
	}
	// Without a lease the certificate's own expiration keeps it for the
	// pod the same way.
	attrs = spc("app",
		"- {objectName: tls.crt, secretPath: pki/issue/web-nolease, method: PUT, secretArgs: {common_name: app.example.com}, secretKey: certificate}",
		"- {objectName: tls.key, secretPath: pki/issue/web-nolease, method: PUT, secretArgs: {common_name: app.example.com}, secretKey: private_key}",
	)
	got, _ = e.mount(e.request("team", "p", "app", attrs))
	checkKeyPair(t, got["tls.crt"], got["tls.key"])
	again, _ = e.mount(e.request("team", "p", "app", attrs))
	if again["tls.crt"] != got["tls.crt"] || again["tls.key"] != got["tls.key"] {
		t.Error("a certificate without a lease was re-issued on a republish")
	}
	if n := e.proxy.Count(http.MethodPut, "/v1/pki/issue/web-nolease"); n != 1 {
		t.Errorf("issuances without a lease = %d, want 1", n)
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

// integrationVersionsAcrossRestart: KV v2 objects carry Vault's version,
// which no restart changes; other objects carry a keyed hash, stable
// across provider processes that share the key (-version-key-file) and
// different under another key (a restart without the key file).
func integrationVersionsAcrossRestart(t *testing.T, sh *shared) {
	sh.vault.PutKV(t, "kv1", "app/versions/c", map[string]any{"mode": "m"})
	sh.vault.PutKV(t, "secret", "app/versions/d", map[string]any{"k": "v"})
	attrs := spc("app", "- {objectName: v1, secretPath: kv1/app/versions/c, secretKey: mode}", "- {objectName: v2, secretPath: secret/data/app/versions/d, secretKey: k}")
	key := []byte("0123456789abcdef0123456789abcdef")
	versions := func(key []byte) map[string]string {
		e := newRealEnv(t, sh, vault.BackendConfig{VersionKey: key})
		_, vs := e.mount(e.request("team", "p", "app", attrs))
		return vs
	}
	a, b, random := versions(key), versions(key), versions(nil)
	if a["v1"] != b["v1"] || !strings.HasPrefix(a["v1"], "hmac-") {
		t.Errorf("KV v1 versions under one key: %q, %q; want equal keyed hashes", a["v1"], b["v1"])
	}
	if random["v1"] == a["v1"] {
		t.Error("a provider with another key computed the same hash: the hash is not keyed")
	}
	if a["v2"] != "1" || random["v2"] != "1" {
		t.Errorf("KV v2 versions = %q, %q; want Vault's metadata version 1", a["v2"], random["v2"])
	}
	if strings.Contains(a["v1"], "m") && len(a["v1"]) < 10 {
		t.Errorf("version %q looks like the value", a["v1"])
	}
}

// integrationConfinedTLSFiles: the SecretProviderClass's TLS files are
// read only from the allow-listed directory, and work against Vault's
// HTTPS listener from there.
func integrationConfinedTLSFiles(t *testing.T, sh *shared) {
	allowed := t.TempDir()
	if err := os.WriteFile(filepath.Join(allowed, "ca.crt"), sh.vault.CACertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "ca.crt"), sh.vault.CACertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "ca.crt"), filepath.Join(allowed, "link.crt")); err != nil {
		t.Fatal(err)
	}
	b, err := vault.NewBackend(vault.BackendConfig{Defaults: params.Defaults{TLSFileDir: allowed, AllowedAddresses: []string{sh.vault.Addr}}})
	if err != nil {
		t.Fatal(err)
	}
	e := &realEnv{t: t, sh: sh, vault: sh.vault, b: b}
	sh.vault.PutKV(t, "secret", "app/tls/db", map[string]any{"password": "over-https"})
	attrs := func(ca string) map[string]string {
		a := spc("app", "- {objectName: pw, secretPath: secret/data/app/tls/db, secretKey: password}")
		a[params.ParamVaultAddress] = sh.vault.Addr
		if ca != "" {
			a[params.ParamCACertPath] = ca
		}
		return a
	}
	if got, _ := e.mount(e.request("team", "p", "app", attrs(filepath.Join(allowed, "ca.crt")))); got["pw"] != "over-https" {
		t.Errorf("got %q", got["pw"])
	}
	for name, ca := range map[string]string{"outside": filepath.Join(outside, "ca.crt"), "symlink out": filepath.Join(allowed, "link.crt")} {
		_, err := b.Mount(t.Context(), e.request("team", "p", "app", attrs(ca)))
		if !errors.Is(err, plugin.ErrInvalidParameters) || !strings.Contains(err.Error(), params.ParamCACertPath) || strings.Contains(err.Error(), "BEGIN") {
			t.Errorf("%s: err = %v, want InvalidArgument naming %s", name, err, params.ParamCACertPath)
		}
	}
	// Without the CA, Vault's certificate is not trusted.
	if _, err := b.Mount(t.Context(), e.request("team", "p", "app", attrs(""))); err == nil {
		t.Error("Vault's certificate was trusted without its CA")
	}
}

// integrationVaultAddressAllowList: a host that relays what it receives
// to the real Vault (a second proxy) can replay the pod's token there
// when the provider lets vaultAddress name any host; with the operator's
// allow-list the mount is refused InvalidArgument and that host receives
// nothing.
func integrationVaultAddressAllowList(t *testing.T, sh *shared) {
	relay := sh.vault.FaultProxy(t)
	sh.vault.PutKV(t, "secret", "app/allow/db", map[string]any{"password": "allowed-only"})
	attrs := spc("app", "- {objectName: pw, secretPath: secret/data/app/allow/db, secretKey: password}")
	attrs[params.ParamVaultAddress] = relay.Addr

	e := newRealEnv(t, sh, vault.BackendConfig{})
	r := e.request("team", "p", "app", attrs)
	_, err := e.b.Mount(t.Context(), r)
	if code, _ := plugin.Classify(err); code != codes.InvalidArgument || !strings.Contains(err.Error(), params.ParamVaultAddress) {
		t.Fatalf("err = %v (%v), want InvalidArgument naming %s", err, code, params.ParamVaultAddress)
	}
	if strings.Contains(err.Error(), r.Tokens["vault"].Token) || strings.Contains(err.Error(), relay.Addr) {
		t.Errorf("error quotes the token or the address: %v", err)
	}
	if n := relay.Count("", ""); n != 0 {
		t.Errorf("the refused address received %d requests", n)
	}
	// The provider's own address (e's proxy), spelled with a trailing slash, still works.
	own := spc("app", "- {objectName: pw, secretPath: secret/data/app/allow/db, secretKey: password}")
	own[params.ParamVaultAddress] = e.proxy.Addr + "/"
	if got, _ := e.mount(e.request("team", "p", "app", own)); got["pw"] != "allowed-only" {
		t.Errorf("own address: %q", got["pw"])
	}

	// What the control prevents: with any address allowed, the relay
	// receives the pod's token and its login against the real Vault works.
	open := newRealEnv(t, sh, vault.BackendConfig{Defaults: params.Defaults{AnyAddress: true}})
	if got, _ := open.mount(open.request("team", "p", "app", attrs)); got["pw"] != "allowed-only" {
		t.Errorf("through the relay: %q", got["pw"])
	}
	if n := relay.Count("PUT", "/v1/auth/kubernetes/login") + relay.Count("POST", "/v1/auth/kubernetes/login"); n != 1 {
		t.Errorf("the relay saw %d logins, want 1", n)
	}
	// Listed by the operator: allowed.
	relay.Reset()
	listed := newRealEnv(t, sh, vault.BackendConfig{Defaults: params.Defaults{AllowedAddresses: []string{relay.Addr}}})
	if got, _ := listed.mount(listed.request("team", "p2", "app", attrs)); got["pw"] != "allowed-only" {
		t.Errorf("listed address: %q", got["pw"])
	}
}

func integrationFaults(t *testing.T, sh *shared) {
	e := newRealEnv(t, sh, vault.BackendConfig{CacheTTL: 0})
	e.vault.PutKV(t, "secret", "app/faults/db", map[string]any{"password": "v"})
	attrs := spc("app", "- {objectName: pw, secretPath: secret/data/app/faults/db, secretKey: password}")
	e.mount(e.request("team", "p", "app", attrs))

	t.Run("5xx", func(t *testing.T) {
		e.proxy.FailNext("/v1/secret/", http.StatusInternalServerError, 1)
		_, err := e.b.Mount(t.Context(), e.request("team", "p", "app", attrs))
		if !errors.Is(err, plugin.ErrUnavailable) || !strings.Contains(err.Error(), "500") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("403 then exactly one re-login", func(t *testing.T) {
		time.Sleep(5 * time.Second) // the cached token is no longer fresh
		e.proxy.Reset()
		e.vault.RevokePrefix(t, "auth/kubernetes/login") // an operator revokes the provider's tokens
		reqs := map[string]*plugin.Request{}
		for _, pod := range []string{"q1", "q2", "q3", "q4", "q5", "q6"} {
			reqs[pod] = e.request("team", pod, "app", attrs)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		got := map[string]string{}
		for pod, r := range reqs {
			wg.Go(func() {
				resp, err := e.b.Mount(t.Context(), r)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					got[pod] = err.Error()
					return
				}
				got[pod] = files(t, resp)["pw"]
			})
		}
		wg.Wait()
		for pod, v := range got {
			if v != "v" {
				t.Errorf("%s got %q", pod, v)
			}
		}
		if n := e.logins("kubernetes"); n != 1 {
			t.Errorf("re-logins for 6 concurrent mounts that saw the revoked token = %d, want 1", n)
		}
		if n := e.proxy.Count("", "/v1/secret/"); n < 7 {
			t.Errorf("reads = %d; the concurrent mounts did not all see the 403", n)
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
		e.vault.DatabaseRole(t, "database", vaulttest.DBRole{Name: "down", DefaultTTL: 10 * time.Second, MaxTTL: time.Hour})
		dyn := spc("app", "- {objectName: user, secretPath: database/creds/down, secretKey: username}")
		first, _ := e.mount(e.request("team", "d", "app", dyn))
		time.Sleep(5500 * time.Millisecond) // past half the lease: the next republish renews
		e.vault.Down(t)
		_, err := e.b.Mount(t.Context(), e.request("team", "p", "app", attrs))
		if !errors.Is(err, plugin.ErrUnavailable) {
			e.vault.Up(t)
			t.Fatalf("KV read with Vault down: %v, want unavailable (the driver keeps the last files)", err)
		}
		// A dynamic secret whose renewal fails because Vault is down is
		// served as it is while its lease is valid (last good kept).
		got, _ := e.mount(e.request("team", "d", "app", dyn))
		e.vault.Up(t)
		if got["user"] != first["user"] {
			t.Errorf("dynamic secret with Vault down = %q, want the still-valid %q", got["user"], first["user"])
		}
		// Back up: the same credential is renewed, not re-issued.
		got, _ = e.mount(e.request("team", "d", "app", dyn))
		if got["user"] != first["user"] {
			t.Errorf("after Vault came back: %q, want %q renewed", got["user"], first["user"])
		}
		if n := e.proxy.Count("", "/v1/database/creds/down"); n != 1 {
			t.Errorf("credentials issued = %d, want 1", n)
		}
	})
}
