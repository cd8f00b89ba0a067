//go:build vaultcalls

// Package vaultcalls counts the Vault calls provider-vault makes for a
// reference workload, against a real Vault (kubernetes auth against a real
// kube-apiserver, the database engine against PostgreSQL) behind a
// counting proxy. Mounts go through the provider's gRPC server on a unix
// socket. Provider time is simulated: first mounts spread over the
// start-up, each later round over the poll interval; Vault's own clock
// runs in real time (leases of 1h do not expire during the run).
//
// Three scenarios, each with a provider of its own over the same Vault:
//
//   - pods (the reference): 100 pods over 20 service accounts,
//     each service account with its own Vault role; each pod mounts 10
//     objects (8 KV v2 + 2 database: the username and password of one
//     database role) and is republished in 5 rotation rounds with nothing
//     changed, as the driver sends them (a TokenRequest token for
//     audience "vault" per pod, the stored versions on rotation).
//     vault-csi-provider's model: one login per pod and every object read
//     on every poll: 100 logins + 6,000 reads (1,200 of them database
//     credentials) = 6,100 calls.
//   - secretsyncs: 100 SecretSyncs over the same 20 service accounts, each
//     syncing the same 10 objects, refreshed in 5 controller polls, as our
//     SecretSync controller sends them (synccontroller/internal/reconcile:
//     no pod, the SecretSync's name and UID, a new TokenRequest token on
//     every refresh, no stored versions). The same model gives 6,100.
//   - ownerless: 100 SecretSyncs refreshed as upstream's controller sends
//     them (neither a pod UID nor a SecretSync key): each refresh mounts
//     the KV objects (served) and the database objects (refused, and
//     nothing may be issued for them).
//
// Run with `make bench-vault-calls` (flags after ARGS=...).
package vaultcalls

import (
	"encoding/json"
	"flag"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/sscsi/secrets-store/providers/plugin"
	"github.com/sscsi/secrets-store/providers/plugintest"
	"github.com/sscsi/secrets-store/providers/vault"
	"github.com/sscsi/secrets-store/providers/vault/params"
	"github.com/sscsi/secrets-store/test/cluster/controlplane"
	"github.com/sscsi/secrets-store/test/vaulttest"
)

var (
	pods             = flag.Int("pods", 100, "pods (0: no pod scenario)")
	secretSyncs      = flag.Int("secretsyncs", 100, "SecretSyncs (0: no SecretSync scenario)")
	serviceAccounts  = flag.Int("service-accounts", 20, "service accounts, each with its own Vault role (pods and SecretSyncs are assigned in blocks, as a Deployment's replicas are)")
	kvObjects        = flag.Int("kv-objects", 8, "KV v2 objects per pod or SecretSync")
	kvSecrets        = flag.Int("kv-secrets", 8, "distinct KV v2 secrets those objects read (kv-objects/kv-secrets keys each)")
	dbRoles          = flag.Int("db-roles", 1, "database roles per pod or SecretSync; each is mounted as 2 objects (username, password)")
	rounds           = flag.Int("rounds", 5, "rotation rounds (controller polls) with nothing changed")
	parallel         = flag.Int("parallel", 10, "concurrent mounts")
	cacheTTL         = flag.Duration("cache-ttl", vault.DefaultCacheTTL, "provider -cache-ttl")
	rotationInterval = flag.Duration("rotation-interval", 2*time.Minute, "driver --rotation-poll-interval; each round's republishes are spread over it")
	ownerless        = flag.Int("ownerless", 100, "SecretSyncs refreshed as a controller that names no owner (upstream's) sends them: a KV class served, a database class refused (0: no such scenario)")
	syncInterval     = flag.Duration("sync-interval", 2*time.Minute, "SecretSync controller --rotation-poll-interval; each poll's refreshes are spread over it")
	startSpread      = flag.Duration("start-spread", 10*time.Second, "first mounts are spread over this long")
)

// workload is the Vault side shared by both scenarios: KV secrets and a
// Vault role per service account, database roles.
type workload struct {
	rc   *rest.Config
	s    *vaulttest.Server
	want map[int]map[string]string // service account -> file -> contents
	spcs map[int]string            // service account -> objects parameter
	kv   map[int]string            // service account -> its KV objects only
	db   map[int]string            // service account -> its database objects only
}

