package aws_test

import (
	"context"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestHostileTemplateDoesNotStarveOthers: pods of one SecretProviderClass
// mount templates that would run for ever (a range over a huge integer,
// ranges nested over a large value); each mount fails InvalidArgument naming
// the object and objectTemplate, and meanwhile other pods' mounts through
// the same provider keep succeeding. Timings are logged. Without
// objtemplate's step bound the hostile mounts never end: each gives up at
// its deadline (as kubelet does, then retries while the provider keeps
// computing) and the test fails naming DeadlineExceeded.
func TestHostileTemplateDoesNotStarveOthers(t *testing.T) {
	e := newEnv(t, envOptions{})
	big, ok := e.name("big"), e.name("ok")
	e.putSecret(region, big, sdkaws.String("["+strings.Repeat("1,", 9999)+"1]"), nil)
	e.putSecret(region, ok, sdkaws.String("fine"), nil)
	c := e.grpcClient(false)
	hostile := []string{
		`{{range 1000000000000}}{{end}}`,
		`{{range .}}{{range $}}{{range $}}{{end}}{{end}}{{end}}`,
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var mu sync.Mutex // guards attack
	var attack []time.Duration
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tmpl := hostile[i%len(hostile)]
			for {
				select {
				case <-stop:
					return
				default:
				}
				req := wireRequest(t, request("attacker", "app", objects("- objectName: "+big+"\n  objectType: secretsmanager\n  objectTemplate: '"+tmpl+"'")), t.TempDir())
				ctx, cancel := context.WithTimeout(t.Context(), mountDeadline)
				start := time.Now()
				_, err := c.Mount(ctx, req)
				d := time.Since(start)
				cancel()
				if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), big) || !strings.Contains(err.Error(), "objectTemplate") {
					t.Errorf("hostile mount: %v; want InvalidArgument naming %s and objectTemplate", err, big)
					return
				}
				mu.Lock()
				attack = append(attack, d)
				mu.Unlock()
			}
		}()
	}
	var victims []time.Duration
	time.Sleep(200 * time.Millisecond) // the attack is under way
	for i := range 20 {
		req := wireRequest(t, request("victim", "app", objects("- {objectName: "+ok+", objectType: secretsmanager, objectAlias: ok}")), t.TempDir())
		ctx, cancel := context.WithTimeout(t.Context(), mountDeadline)
		start := time.Now()
		resp, err := c.Mount(ctx, req)
		cancel()
		if err != nil || len(resp.GetFiles()) != 1 || string(resp.GetFiles()[0].GetContents()) != "fine" {
			t.Fatalf("victim mount %d during the attack: %v", i, err)
		}
		victims = append(victims, time.Since(start))
	}
	close(stop)
	wg.Wait()
	if len(attack) == 0 {
		t.Fatal("no hostile mount finished")
	}
	t.Logf("during the attack: %d victim mounts succeeded, latency %s; %d hostile mounts refused, latency %s", len(victims), summary(victims), len(attack), summary(attack))
}

// mountDeadline is how long one mount may take in this test: kubelet's
// NodePublishVolume deadline is 2 minutes; this is shorter so that a
// missing bound fails the test quickly, and far above a bounded mount on a
// loaded machine (hostile mounts max 2.9 s on 2 cores at load 35).
const mountDeadline = 30 * time.Second

func summary(ds []time.Duration) string {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return "p50 " + s[len(s)/2].Round(time.Millisecond).String() + " max " + s[len(s)-1].Round(time.Millisecond).String()
}
