//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sscsi/secrets-store/test/e2e/framework"
	"github.com/sscsi/secrets-store/test/vaulttest"
)

// vaultRotations is how many rotation rounds the database credential must survive unchanged.
const vaultRotations = 3

// localVault is what test/vault/localvault (started by test/cluster/up.sh) wrote to info.json.
type localVault struct {
	Address   string `json:"address"`
	RootToken string `json:"root_token"`
	PGHost    string `json:"pg_host"`
	PGPort    int    `json:"pg_port"`
}

func readLocalVault(t *testing.T) localVault {
	t.Helper()
	path := os.Getenv("SSCSI_VAULT_INFO")
	if path == "" {
		path = "/var/lib/sscsi-cluster/vault/info.json"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the local node's Vault is not running (test/cluster/up.sh starts it with SSCSI_VAULT=1, which test/e2e/run.sh sets): %v", err)
	}
	var v localVault
	if err := json.Unmarshal(b, &v); err != nil || v.Address == "" || v.RootToken == "" {
		t.Fatalf("%s: unreadable (%v)", path, err)
	}
	return v
}

// vaultTenant is one e2e test's own part of the local node's Vault: namespace ns with service
// account "app", and a policy and kubernetes role named ns that give that service account (only)
// its KV path secret/data/<ns>/* and, when the test has one, the database role ns.
type vaultTenant struct {
	lv localVault
	v  *vaulttest.Server
	pg *vaulttest.Postgres
	ns string
}

