//go:build vaultcalls

// Package vaultcalls counts the Vault calls provider-vault makes for a
// reference workload, against a real Vault (kubernetes auth against a real
// kube-apiserver, the database engine against PostgreSQL) behind a
// counting proxy: 100 pods over 20 service accounts, each service account
// with its own Vault role; each pod mounts 10 objects (8 KV v2 + 2
// database: the username and password of one database role) and is
// republished in 5 rotation rounds with nothing changed. Mounts go
// through the provider's gRPC server on a unix socket as the driver sends
// them (a TokenRequest token for audience "vault" per pod, the stored
// versions on rotation). Provider time is simulated: first mounts spread
// over the pods' start-up, each rotation round over the rotation poll
// interval; Vault's own clock runs in real time (leases of 1h do not
// expire during the run).
//
// vault-csi-provider's model for the same workload: one login per pod
// and every object read on every poll: 100 logins + 6,000 reads (1,200 of
// them database credentials) = 6,100 calls.
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
	pods             = flag.Int("pods", 100, "pods")
	serviceAccounts  = flag.Int("service-accounts", 20, "service accounts, each with its own Vault role (pods are assigned in blocks, as a Deployment's replicas are)")
	kvObjects        = flag.Int("kv-objects", 8, "KV v2 objects per pod")
	kvSecrets        = flag.Int("kv-secrets", 8, "distinct KV v2 secrets those objects read (kv-objects/kv-secrets keys each)")
	dbRoles          = flag.Int("db-roles", 1, "database roles per pod; each is mounted as 2 objects (username, password)")
	rounds           = flag.Int("rounds", 5, "rotation rounds with nothing changed")
	parallel         = flag.Int("parallel", 10, "concurrent mounts")
	cacheTTL         = flag.Duration("cache-ttl", vault.DefaultCacheTTL, "provider -cache-ttl")
	rotationInterval = flag.Duration("rotation-interval", 2*time.Minute, "driver --rotation-poll-interval; each round's republishes are spread over it")
	startSpread      = flag.Duration("start-spread", 10*time.Second, "first mounts are spread over this long")
)

