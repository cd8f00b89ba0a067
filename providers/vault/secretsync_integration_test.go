//go:build integration

package vault_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/sscsi/secrets-store/providers/plugin"
	"github.com/sscsi/secrets-store/providers/vault"
	"github.com/sscsi/secrets-store/synccontroller"
	"github.com/sscsi/secrets-store/test/driverharness"
	"github.com/sscsi/secrets-store/test/vaulttest"
)

// running is a component run in the background until stop (a provider
// server or a SecretSync controller instance).
type running struct {
	name   string
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, name string, run func(context.Context) error) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	r := &running{name: name, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- run(ctx) }()
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	if err := <-r.done; err != nil {
		t.Errorf("%s: %v", r.name, err)
	}
}

// startProvider serves provider-vault on sock with a backend of its own
// (so its lease keeper starts empty, as a restarted sidecar's does).
func startProvider(t *testing.T, sock string, cfg vault.BackendConfig) *running {
	t.Helper()
	b, err := vault.NewBackend(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := plugin.New(plugin.Config{Name: "vault", Version: "test", Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	return start(t, "provider-vault", func(ctx context.Context) error { return srv.Serve(ctx, sock) })
}

// startController runs one instance of the SecretSync controller.
func startController(t *testing.T, cfg synccontroller.Config) *running {
	t.Helper()
	return start(t, "SecretSync controller", func(ctx context.Context) error { return synccontroller.Run(ctx, cfg) })
}

// integrationSecretSyncRestarts runs the real SecretSync controller
// against provider-vault (gRPC over a unix socket) for one SecretSync that
// syncs a KV v2 value and a database credential, and restarts each:
//   - a new controller instance (the provider keeps running): the same
//     credential, still renewed by the new instance's refreshes, 1 lease;
//   - a new provider (its lease keeper empty, as after a sidecar
//     restart): exactly one new credential for the SecretSync; the old
//     lease is renewed no more and Vault expires it (PostgreSQL refuses
//     it), while the new one is served and works.
//
// Every step waits for a condition: a KV update reaching the Secret shows
// that a refresh after the restart went through the provider.
func integrationSecretSyncRestarts(t *testing.T, sh *shared) {
	ctx := t.Context()
	const (
		ns, sa, ssName = "team", "app", "db-restarts"
		role           = "ssrestart"
		ttl            = 8 * time.Second
		poll           = time.Second // below half the lease TTL, as docs/providers/vault.md asks
	)
	if err := driverharness.InstallCRDs(ctx, sh.rc); err != nil {
		t.Fatal(err)
	}
	vaulttest.ServiceAccountToken(t, sh.rc, ns, sa, time.Hour, "vault") // namespace and service account
	sh.vault.DatabaseRole(t, "database", vaulttest.DBRole{Name: role, DefaultTTL: ttl, MaxTTL: time.Hour})
	kvPath := "app/" + role + "/config"
	sh.vault.PutKV(t, "secret", kvPath, map[string]any{"api-key": "k1"})

	proxy := sh.vault.FaultProxy(t)
	bcfg := vault.BackendConfig{CacheTTL: 0} // every refresh reads KV: its update shows the refresh went through
	bcfg.Defaults.Connection.Address = proxy.Addr
	dir, err := os.MkdirTemp("", "sscsi-vault-") // short: unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "vault.sock")
	provider := startProvider(t, sock, bcfg)
	defer func() { provider.stop(t) }()
	ccfg := synccontroller.Config{RESTConfig: sh.rc, ProviderDirs: []string{dir}, RotationPollInterval: poll, TokenRequestAudiences: []string{"vault"}, Workers: 2}
	ctrl := startController(t, ccfg)
	defer func() { ctrl.stop(t) }()

	dyn := dynamic.NewForConfigOrDie(sh.rc)
	create := func(gvr schema.GroupVersionResource, doc string) {
		t.Helper()
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatal(err)
		}
		if _, err := dyn.Resource(gvr).Namespace(ns).Create(ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s: %v", gvr.Resource, err)
		}
	}
	create(schema.GroupVersionResource{Group: "secrets-store.csi.x-k8s.io", Version: "v1", Resource: "secretproviderclasses"}, fmt.Sprintf(`
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {name: %[1]s}
spec:
  provider: vault
  parameters:
    roleName: app
    audience: vault
    objects: |
      - {objectName: api-key, secretPath: secret/data/%[2]s, secretKey: api-key}
      - {objectName: username, secretPath: database/creds/%[1]s, secretKey: username}
      - {objectName: password, secretPath: database/creds/%[1]s, secretKey: password}
`, role, kvPath))
	create(schema.GroupVersionResource{Group: "secret-sync.x-k8s.io", Version: "v1alpha1", Resource: "secretsyncs"}, fmt.Sprintf(`
apiVersion: secret-sync.x-k8s.io/v1alpha1
kind: SecretSync
metadata: {name: %s}
spec:
  serviceAccountName: %s
  secretProviderClassName: %s
  secretObject:
    data:
    - {sourcePath: api-key, targetKey: api-key}
    - {sourcePath: username, targetKey: username}
    - {sourcePath: password, targetKey: password}
`, ssName, sa, role))

	core := kubernetes.NewForConfigOrDie(sh.rc)
	// synced waits until the Secret carries apiKey (a refresh after the
	// KV update went through the provider) and returns its credential.
	synced := func(apiKey, after string) (user, pass string) {
		t.Helper()
		var last string
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			s, err := core.CoreV1().Secrets(ns).Get(ctx, ssName, metav1.GetOptions{})
			if err != nil {
				last = err.Error()
				return false, nil
			}
			user, pass = string(s.Data["username"]), string(s.Data["password"])
			return string(s.Data["api-key"]) == apiKey, nil
		})
		if err != nil {
			ss, _ := dyn.Resource(schema.GroupVersionResource{Group: "secret-sync.x-k8s.io", Version: "v1alpha1", Resource: "secretsyncs"}).Namespace(ns).Get(ctx, ssName, metav1.GetOptions{})
			var status any
			if ss != nil {
				status = ss.Object["status"]
			}
			t.Fatalf("%s: the Secret did not follow the KV update within a minute (%v; last error %q; SecretSync status %v)", after, err, last, status)
		}
		return user, pass
	}
	issued := func() int { return proxy.Count(http.MethodGet, "/v1/database/creds/"+role) }
	renewals := func() int { return proxy.Count("", "/v1/sys/leases/renew") }
	leases := func() []string { return sh.vault.Leases(t, "database/creds/"+role) }
	logsIn := func(user, pass string) error {
		_, err := sh.pg.Query(ctx, user, pass, "SELECT 1")
		return err
	}
	waitFor := func(what string, timeout time.Duration, cond func() bool) {
		t.Helper()
		if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) { return cond(), nil }); err != nil {
			t.Fatalf("%s: not within %s", what, timeout)
		}
	}

	user1, pass1 := synced("k1", "first sync")
	if err := logsIn(user1, pass1); err != nil {
		t.Fatalf("the synced credential does not log in to PostgreSQL: %v", err)
	}
	if n, l := issued(), leases(); n != 1 || len(l) != 1 {
		t.Fatalf("first sync: %d credentials issued, %d leases; want 1, 1", n, len(l))
	}
	oldLease := leases()[0]

	// 1. The controller restarts; provider-vault keeps running.
	ctrl.stop(t)
	restart := time.Now()
	ctrl = startController(t, ccfg)
	sh.vault.PutKV(t, "secret", kvPath, map[string]any{"api-key": "k2"})
	if u, p := synced("k2", "after the controller's restart"); u != user1 || p != pass1 {
		t.Fatal("a new SecretSync controller instance got a new database credential; the provider keeps it per SecretSync (namespace, name, UID)")
	}
	// The new instance's refreshes keep renewing it (at half its TTL).
	before := renewals()
	waitFor("a lease renewal from the new controller instance's refreshes", 3*ttl, func() bool { return renewals() > before })
	if n, l := issued(), leases(); n != 1 || len(l) != 1 {
		t.Fatalf("after the controller's restart: %d credentials issued, %d leases; want 1, 1", n, len(l))
	}
	t.Logf("controller restarted: same credential, 1 lease, renewed %s after the restart", time.Since(restart).Round(100*time.Millisecond))

	// 2. provider-vault restarts: a new process has an empty lease keeper.
	provider.stop(t)
	restart = time.Now()
	expiry, ok := lookupLease(t, sh.vault, oldLease)
	if !ok {
		t.Fatal("the old lease is gone right after the provider's restart; the SecretSync's refreshes did not keep it")
	}
	provider = startProvider(t, sock, bcfg)
	sh.vault.PutKV(t, "secret", kvPath, map[string]any{"api-key": "k3"})
	user2, pass2 := synced("k3", "after provider-vault's restart")
	if user2 == user1 {
		t.Fatal("a provider with an empty lease keeper served the old credential")
	}
	if err := logsIn(user2, pass2); err != nil {
		t.Fatalf("the new credential does not log in to PostgreSQL: %v", err)
	}
	if n := issued(); n != 2 {
		t.Fatalf("after provider-vault's restart: %d credentials issued, want 2 (one new for the SecretSync)", n)
	}
	// The old lease is not renewed any more (its expiry stays) and Vault
	// revokes it at that expiry; the refreshes go on serving the new one.
	waitFor("the old credential's lease to expire", time.Until(expiry)+30*time.Second, func() bool {
		if at, ok := lookupLease(t, sh.vault, oldLease); ok && !at.Equal(expiry) {
			t.Fatalf("the old lease was renewed after the provider's restart (expiry %s -> %s)", expiry, at)
		}
		l := leases()
		return len(l) == 1 && l[0] != oldLease
	})
	if err := logsIn(user1, pass1); err == nil {
		t.Error("the old credential still logs in to PostgreSQL after its lease expired")
	}
	sh.vault.PutKV(t, "secret", kvPath, map[string]any{"api-key": "k4"})
	if u, _ := synced("k4", "after the old lease expired"); u != user2 {
		t.Error("the SecretSync's credential changed again")
	}
	if err := logsIn(user2, pass2); err != nil {
		t.Errorf("the new credential no longer logs in: %v", err)
	}
	if n := issued(); n != 2 {
		t.Errorf("credentials issued = %d, want 2 (one per provider process)", n)
	}
	t.Logf("provider restarted: one new credential; the old lease expired %s after the restart (TTL %s), unrenewed", time.Since(restart).Round(100*time.Millisecond), ttl)
}