// newVaultTenant creates a namespace from prefix and the tenant's service account, policy and
// kubernetes role; with dbTTL > 0 also a database role of that default TTL (max 1 h).
func newVaultTenant(t *testing.T, prefix string, dbTTL time.Duration) vaultTenant {
	t.Helper()
	lv := readLocalVault(t)
	vt := vaultTenant{
		lv: lv,
		v:  vaulttest.Connect(t, lv.Address, lv.RootToken, nil),
		pg: &vaulttest.Postgres{Host: lv.PGHost, Port: lv.PGPort, Database: "postgres"},
		ns: fw.Namespace(t, prefix),
	}
	ns := vt.ns
	if _, err := fw.Client.CoreV1().ServiceAccounts(ns).Create(t.Context(),
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	policy := `path "secret/data/` + ns + `/*" { capabilities = ["read"] }`
	if dbTTL > 0 {
		policy += "\n" + `path "database/creds/` + ns + `" { capabilities = ["read"] }`
	}
	vt.v.WritePolicy(t, ns, policy)
	if dbTTL > 0 {
		vt.v.DatabaseRole(t, "database", vaulttest.DBRole{Name: ns, DefaultTTL: dbTTL, MaxTTL: time.Hour})
	}
	vt.v.KubernetesRole(t, "kubernetes", ns, vaulttest.Role{
		ServiceAccounts: []string{"app"}, Namespaces: []string{ns}, Policies: []string{ns}, TTL: 20 * time.Minute,
	})
	return vt
}

// objects is the class's objects parameter for the tenant's KV value api-key and its database
// credential (db-username, db-password).
func (vt vaultTenant) objects() string {
	return strings.Join([]string{
		`- {objectName: api-key, secretPath: "secret/data/` + vt.ns + `/config", secretKey: api-key}`,
		`- {objectName: db-username, secretPath: "database/creds/` + vt.ns + `", secretKey: username}`,
		`- {objectName: db-password, secretPath: "database/creds/` + vt.ns + `", secretKey: password}`,
	}, "\n")
}

// TestVaultProvider: a pod mounts KV v2 values and a database credential through provider-vault,
// logging in with its own service account token (kubernetes auth, a real TokenReview against the
// node's apiserver). A KV update reaches the file and the synced Secret by rotation; the database
// credential stays the same across vaultRotations rotations and still logs in to PostgreSQL; the
// provider's log (-v=10) holds no value and no Vault token.
func TestVaultProvider(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/var/run/secrets-store-csi-providers/vault.sock"); err != nil {
		t.Fatalf("provider-vault is not running (test/cluster/up.sh starts it with SSCSI_VAULT=1, which test/e2e/run.sh sets): %v", err)
	}
	// A role and policy of this test's own: only this namespace's "app" service account, only its
	// KV path and the database role.
	vt := newVaultTenant(t, "vault", 20*time.Minute)
	lv, v, pg, ns := vt.lv, vt.v, vt.pg, vt.ns
	recordSecret(lv.RootToken) // no component log may hold it
	apiKey := secretValue("vault-kv")
	v.PutKV(t, "secret", ns+"/config", map[string]any{"api-key": apiKey, "mode": "e2e"})

	objects := vt.objects()
	spc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": framework.SPCGroup + "/v1",
		"kind":       "SecretProviderClass",
		"metadata":   map[string]any{"name": "vault", "namespace": ns},
		"spec": map[string]any{
			"provider": "vault",
			"parameters": map[string]any{
				"roleName":     ns,
				"vaultAddress": lv.Address,
				"audience":     "vault",
				"objects":      objects,
			},
			"secretObjects": []any{map[string]any{
				"secretName": "app-vault",
				"type":       "Opaque",
				"data": []any{
					map[string]any{"objectName": "api-key", "key": "api-key"},
					map[string]any{"objectName": "db-password", "key": "db-password"},
				},
			}},
		},
	}}
	if _, err := fw.Dynamic.Resource(framework.SPCResource("v1")).Namespace(ns).Create(t.Context(), spc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating SecretProviderClass: %v", err)
	}
	vol := framework.CSIVolume{Name: "vault", SPC: "vault"}
	pod := framework.BusyboxPod(ns, "app", vol)
	pod.Spec.ServiceAccountName = "app"
	fw.CreatePod(t, pod)
	fw.WaitPodRunning(t, ns, "app", podTimeout)

	dir := vol.MountPath()
	if got := fw.ReadFile(t, ns, "app", dir+"/api-key"); got != apiKey {
		t.Fatalf("api-key file is not the KV v2 value (%d bytes)", len(got))
	}
	user := fw.ReadFile(t, ns, "app", dir+"/db-username")
	pass := fw.ReadFile(t, ns, "app", dir+"/db-password")
	recordSecret(pass)
	checkDB := func(when string) {
		t.Helper()
		if got, err := pg.Query(t.Context(), user, pass, "SELECT current_user"); err != nil || got != user {
			t.Fatalf("%s: the mounted database credential does not log in to PostgreSQL: %v", when, err)
		}
	}
	checkDB("after mount")
	if leases := v.Leases(t, "database/creds/"+ns); len(leases) != 1 {
		t.Fatalf("%d live leases of database role %s after the mount, want 1", len(leases), ns)
	}
	waitSecret(t, ns, "app-vault", map[string]string{"api-key": apiKey, "db-password": pass})

	// Each round changes the KV value and waits until rotation delivers it: proof that the
	// provider was asked again. The database credential must not change.
	for round := 1; round <= vaultRotations; round++ {
		apiKey = secretValue("vault-kv")
		version := v.PutKV(t, "secret", ns+"/config", map[string]any{"api-key": apiKey, "mode": "e2e"})
		took := fw.WaitFileContent(t, ns, "app", dir+"/api-key", apiKey, 4*time.Minute)
		t.Logf("rotation %d: KV v2 version %d reached the file after %s", round, version, took.Round(time.Second))
		if got := fw.ReadFile(t, ns, "app", dir+"/db-username"); got != user {
			t.Fatalf("rotation %d: the database credential was re-issued (user changed)", round)
		}
		if got := fw.ReadFile(t, ns, "app", dir+"/db-password"); got != pass {
			t.Fatalf("rotation %d: the database password changed", round)
		}
		checkDB("rotation")
		waitSecret(t, ns, "app-vault", map[string]string{"api-key": apiKey, "db-password": pass})
	}
	if leases := v.Leases(t, "database/creds/"+ns); len(leases) != 1 {
		t.Fatalf("%d live leases of database role %s after %d rotations, want 1 (re-issued on a poll)", len(leases), ns, vaultRotations)
	}

	// The provider logs at -v=10: no value, no Vault token, no service account token in it. Its
	// verbose call dump ("provider call", -v>=5) must be there, or the check proves nothing.
	logs := providerVaultLogs(t)
	verbose := false
	for _, path := range logs {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("provider-vault log: %v", err)
		}
		verbose = verbose || strings.Contains(string(b), `"provider call"`)
		for _, needle := range []string{apiKey, pass, user, "hvs.", "hvb.", lv.RootToken, "eyJhbGciOi"} {
			if strings.Contains(string(b), needle) {
				t.Errorf("%s holds secret material (a value or a token)", path)
			}
		}
	}
	if !verbose {
		t.Errorf("provider-vault logs %v hold no verbose call dump: is it running at -v=10?", logs)
	}
}

