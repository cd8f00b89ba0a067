// Command awscalls counts the AWS API calls the AWS provider makes for a
// reference workload, against moto_server behind a counting proxy:
// 100 pods (distinct pods and tokens) mount one SecretProviderClass with
// 10 Secrets Manager secrets and 10 SSM parameters, then 5 rotation rounds
// re-mount everything with nothing changed. The pods run under
// -service-accounts service accounts (pod i under account i mod N), whose
// IRSA annotations name -roles roles (account j assumes role j mod R): one
// account flatters the caches, which are per identity; 20 accounts and 5
// roles is the second reference workload. -credentials-cache=false and
// -role-cache-ttl=0 turn the provider's identity caches off. Mounts go through the provider's gRPC server on a unix socket,
// as the driver sends them (tokens in the attributes, stored versions on
// rotation). Time is simulated: first mounts are spread over the pods'
// start-up, each rotation round over one rotation poll interval.
//
// The last line is "total calls: N". Upstream's provider makes 7,200 for
// this workload (1 STS + 10 GetSecretValue + 1 GetParameters per mount,
// 1 STS + 10 DescribeSecret + 1 GetParameters per rotation).
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/sscsi/secrets-store/providers/aws"
	"github.com/sscsi/secrets-store/providers/aws/auth"
	"github.com/sscsi/secrets-store/providers/plugin"
	"github.com/sscsi/secrets-store/test/faultproxy"
	"github.com/sscsi/secrets-store/test/moto"
)

type config struct {
	pods, rounds, secrets, params, parallel, serviceAccounts, roles int
	cacheTTL, roleCacheTTL, rotationInterval, startSpread           time.Duration
	credentialsCache                                                bool
	region                                                          string
}

func main() {
	var cfg config
	flag.IntVar(&cfg.pods, "pods", 100, "pods mounting the SecretProviderClass")
	flag.IntVar(&cfg.rounds, "rounds", 5, "rotation rounds with nothing changed")
	flag.IntVar(&cfg.secrets, "secrets", 10, "Secrets Manager objects")
	flag.IntVar(&cfg.params, "params", 10, "SSM parameters")
	flag.IntVar(&cfg.parallel, "parallel", 10, "concurrent mounts")
	flag.IntVar(&cfg.serviceAccounts, "service-accounts", 1, "service accounts the pods are spread over")
	flag.IntVar(&cfg.roles, "roles", 1, "IAM roles the service accounts are spread over")
	flag.DurationVar(&cfg.cacheTTL, "cache-ttl", aws.DefaultCacheTTL, "provider --cache-ttl")
	flag.DurationVar(&cfg.roleCacheTTL, "role-cache-ttl", aws.DefaultRoleCacheTTL, "provider --role-cache-ttl (0: off)")
	flag.BoolVar(&cfg.credentialsCache, "credentials-cache", true, "provider --credentials-cache")
	flag.DurationVar(&cfg.rotationInterval, "rotation-interval", 2*time.Minute, "driver --rotation-poll-interval; each round's re-mounts are spread over it")
	flag.DurationVar(&cfg.startSpread, "start-spread", 10*time.Second, "first mounts are spread over this long")
	flag.StringVar(&cfg.region, "region", "us-east-1", "region")
	flag.Parse()
	if cfg.serviceAccounts < 1 || cfg.roles < 1 || cfg.roles > cfg.serviceAccounts || cfg.pods < 1 {
		fmt.Fprintln(os.Stderr, "awscalls: need pods >= 1 and 1 <= roles <= service-accounts")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "awscalls:", err)
		os.Exit(1)
	}
}

const namespace = "bench"

// serviceAccount is pod i's service account; role is account j's role.
func (c config) serviceAccount(pod int) string { return fmt.Sprintf("app-%02d", pod%c.serviceAccounts) }
func (c config) role(account int) string {
	return fmt.Sprintf("arn:aws:iam::123456789012:role/bench-%d", account%c.roles)
}