func TestVaultCalls(t *testing.T) {
	if *kvSecrets < 1 || *kvObjects%*kvSecrets != 0 {
		t.Fatalf("-kv-objects (%d) must be a multiple of -kv-secrets (%d)", *kvObjects, *kvSecrets)
	}
	w := &workload{rc: controlplane.ForTest(t), s: vaulttest.Start(t), want: map[int]map[string]string{}, spcs: map[int]string{}, kv: map[int]string{}, db: map[int]string{}}
	s := w.s
	s.EnableKV(t, "secret", 2)
	pg := vaulttest.StartPostgres(t)
	var dbr []vaulttest.DBRole
	for d := range *dbRoles {
		dbr = append(dbr, vaulttest.DBRole{Name: fmt.Sprintf("db%d", d), DefaultTTL: time.Hour, MaxTTL: 24 * time.Hour})
	}
	s.EnableDatabase(t, "database", pg, dbr...)
	s.EnableKubernetesAuth(t, "kubernetes", w.rc)
	keysPer := *kvObjects / *kvSecrets
	for a := range *serviceAccounts {
		sa := fmt.Sprintf("sa-%02d", a)
		s.WritePolicy(t, sa, fmt.Sprintf("path \"secret/data/%s/*\" { capabilities = [\"read\"] }\npath \"database/creds/*\" { capabilities = [\"read\"] }", sa))
		s.KubernetesRole(t, "kubernetes", sa, vaulttest.Role{ServiceAccounts: []string{sa}, Namespaces: []string{"bench"}, Policies: []string{sa}, TTL: time.Hour})
		w.want[a] = map[string]string{}
		var lines []string
		for k := range *kvSecrets {
			data := map[string]any{}
			for j := range keysPer {
				key := fmt.Sprintf("key%d", j)
				data[key] = fmt.Sprintf("%s-s%d-%s", sa, k, key)
				obj := fmt.Sprintf("kv-%d-%d", k, j)
				lines = append(lines, fmt.Sprintf("- {objectName: %s, secretPath: secret/data/%s/s%d, secretKey: %s}", obj, sa, k, key))
				w.want[a][obj] = data[key].(string)
			}
			s.PutKV(t, "secret", fmt.Sprintf("%s/s%d", sa, k), data)
		}
		var dbLines []string
		for d := range *dbRoles {
			dbLines = append(dbLines,
				fmt.Sprintf("- {objectName: db%d-user, secretPath: database/creds/db%d, secretKey: username}", d, d),
				fmt.Sprintf("- {objectName: db%d-pass, secretPath: database/creds/db%d, secretKey: password}", d, d))
		}
		w.kv[a], w.db[a] = strings.Join(lines, "\n"), strings.Join(dbLines, "\n")
		w.spcs[a] = strings.Join(append(lines, dbLines...), "\n")
	}
	t.Logf("workload: %d service accounts/Vault roles, %d objects per pod or SecretSync (%d KV v2 from %d secrets + %d database roles x username/password), %d rounds; provider -cache-ttl %s",
		*serviceAccounts, *kvObjects+2**dbRoles, *kvObjects, *kvSecrets, *dbRoles, *rounds, *cacheTTL)

	t.Run("pods", func(t *testing.T) {
		if *pods <= 0 {
			t.Skip("-pods=0: no pod scenario")
		}
		owners := make([]*owner, *pods)
		for i := range owners {
			a := saOf(i, *pods)
			tok := vaulttest.ServiceAccountToken(t, w.rc, "bench", saName(a), 2*time.Hour, "vault")
			owners[i] = &owner{sa: a, db: map[string]string{}, request: func(cur []*v1alpha1.ObjectVersion) *v1alpha1.MountRequest {
				return podMountRequest(i, a, tok, w.spcs[a], cur)
			}}
		}
		ratio := w.run(t, "pod", owners, *rotationInterval)
		if ratio < 10 {
			t.Logf("TARGET MISSED: %.1fx fewer calls, target >= 10x", ratio)
			t.Fail()
		}
	})
	if *secretSyncs > 0 {
		t.Run("secretsyncs", func(t *testing.T) {
			owners := make([]*owner, *secretSyncs)
			for i := range owners {
				a := saOf(i, *secretSyncs)
				owners[i] = &owner{sa: a, db: map[string]string{}, request: func([]*v1alpha1.ObjectVersion) *v1alpha1.MountRequest {
					// Our controller asks for a new token on every
					// refresh (for 10 min; here 2 h, as the provider's
					// simulated clock runs ahead of the API server's).
					tok := vaulttest.ServiceAccountToken(t, w.rc, "bench", saName(a), 2*time.Hour, "vault")
					return syncMountRequest(i, a, tok, w.spcs[a])
				}}
			}
			w.run(t, "SecretSync", owners, *syncInterval)
		})
	}
	if *ownerless > 0 {
		t.Run("ownerless", func(t *testing.T) { w.runOwnerless(t, *ownerless, *syncInterval) })
	}
}

