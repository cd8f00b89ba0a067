package vault_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

// fakeVault is an httptest stand-in for the parts of the Vault HTTP API
// the provider uses, for unit tests of this package only; the
// integration tests run against a real Vault. Logins accept a JWT whose
// subject is bound to the role; tokens are scoped to that role's paths.
type fakeVault struct {
	t     *testing.T
	srv   *httptest.Server
	clock *clocktesting.FakeClock

	mu         sync.Mutex                  // guards everything below
	roles      map[string]string           // role -> allowed subject
	policies   map[string][]string         // role -> path prefixes readable
	tokens     map[string]fakeToken        // token -> state
	kv         map[string]map[string]any   // KV v1 path -> data
	kv2        map[string][]map[string]any // KV v2 path (after data/) -> versions
	leases     map[string]time.Time        // lease id -> expiry
	leaseMax   map[string]time.Time        // lease id -> max expiry
	calls      map[string]int              // "login", "read <path>", "renew-lease", ...
	forbidNext map[string]int              // path -> 403s to answer regardless of token
	fail       int                         // next n requests answer 503
	sealed     bool
	seq        int
	credTTL    time.Duration
	credMax    time.Duration
	tokenTTL   time.Duration
}

type fakeToken struct {
	role string
	// namespace is the X-Vault-Namespace of the login: as in Vault
	// Enterprise, the token is unknown in any other namespace.
	namespace string
	expires   time.Time
	revoked   bool
}

func newFakeVault(t *testing.T, clk *clocktesting.FakeClock) *fakeVault {
	f := &fakeVault{
		t: t, clock: clk,
		roles: map[string]string{}, policies: map[string][]string{}, tokens: map[string]fakeToken{},
		kv: map[string]map[string]any{}, kv2: map[string][]map[string]any{}, leases: map[string]time.Time{},
		leaseMax: map[string]time.Time{}, calls: map[string]int{}, forbidNext: map[string]int{},
		credTTL: time.Hour, credMax: 24 * time.Hour, tokenTTL: time.Hour,
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeVault) role(name, ns, sa string, prefixes ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.roles[name] = "system:serviceaccount:" + ns + ":" + sa
	f.policies[name] = prefixes
}

func (f *fakeVault) putKV2(path string, data map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kv2[path] = append(f.kv2[path], data)
}

func (f *fakeVault) putKV1(path string, data map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kv[path] = data
}

func (f *fakeVault) count(k string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[k]
}

func (f *fakeVault) revokeAllLeases() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leases = map[string]time.Time{}
}

func (f *fakeVault) revokeTokens() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, v := range f.tokens {
		v.revoked = true
		f.tokens[k] = v
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func vaultErr(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"errors": []string{msg}})
}