func run(ctx context.Context, cfg config) error {
	srv, err := moto.Start(ctx, nil)
	if err != nil {
		return err
	}
	defer srv.Stop()
	proxy, err := faultproxy.New(srv.URL)
	if err != nil {
		return err
	}
	defer proxy.Close()

	want, objects, err := seed(ctx, srv.URL, cfg)
	if err != nil {
		return err
	}
	awsCfg, err := aws.NewAWSConfig(ctx, aws.AWSOptions{EndpointURL: proxy.URL})
	if err != nil {
		return err
	}
	kube := kubefake.NewClientset()
	for j := range cfg.serviceAccounts {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: cfg.serviceAccount(j), Annotations: map[string]string{auth.RoleAnnotation: cfg.role(j)}}}
		if _, err := kube.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	clk := clocktesting.NewFakeClock(time.Now())
	metrics := aws.NewMetrics(nil)
	backend, err := aws.NewBackend(aws.BackendConfig{
		AWS: awsCfg, Kube: kube, Clock: clk, CacheTTL: cfg.cacheTTL, Metrics: metrics,
		RoleCacheTTL: cfg.roleCacheTTL, NoRoleCache: cfg.roleCacheTTL == 0, NoCredentialsCache: !cfg.credentialsCache,
	})
	if err != nil {
		return err
	}
	client, cleanup, err := serve(ctx, backend)
	if err != nil {
		return err
	}
	defer cleanup()

	spc := map[string]string{"objects": objects, "region": cfg.region}
	versions := make([][]*v1alpha1.ObjectVersion, cfg.pods)
	phase := func(name string, step time.Duration, rotation bool) error {
		proxy.ResetCounts()
		sem := make(chan struct{}, cfg.parallel)
		var wg sync.WaitGroup
		var mu sync.Mutex // guards firstErr
		var firstErr error
		for i := range cfg.pods {
			clk.Step(step)
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				var cur []*v1alpha1.ObjectVersion
				if rotation {
					cur = versions[i]
				}
				resp, err := mount(ctx, client, spc, i, cfg.serviceAccount(i), cur)
				if err == nil {
					err = check(resp, want)
				}
				if err != nil {
					mu.Lock()
					firstErr = errors.Join(firstErr, fmt.Errorf("pod %d: %w", i, err))
					mu.Unlock()
					return
				}
				versions[i] = resp.GetObjectVersion()
			}()
		}
		wg.Wait()
		if firstErr != nil {
			return firstErr
		}
		fmt.Printf("%s: %d calls\n%s", name, proxy.Total(), faultproxy.Summary(proxy.Counts()))
		return nil
	}
	fmt.Printf("workload: %d pods across %d service accounts and %d roles, %d secrets + %d parameters, %d rotation rounds every %s; provider cache-ttl %s, role-cache-ttl %s, credentials-cache %t\n",
		cfg.pods, cfg.serviceAccounts, cfg.roles, cfg.secrets, cfg.params, cfg.rounds, cfg.rotationInterval, cfg.cacheTTL, cfg.roleCacheTTL, cfg.credentialsCache)
	total := 0
	all := map[string]int{}
	add := func() {
		for k, v := range proxy.Counts() {
			all[k] += v
			total += v
		}
	}
	if err := phase("first mounts", cfg.startSpread/time.Duration(max(cfg.pods, 1)), false); err != nil {
		return err
	}
	add()
	for r := 1; r <= cfg.rounds; r++ {
		if err := phase(fmt.Sprintf("rotation round %d", r), cfg.rotationInterval/time.Duration(max(cfg.pods, 1)), true); err != nil {
			return err
		}
		add()
	}
	upstream := cfg.pods * (1 + cfg.secrets + (cfg.params+9)/10) * (1 + cfg.rounds)
	fmt.Printf("all phases:\n%s", faultproxy.Summary(all))
	fmt.Printf("upstream for this workload: %d calls; ratio %.0fx fewer\n", upstream, float64(upstream)/float64(max(total, 1)))
	fmt.Printf("service account reads: %d\n", serviceAccountReads(kube))
	fmt.Printf("total calls: %d\n", total)
	return nil
}

// seed creates the objects in moto and returns the expected file contents
// and the objects parameter.
func seed(ctx context.Context, url string, cfg config) (map[string]string, string, error) {
	c := sdkaws.Config{Region: cfg.region, Credentials: credentials.NewStaticCredentialsProvider("seed", "seed", ""), BaseEndpoint: sdkaws.String(url)}
	sm, ps := secretsmanager.NewFromConfig(c), ssm.NewFromConfig(c)
	want := map[string]string{}
	var lines []string
	for i := range cfg.secrets {
		name := fmt.Sprintf("bench/secret-%02d", i)
		val := fmt.Sprintf(`{"password":"pw-%d"}`, i)
		if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: sdkaws.String(name), SecretString: sdkaws.String(val)}); err != nil {
			return nil, "", fmt.Errorf("seed %s: %w", name, err)
		}
		lines = append(lines, fmt.Sprintf("- {objectName: %s, objectType: secretsmanager}", name))
		want[strings.ReplaceAll(name, "/", "_")] = val
	}
	for i := range cfg.params {
		name := fmt.Sprintf("/bench/param-%02d", i)
		val := fmt.Sprintf("value-%d", i)
		if _, err := ps.PutParameter(ctx, &ssm.PutParameterInput{Name: sdkaws.String(name), Value: sdkaws.String(val), Type: ssmtypes.ParameterTypeSecureString}); err != nil {
			return nil, "", fmt.Errorf("seed %s: %w", name, err)
		}
		lines = append(lines, fmt.Sprintf("- {objectName: %s, objectType: ssmparameter}", name))
		want[strings.ReplaceAll(name, "/", "_")] = val
	}
	return want, strings.Join(lines, "\n"), nil
}