func TestVaultCalls(t *testing.T) {
	if *kvSecrets < 1 || *kvObjects%*kvSecrets != 0 {
		t.Fatalf("-kv-objects (%d) must be a multiple of -kv-secrets (%d)", *kvObjects, *kvSecrets)
	}
	rc := controlplane.ForTest(t)
	s := vaulttest.Start(t)
	s.EnableKV(t, "secret", 2)
	pg := vaulttest.StartPostgres(t)
	var dbr []vaulttest.DBRole
	for d := range *dbRoles {
		dbr = append(dbr, vaulttest.DBRole{Name: fmt.Sprintf("db%d", d), DefaultTTL: time.Hour, MaxTTL: 24 * time.Hour})
	}
	s.EnableDatabase(t, "database", pg, dbr...)
	s.EnableKubernetesAuth(t, "kubernetes", rc)
	keysPer := *kvObjects / *kvSecrets
	want := map[int]map[string]string{} // service account -> file -> contents
	spcs := map[int]string{}
	for a := range *serviceAccounts {
		sa := fmt.Sprintf("sa-%02d", a)
		s.WritePolicy(t, sa, fmt.Sprintf("path \"secret/data/%s/*\" { capabilities = [\"read\"] }\npath \"database/creds/*\" { capabilities = [\"read\"] }", sa))
		s.KubernetesRole(t, "kubernetes", sa, vaulttest.Role{ServiceAccounts: []string{sa}, Namespaces: []string{"bench"}, Policies: []string{sa}, TTL: time.Hour})
		want[a] = map[string]string{}
		var lines []string
		for k := range *kvSecrets {
			data := map[string]any{}
			for j := range keysPer {
				key := fmt.Sprintf("key%d", j)
				data[key] = fmt.Sprintf("%s-s%d-%s", sa, k, key)
				obj := fmt.Sprintf("kv-%d-%d", k, j)
				lines = append(lines, fmt.Sprintf("- {objectName: %s, secretPath: secret/data/%s/s%d, secretKey: %s}", obj, sa, k, key))
				want[a][obj] = data[key].(string)
			}
			s.PutKV(t, "secret", fmt.Sprintf("%s/s%d", sa, k), data)
		}
		for d := range *dbRoles {
			lines = append(lines,
				fmt.Sprintf("- {objectName: db%d-user, secretPath: database/creds/db%d, secretKey: username}", d, d),
				fmt.Sprintf("- {objectName: db%d-pass, secretPath: database/creds/db%d, secretKey: password}", d, d))
		}
		spcs[a] = strings.Join(lines, "\n")
	}
	objectsPerPod := *kvObjects + 2**dbRoles

	proxy := s.FaultProxy(t)
	clk := clocktesting.NewFakeClock(time.Now())
	b, err := vault.NewBackend(vault.BackendConfig{Clock: clk, CacheTTL: *cacheTTL, Defaults: defaults(proxy.Addr)})
	if err != nil {
		t.Fatal(err)
	}
	client := plugintest.Serve(t, plugin.Config{Name: "vault", Version: "bench", Backend: b})

	type podState struct {
		sa       int
		token    string
		versions []*v1alpha1.ObjectVersion
		db       map[string]string // db user file -> username seen first
	}
	podsState := make([]*podState, *pods)
	perSA := (*pods + *serviceAccounts - 1) / *serviceAccounts
	for i := range *pods {
		a := min(i/perSA, *serviceAccounts-1)
		sa := fmt.Sprintf("sa-%02d", a)
		podsState[i] = &podState{sa: a, token: vaulttest.ServiceAccountToken(t, rc, "bench", sa, 2*time.Hour, "vault"), db: map[string]string{}}
	}
	usernames := map[string]int{} // every database username any pod got

	phase := func(name string, step time.Duration, rotation bool) map[string]int {
		proxy.Reset()
		sem := make(chan struct{}, *parallel)
		var wg sync.WaitGroup
		var mu sync.Mutex // guards usernames, podsState[*].db and t.Errorf ordering
		for i, ps := range podsState {
			clk.Step(step)
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				var cur []*v1alpha1.ObjectVersion
				if rotation {
					cur = ps.versions
				}
				resp, err := client.Mount(t.Context(), mountRequest(t, i, ps.sa, ps.token, spcs[ps.sa], cur))
				if err != nil {
					t.Errorf("%s: pod %d: %v", name, i, err)
					return
				}
				got := map[string]string{}
				for _, f := range resp.GetFiles() {
					got[f.GetPath()] = string(f.GetContents())
				}
				mu.Lock()
				defer mu.Unlock()
				for obj, v := range want[ps.sa] {
					if got[obj] != v {
						t.Errorf("%s: pod %d: %s = %q, want %q", name, i, obj, got[obj], v)
					}
				}
				for d := range *dbRoles {
					f := fmt.Sprintf("db%d-user", d)
					if got[f] == "" {
						t.Errorf("%s: pod %d: no database username", name, i)
					}
					if _, ok := ps.db[f]; !ok {
						ps.db[f] = got[f]
					}
					usernames[got[f]]++
				}
				ps.versions = resp.GetObjectVersion()
			}()
		}
		wg.Wait()
		return counts(proxy)
	}

	t.Logf("workload: %d pods over %d service accounts/Vault roles, %d objects each (%d KV v2 from %d secrets + %d database roles x username/password), %d rotation rounds every %s; provider -cache-ttl %s",
		*pods, *serviceAccounts, objectsPerPod, *kvObjects, *kvSecrets, *dbRoles, *rounds, *rotationInterval, *cacheTTL)
	all := map[string]int{}
	add := func(name string, c map[string]int) {
		n := 0
		for k, v := range c {
			all[k] += v
			n += v
		}
		t.Logf("%s: %d calls %v", name, n, c)
	}
	add("first mounts", phase("first mounts", *startSpread/time.Duration(max(*pods, 1)), false))
	for r := 1; r <= *rounds; r++ {
		add(fmt.Sprintf("rotation round %d", r), phase(fmt.Sprintf("round %d", r), *rotationInterval/time.Duration(max(*pods, 1)), true))
	}
	total := 0
	for _, v := range all {
		total += v
	}
	creds := all["credentials"]
	upstreamLogins := *pods
	upstreamReads := *pods * objectsPerPod * (1 + *rounds)
	upstreamCreds := *pods * 2 * *dbRoles * (1 + *rounds)
	upstream := upstreamLogins + upstreamReads
	ratio := float64(upstream) / float64(max(total, 1))
	t.Logf("all phases: %v", all)
	t.Logf("vault-csi-provider's model: %d logins + %d reads (%d of them database credentials) = %d calls", upstreamLogins, upstreamReads, upstreamCreds, upstream)
	t.Logf("provider-vault: %d calls (%d logins, %d KV reads, %d credentials issued, %d lease renewals, %d token renewals): %.1fx fewer", total,
		all["logins"], all["kv reads"], creds, all["lease renewals"], all["token renewals"], ratio)
	t.Logf("credentials issued per pod per database role: %.2f (target <= 1)", float64(creds)/float64(*pods**dbRoles))
	t.Logf("total calls: %d", total)

	// Identity stays per service account: logins never exceed one per
	// identity here (tokens live 1h), and every pod kept one credential.
	if all["logins"] > *serviceAccounts {
		t.Errorf("logins = %d, more than one per service account", all["logins"])
	}
	if creds > *pods**dbRoles {
		t.Errorf("credentials issued = %d; target at most %d (1 per pod per database role)", creds, *pods**dbRoles)
	}
	for i, ps := range podsState {
		for f, first := range ps.db {
			if usernames[first] != 1+*rounds {
				t.Errorf("pod %d: username of %s was served %d times over %d mounts (changed or shared)", i, f, usernames[first], 1+*rounds)
			}
		}
	}
	if ratio < 10 {
		t.Logf("TARGET MISSED: %.1fx fewer calls, target >= 10x", ratio)
		t.Fail()
	}
}