func (f *fakeVault) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	path := strings.TrimPrefix(r.URL.Path, "/v1/")
	body, _ := io.ReadAll(r.Body)
	if f.sealed {
		vaultErr(w, 503, "Vault is sealed")
		return
	}
	if f.fail > 0 {
		f.fail--
		vaultErr(w, 503, "injected")
		return
	}
	now := f.clock.Now()
	if strings.HasPrefix(path, "auth/") && strings.HasSuffix(path, "/login") {
		f.calls["login"]++
		var in struct{ Role, JWT string }
		_ = json.Unmarshal(body, &in)
		sub := jwtSubject(in.JWT)
		if want, ok := f.roles[in.Role]; !ok || want != sub {
			vaultErr(w, 403, "permission denied")
			return
		}
		f.seq++
		tok := fmt.Sprintf("hvs.fake-%d", f.seq)
		f.tokens[tok] = fakeToken{role: in.Role, namespace: r.Header.Get("X-Vault-Namespace"), expires: now.Add(f.tokenTTL)}
		writeJSON(w, 200, map[string]any{"auth": map[string]any{"client_token": tok, "lease_duration": int(f.tokenTTL.Seconds()), "renewable": true}})
		return
	}
	tok, ok := f.tokens[r.Header.Get("X-Vault-Token")]
	if !ok || tok.revoked || !now.Before(tok.expires) || tok.namespace != r.Header.Get("X-Vault-Namespace") {
		f.calls["denied"]++
		vaultErr(w, 403, "permission denied")
		return
	}
	switch {
	case path == "auth/token/renew-self":
		f.calls["renew-token"]++
		tok.expires = now.Add(f.tokenTTL)
		f.tokens[r.Header.Get("X-Vault-Token")] = tok
		writeJSON(w, 200, map[string]any{"auth": map[string]any{"client_token": r.Header.Get("X-Vault-Token"), "lease_duration": int(f.tokenTTL.Seconds()), "renewable": true}})
		return
	case path == "sys/leases/renew":
		f.calls["renew-lease"]++
		var in struct {
			LeaseID   string `json:"lease_id"`
			Increment int    `json:"increment"`
		}
		_ = json.Unmarshal(body, &in)
		f.calls["renew "+in.LeaseID]++
		exp, ok := f.leases[in.LeaseID]
		if !ok || !now.Before(exp) {
			vaultErr(w, 400, "lease not found")
			return
		}
		ttl := time.Duration(in.Increment) * time.Second
		if max := f.leaseMax[in.LeaseID]; now.Add(ttl).After(max) {
			ttl = max.Sub(now)
		}
		f.leases[in.LeaseID] = now.Add(ttl)
		writeJSON(w, 200, map[string]any{"lease_id": in.LeaseID, "lease_duration": int(ttl.Seconds()), "renewable": true})
		return
	}
	f.calls[r.Method+" "+path]++
	if n := f.forbidNext[path]; n > 0 {
		f.forbidNext[path] = n - 1
		vaultErr(w, 403, "permission denied")
		return
	}
	allowed := false
	for _, p := range f.policies[tok.role] {
		if strings.HasPrefix(path, p) {
			allowed = true
		}
	}
	if !allowed {
		vaultErr(w, 403, "1 error occurred: permission denied")
		return
	}
	switch {
	case strings.HasPrefix(path, "secret/data/"):
		versions := f.kv2[strings.TrimPrefix(path, "secret/data/")]
		if len(versions) == 0 {
			writeJSON(w, 404, map[string]any{"errors": []string{}})
			return
		}
		v := len(versions)
		if q := r.URL.Query().Get("version"); q != "" && q != "0" {
			fmt.Sscan(q, &v)
			if v < 1 || v > len(versions) {
				writeJSON(w, 404, map[string]any{"errors": []string{}})
				return
			}
		}
		writeJSON(w, 200, map[string]any{"request_id": "r", "lease_id": "", "lease_duration": 0, "renewable": false,
			"data": map[string]any{"data": versions[v-1], "metadata": map[string]any{"version": v, "created_time": "2026-01-01T00:00:00Z"}}})
	case strings.HasPrefix(path, "kv/"):
		d, ok := f.kv[strings.TrimPrefix(path, "kv/")]
		if !ok {
			writeJSON(w, 404, map[string]any{"errors": []string{}})
			return
		}
		writeJSON(w, 200, map[string]any{"request_id": "r", "lease_duration": 2764800, "data": d})
	case strings.HasPrefix(path, "database/creds/"):
		f.seq++
		id := fmt.Sprintf("database/creds/x/%d", f.seq)
		f.leases[id] = now.Add(f.credTTL)
		f.leaseMax[id] = now.Add(f.credMax)
		writeJSON(w, 200, map[string]any{"request_id": "r", "lease_id": id, "lease_duration": int(f.credTTL.Seconds()), "renewable": true,
			"data": map[string]any{"username": fmt.Sprintf("v-user-%d", f.seq), "password": fmt.Sprintf("pw-%d", f.seq)}})
	case strings.HasPrefix(path, "pki/issue/"):
		if r.Method == http.MethodGet {
			vaultErr(w, 405, "unsupported operation")
			return
		}
		f.seq++
		writeJSON(w, 200, map[string]any{"request_id": "r", "data": map[string]any{
			"certificate": fmt.Sprintf("-----BEGIN CERTIFICATE-----\ncert-%d\n-----END CERTIFICATE-----", f.seq),
			"private_key": fmt.Sprintf("-----BEGIN RSA PRIVATE KEY-----\nkey-%d\n-----END RSA PRIVATE KEY-----", f.seq),
			"issuing_ca":  "ca", "serial_number": fmt.Sprintf("%02d", f.seq), "expiration": now.Add(10 * time.Hour).Unix(), "private_key_type": "rsa",
			"body": string(body),
		}})
	default:
		writeJSON(w, 404, map[string]any{"errors": []string{}})
	}
}

func jwtSubject(tok string) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct{ Sub string }
	_ = json.Unmarshal(b, &c)
	return c.Sub
}