// runOwnerless refreshes n SecretSyncs as a controller that names no
// owner (upstream's secrets-store-sync-controller) sends them: each
// refresh mounts the service account's KV objects (served) and its
// database objects (refused: nothing could keep the credential). It
// reports the Vault calls by kind; no credential may be issued.
func (w *workload) runOwnerless(t *testing.T, n int, interval time.Duration) {
	proxy := w.s.FaultProxy(t)
	clk := clocktesting.NewFakeClock(time.Now())
	b, err := vault.NewBackend(vault.BackendConfig{Clock: clk, CacheTTL: *cacheTTL, Defaults: defaults(proxy.Addr)})
	if err != nil {
		t.Fatal(err)
	}
	client := plugintest.Serve(t, plugin.Config{Name: "vault", Version: "bench", Backend: b})
	all := map[string]int{}
	served, refused := 0, 0
	phase := func(name string, step time.Duration) {
		proxy.Reset()
		sem := make(chan struct{}, *parallel)
		var wg sync.WaitGroup
		var mu sync.Mutex // guards served, refused and t.Errorf ordering
		for i := range n {
			clk.Step(step)
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				a := saOf(i, n)
				tok := vaulttest.ServiceAccountToken(t, w.rc, "bench", saName(a), 2*time.Hour, "vault")
				resp, kvErr := client.Mount(t.Context(), ownerlessMountRequest(a, tok, w.kv[a]))
				_, dbErr := client.Mount(t.Context(), ownerlessMountRequest(a, tok, w.db[a]))
				mu.Lock()
				defer mu.Unlock()
				if kvErr != nil {
					t.Errorf("%s: SecretSync %d: KV without an owner: %v", name, i, kvErr)
				} else {
					got := map[string]string{}
					for _, f := range resp.GetFiles() {
						got[f.GetPath()] = string(f.GetContents())
					}
					for obj, v := range w.want[a] {
						if got[obj] != v {
							t.Errorf("%s: SecretSync %d: %s = %q, want %q", name, i, obj, got[obj], v)
						}
					}
					served++
				}
				if status.Code(dbErr) != codes.Unauthenticated {
					t.Errorf("%s: SecretSync %d: database credential without an owner: %v, want Unauthenticated", name, i, dbErr)
				} else {
					refused++
				}
			}()
		}
		wg.Wait()
		c := counts(proxy)
		sum := 0
		for k, v := range c {
			all[k] += v
			sum += v
		}
		t.Logf("%s: %d calls %v", name, sum, c)
	}
	t.Logf("%d SecretSyncs without an owner (upstream's controller), polled every %s; each refresh: a KV class and a database class", n, interval)
	phase("first syncs", *startSpread/time.Duration(max(n, 1)))
	for r := 1; r <= *rounds; r++ {
		phase(fmt.Sprintf("round %d", r), interval/time.Duration(max(n, 1)))
	}
	if want := n * (1 + *rounds); served != want || refused != want {
		t.Errorf("%d KV mounts served and %d database mounts refused, want %d each", served, refused, want)
	}
	total := 0
	for _, v := range all {
		total += v
	}
	t.Logf("all phases: %v", all)
	t.Logf("provider-vault (ownerless SecretSyncs): %d calls (%d logins, %d engine lookups, %d KV reads, %d credentials issued)", total, all["logins"], all["engine lookups"], all["kv reads"], all["credentials"])
	if all["credentials"] != 0 {
		t.Errorf("credentials issued without an owner = %d, want 0 (refused before the read)", all["credentials"])
	}
	if max := *serviceAccounts * (1 + *dbRoles); all["engine lookups"] > max {
		t.Errorf("engine lookups = %d, want at most %d (one per identity and mount)", all["engine lookups"], max)
	}
}

func saName(a int) string { return fmt.Sprintf("sa-%02d", a) }

// saOf assigns item i of n to a service account, in blocks.
func saOf(i, n int) int {
	per := (n + *serviceAccounts - 1) / *serviceAccounts
	return min(i/per, *serviceAccounts-1)
}