func serve(ctx context.Context, b plugin.Backend) (v1alpha1.CSIDriverProviderClient, func(), error) {
	dir, err := os.MkdirTemp("", "awscalls")
	if err != nil {
		return nil, nil, err
	}
	srv, err := plugin.New(plugin.Config{Name: "aws", Version: "bench", Backend: b})
	if err != nil {
		return nil, nil, err
	}
	sock := filepath.Join(dir, "aws.sock")
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, sock) }()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority("localhost"))
	if err != nil {
		cancel()
		return nil, nil, err
	}
	client := v1alpha1.NewCSIDriverProviderClient(conn)
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if _, err := client.Version(ctx, &v1alpha1.VersionRequest{Version: "v1alpha1"}); err == nil {
			break
		} else if time.Since(start) > 10*time.Second {
			cancel()
			return nil, nil, fmt.Errorf("provider socket: %w", err)
		}
	}
	return client, func() {
		conn.Close()
		cancel()
		<-done
		os.RemoveAll(dir)
	}, nil
}

// serviceAccountReads counts the provider's reads of service accounts (the
// IRSA role annotation) on the fake API server.
func serviceAccountReads(kube *kubefake.Clientset) int {
	n := 0
	for _, a := range kube.Actions() {
		if a.GetVerb() == "get" && a.GetResource().Resource == "serviceaccounts" {
			n++
		}
	}
	return n
}

// token builds a fresh service account token for pod i under account sa
// (kubelet sends a new one on every republish).
func token(i int, sa string) string {
	enc := base64.RawURLEncoding
	c, _ := json.Marshal(map[string]any{
		"sub": "system:serviceaccount:" + namespace + ":" + sa, "aud": []string{auth.AudienceIRSA},
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().UnixNano(),
		"kubernetes.io": map[string]any{"pod": map[string]string{"name": fmt.Sprintf("app-%d", i)}},
	})
	return enc.EncodeToString([]byte(`{"alg":"RS256"}`)) + "." + enc.EncodeToString(c) + "." + enc.EncodeToString([]byte(fmt.Sprintf("sig-%d-%d", i, time.Now().UnixNano())))
}

func mount(ctx context.Context, client v1alpha1.CSIDriverProviderClient, spc map[string]string, i int, sa string, cur []*v1alpha1.ObjectVersion) (*v1alpha1.MountResponse, error) {
	attrs := map[string]string{
		plugin.AttrPodName: fmt.Sprintf("app-%d", i), plugin.AttrPodNamespace: namespace, plugin.AttrPodUID: fmt.Sprintf("uid-%d", i),
		plugin.AttrServiceAccount: sa, "csi.storage.k8s.io/ephemeral": "true", plugin.AttrSPCName: "bench",
	}
	for k, v := range spc {
		attrs[k] = v
	}
	tj, _ := json.Marshal(map[string]plugin.Token{auth.AudienceIRSA: {Token: token(i, sa), ExpirationTimestamp: time.Now().Add(time.Hour)}})
	attrs[plugin.AttrTokens] = string(tj)
	aj, _ := json.Marshal(attrs)
	return client.Mount(ctx, &v1alpha1.MountRequest{Attributes: string(aj), Secrets: "null", TargetPath: "/var/lib/kubelet/pods/bench/volumes/x", Permission: "420", CurrentObjectVersion: cur})
}

func check(resp *v1alpha1.MountResponse, want map[string]string) error {
	if len(resp.GetFiles()) != len(want) {
		return fmt.Errorf("%d files, want %d", len(resp.GetFiles()), len(want))
	}
	for _, f := range resp.GetFiles() {
		if string(f.GetContents()) != want[f.GetPath()] {
			return fmt.Errorf("file %s has unexpected contents", f.GetPath())
		}
	}
	return nil
}