// counts groups the proxy's counts by kind of call.
func counts(p *vaulttest.FaultProxy) map[string]int {
	c := map[string]int{
		"logins":         p.Count("", "/v1/auth/kubernetes/login"),
		"kv reads":       p.Count("", "/v1/secret/"),
		"credentials":    p.Count("", "/v1/database/creds/"),
		"lease renewals": p.Count("", "/v1/sys/leases/renew"),
		"token renewals": p.Count("", "/v1/auth/token/renew-self"),
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

func mountRequest(t *testing.T, i, sa int, token, objects string, cur []*v1alpha1.ObjectVersion) *v1alpha1.MountRequest {
	t.Helper()
	pod := fmt.Sprintf("pod-%03d", i)
	tj, _ := json.Marshal(map[string]plugin.Token{"vault": {Token: token, ExpirationTimestamp: time.Now().Add(time.Hour)}})
	attrs := map[string]string{
		"roleName": fmt.Sprintf("sa-%02d", sa), "objects": objects,
		plugin.AttrPodName: pod, plugin.AttrPodNamespace: "bench", plugin.AttrPodUID: "uid-" + pod,
		plugin.AttrServiceAccount: fmt.Sprintf("sa-%02d", sa), plugin.AttrTokens: string(tj),
	}
	aj, _ := json.Marshal(attrs)
	return &v1alpha1.MountRequest{Attributes: string(aj), Secrets: "null", TargetPath: "/unused/" + pod, Permission: "420", CurrentObjectVersion: cur}
}