// owner is one pod or SecretSync: it mounts the objects of its service
// account once, then once per round.
type owner struct {
	sa       int
	request  func(cur []*v1alpha1.ObjectVersion) *v1alpha1.MountRequest
	versions []*v1alpha1.ObjectVersion
	db       map[string]string // db user file -> username seen first
}

// run mounts every owner once and then once per round through a new
// provider of its own, checks every mount's files, reports the Vault calls
// by kind and returns how many times fewer calls than vault-csi-provider's
// model they are.
func (w *workload) run(t *testing.T, kind string, owners []*owner, interval time.Duration) float64 {
	proxy := w.s.FaultProxy(t)
	clk := clocktesting.NewFakeClock(time.Now())
	b, err := vault.NewBackend(vault.BackendConfig{Clock: clk, CacheTTL: *cacheTTL, Defaults: defaults(proxy.Addr)})
	if err != nil {
		t.Fatal(err)
	}
	client := plugintest.Serve(t, plugin.Config{Name: "vault", Version: "bench", Backend: b})
	usernames := map[string]int{} // every database username any owner got
	mounts := 0

	phase := func(name string, step time.Duration, rotation bool) map[string]int {
		proxy.Reset()
		sem := make(chan struct{}, *parallel)
		var wg sync.WaitGroup
		var mu sync.Mutex // guards usernames, mounts, owners' db and t.Errorf ordering
		for i, o := range owners {
			clk.Step(step)
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				var cur []*v1alpha1.ObjectVersion
				if rotation {
					cur = o.versions
				}
				resp, err := client.Mount(t.Context(), o.request(cur))
				if err != nil {
					t.Errorf("%s: %s %d: %v", name, kind, i, err)
					return
				}
				got := map[string]string{}
				for _, f := range resp.GetFiles() {
					got[f.GetPath()] = string(f.GetContents())
				}
				mu.Lock()
				defer mu.Unlock()
				mounts++
				for obj, v := range w.want[o.sa] {
					if got[obj] != v {
						t.Errorf("%s: %s %d: %s = %q, want %q", name, kind, i, obj, got[obj], v)
					}
				}
				for d := range *dbRoles {
					f := fmt.Sprintf("db%d-user", d)
					if got[f] == "" {
						t.Errorf("%s: %s %d: no database username", name, kind, i)
					}
					if _, ok := o.db[f]; !ok {
						o.db[f] = got[f]
					}
					usernames[got[f]]++
				}
				o.versions = resp.GetObjectVersion()
			}()
		}
		wg.Wait()
		return counts(proxy)
	}

	n := len(owners)
	all := map[string]int{}
	add := func(name string, c map[string]int) {
		sum := 0
		for k, v := range c {
			all[k] += v
			sum += v
		}
		t.Logf("%s: %d calls %v", name, sum, c)
	}
	t.Logf("%d %ss, polled every %s", n, kind, interval)
	add("first mounts", phase("first mounts", *startSpread/time.Duration(max(n, 1)), false))
	for r := 1; r <= *rounds; r++ {
		add(fmt.Sprintf("round %d", r), phase(fmt.Sprintf("round %d", r), interval/time.Duration(max(n, 1)), true))
	}
	// Every mount did all of its work: each one answered with every file.
	if want := n * (1 + *rounds); mounts != want {
		t.Errorf("%d mounts answered, want %d", mounts, want)
	}
	total := 0
	for _, v := range all {
		total += v
	}
	objectsPer := *kvObjects + 2**dbRoles
	creds := all["credentials"]
	upstreamLogins := n
	upstreamReads := n * objectsPer * (1 + *rounds)
	upstreamCreds := n * 2 * *dbRoles * (1 + *rounds)
	upstream := upstreamLogins + upstreamReads
	ratio := float64(upstream) / float64(max(total, 1))
	t.Logf("all phases: %v", all)
	t.Logf("vault-csi-provider's model: %d logins + %d reads (%d of them database credentials) = %d calls", upstreamLogins, upstreamReads, upstreamCreds, upstream)
	t.Logf("provider-vault (%ss): %d calls (%d logins, %d KV reads, %d credentials issued, %d lease renewals, %d token renewals): %.1fx fewer", kind, total,
		all["logins"], all["kv reads"], creds, all["lease renewals"], all["token renewals"], ratio)
	t.Logf("credentials issued per %s per database role: %.2f (target <= 1)", kind, float64(creds)/float64(n**dbRoles))
	t.Logf("total calls: %d", total)

	// Identity stays per service account: logins never exceed one per
	// identity here (tokens live 1h), and every owner kept one credential.
	if all["logins"] > *serviceAccounts {
		t.Errorf("logins = %d, more than one per service account", all["logins"])
	}
	if creds > n**dbRoles {
		t.Errorf("credentials issued = %d; target at most %d (1 per %s per database role)", creds, n**dbRoles, kind)
	}
	for i, o := range owners {
		for f, first := range o.db {
			if usernames[first] != 1+*rounds {
				t.Errorf("%s %d: username of %s was served %d times over %d mounts (changed or shared)", kind, i, f, usernames[first], 1+*rounds)
			}
		}
	}
	return ratio
}