// lookupLease is when Vault will expire leaseID unless it is renewed;
// false once the lease is gone.
func lookupLease(t *testing.T, v *vaulttest.Server, leaseID string) (time.Time, bool) {
	t.Helper()
	s, err := v.Client(t).Logical().WriteWithContext(t.Context(), "sys/leases/lookup", map[string]any{"lease_id": leaseID})
	if err != nil || s == nil {
		return time.Time{}, false // expired and revoked (Vault answers 400 "invalid lease")
	}
	exp, _ := s.Data["expire_time"].(string)
	at, err := time.Parse(time.RFC3339Nano, exp)
	if err != nil {
		t.Fatalf("lease lookup: expire_time %q: %v", exp, err)
	}
	return at, true
}

// integrationOwnerlessLeasedRead: a mount without an owner (upstream's
// SecretSync controller: no pod UID, no SecretSync key) that names a
// database credential is refused before Vault issues one: the provider
// asks Vault which engine serves the path (sys/internal/ui/mounts, once
// per identity and mount) and refuses a read of database/creds/. KV and
// the PKI CA still read without an owner; an identity that Vault does
// not let see the mount gets Vault's own answer to the read
// (PermissionDenied); mounts with an owner make no lookup.
func integrationOwnerlessLeasedRead(t *testing.T, sh *shared) {
	e := newRealEnv(t, sh, vault.BackendConfig{CacheTTL: vault.DefaultCacheTTL})
	e.vault.DatabaseRole(t, "database", vaulttest.DBRole{Name: "ownerless"})
	e.vault.PutKV(t, "secret", "app/ownerless/config", map[string]any{"api-key": "kv-without-owner"})
	noOwner := func(sa string, attrs map[string]string) *plugin.Request {
		r := e.syncRequest("team", "", "", sa, attrs)
		if r.Pod.UID != "" || r.SecretSync != (plugin.SecretSync{}) {
			t.Fatalf("request names an owner: %+v %+v", r.Pod, r.SecretSync)
		}
		return r
	}
	lookups := func() int { return e.proxy.Count(http.MethodGet, "/v1/sys/internal/ui/mounts/") }
	issued := func() int { return e.proxy.Count("", "/v1/database/creds/ownerless") }
	db := spc("app", "- {objectName: user, secretPath: database/creds/ownerless, secretKey: username}")
	for i := range 3 {
		_, err := e.b.Mount(t.Context(), noOwner("app", db))
		if !errors.Is(err, plugin.ErrUnauthenticated) || !strings.Contains(err.Error(), `object "user"`) || !strings.Contains(err.Error(), "database") || !strings.Contains(err.Error(), "neither a pod") {
			t.Fatalf("attempt %d: err = %v, want Unauthenticated naming the object, the engine and the missing owner", i, err)
		}
	}
	if n := issued(); n != 0 {
		t.Errorf("credentials issued for 3 ownerless mounts = %d, want 0 (refused before the read)", n)
	}
	if l := e.vault.Leases(t, "database/creds/ownerless"); len(l) != 0 {
		t.Errorf("Vault holds %d leases of the refused role, want 0", len(l))
	}
	if n := lookups(); n != 1 {
		t.Errorf("engine lookups = %d over 3 mounts, want 1 (once per identity and mount)", n)
	}

	// Without an owner, KV and the PKI CA (no lease) are read as before.
	kv := spc("app",
		"- {objectName: api-key, secretPath: secret/data/app/ownerless/config, secretKey: api-key}",
		"- {objectName: ca, secretPath: pki/cert/ca, secretKey: certificate}",
	)
	for range 2 {
		resp, err := e.b.Mount(t.Context(), noOwner("app", kv))
		if err != nil {
			t.Fatalf("KV and PKI CA without an owner: %v", err)
		}
		got := files(t, resp)
		if got["api-key"] != "kv-without-owner" || !strings.Contains(got["ca"], "BEGIN CERTIFICATE") {
			t.Fatalf("KV and PKI CA without an owner: api-key %q, ca %.30q", got["api-key"], got["ca"])
		}
	}
	if n := lookups(); n != 3 {
		t.Errorf("engine lookups = %d, want 3 (one more for each of the secret and pki mounts, then none)", n)
	}

	// An identity that may not see the mount: Vault's answer to the read
	// (the lookup is refused, the read is sent and denied).
	other := spc("other", "- {objectName: user, secretPath: database/creds/ownerless, secretKey: username}")
	if _, err := e.b.Mount(t.Context(), noOwner("other", other)); !errors.Is(err, plugin.ErrPermissionDenied) {
		t.Errorf("ownerless read by an identity without access: %v, want PermissionDenied", err)
	}
	if l := e.vault.Leases(t, "database/creds/ownerless"); len(l) != 0 {
		t.Errorf("Vault holds %d leases of the role after a denied read, want 0", len(l))
	}

	// With an owner nothing is looked up, and the pod gets its credential.
	before, issuedBefore := lookups(), issued()
	if got, _ := e.mount(e.request("team", "p", "app", db)); got["user"] == "" {
		t.Errorf("pod mount: %v", got)
	}
	if n := lookups(); n != before {
		t.Errorf("a pod's mount made %d engine lookups, want 0", n-before)
	}
	if n, l := issued()-issuedBefore, e.vault.Leases(t, "database/creds/ownerless"); n != 1 || len(l) != 1 {
		t.Errorf("the pod's mount: %d credentials issued, %d leases; want 1, 1", n, len(l))
	}
}