// providerVaultLogs returns provider-vault's log files: the host process's (up.sh in host and
// daemonset modes) or the chart DaemonSet pod's (kubelet writes pod logs below the cluster logs).
func providerVaultLogs(t *testing.T) []string {
	t.Helper()
	logs, err := filepath.Glob(filepath.Join(fw.LogsDir, "pods", "*_*provider-vault*_*", "provider", "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	if host := filepath.Join(fw.LogsDir, "provider-vault.log"); fileExists(host) {
		logs = append(logs, host)
	}
	if len(logs) == 0 {
		t.Fatalf("no provider-vault log in %s (provider-vault.log or pods/*provider-vault*/provider/*.log)", fw.LogsDir)
	}
	return logs
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// recordSecret adds a value the suite did not generate (e.g. a password Vault issued) to the
// values that must never appear in a component log.
func recordSecret(v string) {
	secrets.mu.Lock()
	defer secrets.mu.Unlock()
	secrets.values = append(secrets.values, v)
}

// waitSecret waits until the synced Secret holds want.
func waitSecret(t *testing.T, ns, name string, want map[string]string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		s, err := fw.Client.CoreV1().Secrets(ns).Get(t.Context(), name, metav1.GetOptions{})
		ok := err == nil
		for k, v := range want {
			if !ok || string(s.Data[k]) != v {
				ok = false
				break
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("synced Secret %s/%s does not follow the mounted files after 90 s (err %v)", ns, name, err)
		}
		time.Sleep(time.Second)
	}
}

// TestSecretSyncVault: a SecretSync whose SecretProviderClass names provider-vault (the SecretSync
// controller's Vault sidecar in chart mode, the node's provider-vault in host mode) produces its
// Secret from a KV v2 value with no pod, logging in with the SecretSync's service account (a real
// TokenReview); a new KV version reaches the Secret by the controller's refresh; a class naming a
// Vault the provider may not send tokens to gets a Create=False condition naming vaultAddress.
func TestSecretSyncVault(t *testing.T) {
	t.Parallel()
	vt := newVaultTenant(t, "ssync-vault", 0)
	lv, v, ns := vt.lv, vt.v, vt.ns
	apiKey := secretValue("ssync-vault")
	v.PutKV(t, "secret", ns+"/config", map[string]any{"api-key": apiKey})
	objects := `- {objectName: api-key, secretPath: "secret/data/` + ns + `/config", secretKey: api-key}`
	// The same class pointing at another address: the pod's token must not go there.
	elsewhere := strings.Replace(lv.Address, "127.0.0.1", "127.0.0.2", 1)
	for name, addr := range map[string]string{"vault": lv.Address, "vault-elsewhere": elsewhere} {
		fw.CreateSPC(t, framework.SPC{Name: name, Namespace: ns, Provider: "vault", Parameters: map[string]string{
			"roleName": ns, "vaultAddress": addr, "audience": "vault", "objects": objects,
		}})
	}
	ss := createSecretSync(t, ns, secretSync{name: "app-config", sa: "app", spc: "vault", data: map[string]string{"api-key": "api-key"}})
	createSecretSync(t, ns, secretSync{name: "elsewhere", sa: "app", spc: "vault-elsewhere", data: map[string]string{"api-key": "api-key"}})

	s := waitSecretData(t, ns, "app-config", map[string]string{"api-key": apiKey}, syncTimeout)
	checkOwnedSecret(t, s, ss)
	waitCondition(t, ns, "app-config", "Create", "True")
	reason, msg := waitCondition(t, ns, "elsewhere", "Create", "False", "vaultAddress")
	t.Logf("class naming another Vault: %s: %s", reason, msg)
	if _, err := fw.Client.CoreV1().Secrets(ns).Get(t.Context(), "elsewhere", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Secret of the SecretSync naming another Vault: %v, want NotFound", err)
	}
	if pods, err := fw.Client.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{}); err != nil || len(pods.Items) != 0 {
		t.Fatalf("the namespace has pods (%v): the Secret must come without any", err)
	}

	// A new KV version reaches the Secret on a refresh: within the poll interval (with jitter) plus
	// provider-vault's shared-read lifetime (-cache-ttl, at most 30 s).
	rotated := secretValue("ssync-vault-rotated")
	version := v.PutKV(t, "secret", ns+"/config", map[string]any{"api-key": rotated})
	start := time.Now()
	waitSecretData(t, ns, "app-config", map[string]string{"api-key": rotated}, syncPollInterval+syncPollInterval/5+30*time.Second+5*time.Second)
	t.Logf("KV v2 version %d reached the Secret after %s", version, time.Since(start).Round(time.Second))

	deleteSecretSync(t, ns, "app-config")
}

// TestSecretSyncVaultDatabase: a SecretSync whose class names a database role (and a KV value)
// gets ONE credential, kept across the controller's refreshes (two KV updates reach the Secret
// while the credential stays) and renewed by them past its first TTL, still logging in to
// PostgreSQL; a SecretSync deleted and created again with the same name gets a new credential;
// after the deletions nothing renews the leases and Vault revokes both credentials at their TTL.
// The role's 40 s TTL leaves a 20 s renewal window (renew fraction 0.5) for a 10 s poll interval
// (+10% jitter): a lease shorter than about twice the poll interval could not be renewed in time.
func TestSecretSyncVaultDatabase(t *testing.T) {
	t.Parallel()
	const ttl = 40 * time.Second
	vt := newVaultTenant(t, "ssync-vdb", ttl)
	lv, v, pg, ns := vt.lv, vt.v, vt.pg, vt.ns
	apiKey := secretValue("ssync-vdb")
	v.PutKV(t, "secret", ns+"/config", map[string]any{"api-key": apiKey})
	fw.CreateSPC(t, framework.SPC{Name: "db", Namespace: ns, Provider: "vault", Parameters: map[string]string{
		"roleName": ns, "vaultAddress": lv.Address, "audience": "vault", "objects": vt.objects(),
	}})
	ss := secretSync{name: "db", sa: "app", spc: "db", data: map[string]string{"api-key": "api-key", "username": "db-username", "password": "db-password"}}
	leases := func() int { return len(v.Leases(t, "database/creds/"+ns)) }
	// credential waits for the Secret to hold the current KV value and returns its credential.
	credential := func(timeout time.Duration) (user, pass string) {
		t.Helper()
		var s *corev1.Secret
		if err := until(t.Context(), timeout, func(ctx context.Context) error {
			var err error
			if s, err = fw.Client.CoreV1().Secrets(ns).Get(ctx, "db", metav1.GetOptions{}); err != nil {
				return err
			}
			if string(s.Data["api-key"]) != apiKey {
				return errors.New("not the current KV value yet")
			}
			return nil
		}); err != nil {
			t.Fatalf("Secret %s/db does not hold the current KV value within %s: %v\nSecretSync status: %s", ns, timeout, err, secretSyncStatus(t, ns, "db"))
		}
		user, pass = string(s.Data["username"]), string(s.Data["password"])
		if user == "" || pass == "" {
			t.Fatalf("Secret %s/db has no database credential (keys %v)", ns, keys(s.Data))
		}
		recordSecret(pass)
		return user, pass
	}
	checkDB := func(when, user, pass string) {
		t.Helper()
		if got, err := pg.Query(t.Context(), user, pass, "SELECT current_user"); err != nil || got != user {
			t.Fatalf("%s: the synced database credential does not log in to PostgreSQL: %v", when, err)
		}
	}

	createSecretSync(t, ns, ss)
	user, pass := credential(syncTimeout)
	issued := time.Now()
	checkDB("first sync", user, pass)
	// Each KV update reaching the Secret proves a refresh; the credential must not change.
	refresh := syncPollInterval + syncPollInterval/5 + 30*time.Second + 5*time.Second
	for round := 1; round <= 2; round++ {
		apiKey = secretValue("ssync-vdb")
		v.PutKV(t, "secret", ns+"/config", map[string]any{"api-key": apiKey})
		if u, p := credential(refresh); u != user || p != pass {
			t.Fatalf("refresh %d: the SecretSync's database credential was re-issued", round)
		}
	}
	// Past the lease's first TTL only the refreshes' renewals keep it alive.
	if d := time.Until(issued.Add(ttl + 2*time.Second)); d > 0 {
		time.Sleep(d)
	}
	if u, p := credential(refresh); u != user || p != pass {
		t.Fatal("the SecretSync's database credential was re-issued past its first TTL (not renewed in time?)")
	}
	checkDB(fmt.Sprintf("%s after the first sync", time.Since(issued).Round(time.Second)), user, pass)
	if n := leases(); n != 1 {
		t.Fatalf("%d live leases of database role %s, want 1 (one credential for the SecretSync)", n, ns)
	}
	t.Logf("one credential kept %s across the SecretSync's refreshes (2 KV updates synced, renewed past its %s TTL)", time.Since(issued).Round(time.Second), ttl)

	// Deleted and created again with the same name: a new UID, a new credential.
	deleteSecretSync(t, ns, "db")
	createSecretSync(t, ns, ss)
	user2, pass2 := credential(syncTimeout)
	if user2 == user {
		t.Fatal("a SecretSync created again with the same name got the deleted one's credential")
	}
	checkDB("re-created SecretSync", user2, pass2)
	deleteSecretSync(t, ns, "db")
	deleted := time.Now()

	// Nothing renews either credential now: Vault revokes both at the end of their TTL.
	if err := until(t.Context(), ttl+30*time.Second, func(context.Context) error {
		if n := leases(); n != 0 {
			return fmt.Errorf("%d live leases", n)
		}
		return nil
	}); err != nil {
		t.Fatalf("the deleted SecretSyncs' credentials are still live %s after the deletion: %v", time.Since(deleted).Round(time.Second), err)
	}
	for _, c := range [][2]string{{user, pass}, {user2, pass2}} {
		if _, err := pg.Query(t.Context(), c[0], c[1], "SELECT 1"); err == nil {
			t.Errorf("a deleted SecretSync's credential still logs in to PostgreSQL after its lease ended")
		}
	}
	t.Logf("both credentials revoked by Vault %s after the deletion (TTL %s)", time.Since(deleted).Round(time.Second), ttl)
}