// counts groups the proxy's counts by kind of call.
func counts(p *vaulttest.FaultProxy) map[string]int {
	c := map[string]int{
		"logins":         p.Count("", "/v1/auth/kubernetes/login"),
		"kv reads":       p.Count("", "/v1/secret/"),
		"credentials":    p.Count("", "/v1/database/creds/"),
		"lease renewals": p.Count("", "/v1/sys/leases/renew"),
		"token renewals": p.Count("", "/v1/auth/token/renew-self"),
		"engine lookups": p.Count("", "/v1/sys/internal/ui/mounts/"),
	}
	known := 0
	for _, v := range c {
		known += v
	}
	if other := p.Count("", "/") - known; other != 0 {
		c["other"] = other
	}
	return c
}

func defaults(addr string) (d params.Defaults) {
	d.Connection.Address = addr
	return d
}

// podMountRequest is a pod's mount as the driver sends it.
func podMountRequest(i, sa int, token, objects string, cur []*v1alpha1.ObjectVersion) *v1alpha1.MountRequest {
	pod := fmt.Sprintf("pod-%03d", i)
	tj, _ := json.Marshal(map[string]plugin.Token{"vault": {Token: token, ExpirationTimestamp: time.Now().Add(time.Hour)}})
	attrs := map[string]string{
		"roleName": saName(sa), "objects": objects,
		plugin.AttrPodName: pod, plugin.AttrPodNamespace: "bench", plugin.AttrPodUID: "uid-" + pod,
		plugin.AttrServiceAccount: saName(sa), plugin.AttrTokens: string(tj),
	}
	aj, _ := json.Marshal(attrs)
	return &v1alpha1.MountRequest{Attributes: string(aj), Secrets: "null", TargetPath: "/unused/" + pod, Permission: "420", CurrentObjectVersion: cur}
}

// syncMountRequest is a SecretSync's refresh as our SecretSync controller
// sends it (synccontroller/internal/reconcile fetch.go): the class's
// parameters, the namespace, service account, class name, tokens and the
// SecretSync's name and UID; no pod, no target path, no stored versions.
func syncMountRequest(i, sa int, token, objects string) *v1alpha1.MountRequest {
	name := fmt.Sprintf("sync-%03d", i)
	tj, _ := json.Marshal(map[string]plugin.Token{"vault": {Token: token, ExpirationTimestamp: time.Now().Add(2 * time.Hour)}})
	attrs := map[string]string{
		"roleName": saName(sa), "objects": objects,
		plugin.AttrPodNamespace: "bench", plugin.AttrServiceAccount: saName(sa), "secretProviderClass": saName(sa),
		plugin.AttrTokens: string(tj), plugin.AttrSecretSyncName: name, plugin.AttrSecretSyncUID: "uid-" + name,
	}
	aj, _ := json.Marshal(attrs)
	return &v1alpha1.MountRequest{Attributes: string(aj), Secrets: "null", Permission: "420"}
}

// ownerlessMountRequest is a refresh as upstream's secrets-store-sync-controller
// sends it: no pod and no SecretSync key.
func ownerlessMountRequest(sa int, token, objects string) *v1alpha1.MountRequest {
	tj, _ := json.Marshal(map[string]plugin.Token{"vault": {Token: token, ExpirationTimestamp: time.Now().Add(2 * time.Hour)}})
	attrs := map[string]string{
		"roleName": saName(sa), "objects": objects,
		plugin.AttrPodNamespace: "bench", plugin.AttrServiceAccount: saName(sa), "secretProviderClass": saName(sa),
		plugin.AttrTokens: string(tj),
	}
	aj, _ := json.Marshal(attrs)
	return &v1alpha1.MountRequest{Attributes: string(aj), Secrets: "null", Permission: "420"}
}
