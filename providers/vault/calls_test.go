package vault_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sscsi/secrets-store/providers/vault"
)

// TestReferenceWorkloadCalls runs make bench-vault-calls' workload (100
// pods over 20 service accounts and Vault roles; 8 KV v2 objects and a
// database role's username and password each; 5 rotation rounds every 2
// minutes, each spread over the interval) against the fake Vault and
// checks the per-pod credential target. The real figures come from
// make bench-vault-calls against a real Vault; call counts depend only on
// the provider, so both must agree.
func TestReferenceWorkloadCalls(t *testing.T) {
	for _, kvSecrets := range []int{8, 4} {
		t.Run(fmt.Sprintf("kv-secrets=%d", kvSecrets), func(t *testing.T) {
			e := newEnv(t, vault.BackendConfig{CacheTTL: vault.DefaultCacheTTL})
			const pods, sas, rounds = 100, 20, 5
			spcs := map[int]map[string]string{}
			for a := range sas {
				sa := fmt.Sprintf("sa-%02d", a)
				e.vault.role(sa, "bench", sa, "secret/data/"+sa+"/", "database/creds/")
				var lines []string
				for k := range kvSecrets {
					data := map[string]any{}
					for j := range 8 / kvSecrets {
						data[fmt.Sprintf("k%d", j)] = fmt.Sprintf("%s-%d-%d", sa, k, j)
						lines = append(lines, fmt.Sprintf("- {objectName: kv-%d-%d, secretPath: secret/data/%s/s%d, secretKey: k%d}", k, j, sa, k, j))
					}
					e.vault.putKV2(fmt.Sprintf("%s/s%d", sa, k), data)
				}
				lines = append(lines, "- {objectName: db-user, secretPath: database/creds/app, secretKey: username}",
					"- {objectName: db-pass, secretPath: database/creds/app, secretKey: password}")
				spcs[a] = spc(sa, lines...)
			}
			users := map[int]string{}
			var mu sync.Mutex // guards users
			phase := func(step time.Duration) {
				var wg sync.WaitGroup
				sem := make(chan struct{}, 10)
				for i := range pods {
					e.clock.Step(step)
					sem <- struct{}{}
					wg.Add(1)
					go func() {
						defer wg.Done()
						defer func() { <-sem }()
						a := i / (pods / sas)
						got := e.mount(request("bench", fmt.Sprintf("pod-%03d", i), fmt.Sprintf("sa-%02d", a), spcs[a]))
						mu.Lock()
						defer mu.Unlock()
						if prev, ok := users[i]; ok && prev != got["db-user"] {
							t.Errorf("pod %d: credential changed across rotations", i)
						}
						users[i] = got["db-user"]
						if !strings.HasPrefix(got["kv-0-0"], fmt.Sprintf("sa-%02d-", a)) {
							t.Errorf("pod %d got another identity's value %q", i, got["kv-0-0"])
						}
					}()
				}
				wg.Wait()
			}
			phase(10 * time.Second / pods)
			for range rounds {
				phase(2 * time.Minute / pods)
			}
			e.vault.mu.Lock()
			calls := map[string]int{}
			total := 0
			for k, v := range e.vault.calls {
				calls[k] = v
				total += v
			}
			e.vault.mu.Unlock()
			creds := calls["GET database/creds/app"]
			kv := total - calls["login"] - creds - calls["renew-lease"] - calls["renew-token"]
			upstream := pods + pods*10*(1+rounds)
			t.Logf("kv-secrets=%d: %d calls (%d logins, %d KV reads, %d credentials, %d lease renewals, %d token renewals); vault-csi-provider's model %d: %.1fx fewer",
				kvSecrets, total, calls["login"], kv, creds, calls["renew-lease"], calls["renew-token"], upstream, float64(upstream)/float64(total))
			if creds > pods {
				t.Errorf("credentials issued = %d, want at most 1 per pod (%d)", creds, pods)
			}
			if calls["login"] > sas {
				t.Errorf("logins = %d, want at most 1 per service account", calls["login"])
			}
		})
	}
}

// TestLeasedAnswerNotSharedWithWaiters: pods of one identity mounting a
// leased path at the same moment each get their own credential, even
// though their first reads share one in-flight call.
func TestLeasedAnswerNotSharedWithWaiters(t *testing.T) {
	e := newEnv(t, vault.BackendConfig{CacheTTL: time.Minute})
	e.vault.role("app", "ns", "app", "database/")
	attrs := spc("app", "- {objectName: user, secretPath: database/creds/app, secretKey: username}")
	var wg sync.WaitGroup
	var mu sync.Mutex // guards seen
	seen := map[string]string{}
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pod := fmt.Sprintf("p%d", i)
			u := e.mount(request("ns", pod, "app", attrs))["user"]
			mu.Lock()
			defer mu.Unlock()
			for other, v := range seen {
				if v == u {
					t.Errorf("pods %s and %s share credential %s", other, pod, u)
				}
			}
			seen[pod] = u
		}()
	}
	wg.Wait()
}
