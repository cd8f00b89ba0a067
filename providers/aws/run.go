package aws

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"

	"github.com/sscsi/secrets-store/internal/kubeapi"
	"github.com/sscsi/secrets-store/internal/serve"
	"github.com/sscsi/secrets-store/providers/aws/params"
	"github.com/sscsi/secrets-store/providers/plugin"
)

// Config configures the provider-aws process.
type Config struct {
	// Socket is the unix socket to serve on, e.g.
	// /var/run/secrets-store-csi-providers/aws.sock.
	Socket string
	// HTTPAddr serves /healthz and /metrics ("" = off).
	HTTPAddr string
	// WriteToTarget selects legacy mode (the provider writes the files).
	WriteToTarget bool
	// Version is reported by the Version RPC.
	Version string
	// Region is the default region for SecretProviderClasses without one.
	Region string
	// NodeName is this node; without Region, its region label is the
	// default.
	NodeName string
	// EndpointURL overrides every AWS endpoint (STS included), e.g. an
	// emulator; empty means the SDK's standard resolution, which honours
	// AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>.
	EndpointURL string
	// PodIdentityEndpoint overrides the EKS Pod Identity agent URL.
	PodIdentityEndpoint string
	// Kubeconfig is a kubeconfig path; empty means in-cluster.
	Kubeconfig string
	// QPS and Burst limit the Kubernetes client.
	QPS   float32
	Burst int
	// CacheTTL is how long a value is shared between mounts of the same
	// identity (0 = no sharing); a pinned version is shared for
	// PinnedCacheTTL (0 = as long as CacheTTL).
	CacheTTL       time.Duration
	PinnedCacheTTL time.Duration
	// RoleCacheTTL is how long a service account's IRSA role annotation
	// is cached (0 = read it on every mount).
	RoleCacheTTL time.Duration
	// CredentialsCache keeps each identity's AWS credentials until shortly
	// before they expire; false asks STS or the Pod Identity agent on
	// every mount.
	CredentialsCache bool
	// MaxAttempts is the SDK's attempts per call, retries included.
	MaxAttempts int
}

// Validate checks cfg.
func (c Config) Validate() error {
	if c.Socket == "" {
		return errors.New("--endpoint is empty: give the unix socket path, e.g. /var/run/secrets-store-csi-providers/aws.sock")
	}
	if c.Region != "" && !params.ValidRegion(c.Region) {
		return fmt.Errorf("--region %q is not a region name like us-east-1", c.Region)
	}
	for flag, u := range map[string]string{"--endpoint-url": c.EndpointURL, "--pod-identity-endpoint": c.PodIdentityEndpoint} {
		if u == "" {
			continue
		}
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("%s %q is not an http(s) URL", flag, u)
		}
	}
	if c.QPS < 0 || c.Burst < 0 {
		return errors.New("--qps and --burst must not be negative")
	}
	for flag, d := range map[string]time.Duration{"--cache-ttl": c.CacheTTL, "--pinned-cache-ttl": c.PinnedCacheTTL, "--role-cache-ttl": c.RoleCacheTTL} {
		if d < 0 {
			return fmt.Errorf("%s must not be negative (0 turns that cache off)", flag)
		}
	}
	if c.MaxAttempts < 0 || c.MaxAttempts > 20 {
		return errors.New("--max-attempts must be between 0 (SDK default) and 20")
	}
	return nil
}

// AWSOptions shape the base SDK configuration.
type AWSOptions struct {
	// EndpointURL overrides every service endpoint.
	EndpointURL string
	// MaxAttempts per call, retries included (0: the SDK's 3).
	MaxAttempts int
	// MaxBackoff caps the delay between retries (0: the SDK's 20s).
	MaxBackoff time.Duration
}

// NewAWSConfig loads the SDK configuration used for every region: the
// standard environment and shared config (endpoint overrides included),
// a retryer with backoff for throttling, and no credentials of its own.
func NewAWSConfig(ctx context.Context, o AWSOptions) (aws.Config, error) {
	opts := []func(*config.LoadOptions) error{
		config.WithRegion("us-east-1"),
		// Never the node's identity: calls carry the pod's credentials.
		config.WithCredentialsProvider(aws.AnonymousCredentials{}),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(so *retry.StandardOptions) {
				if o.MaxAttempts > 0 {
					so.MaxAttempts = o.MaxAttempts
				}
				if o.MaxBackoff > 0 {
					so.MaxBackoff = o.MaxBackoff
				}
				// The client-side retry quota is shared by all pods on the
				// node; one pod's throttled secret must not stop another
				// pod's retries.
				so.RateLimiter = ratelimit.None
			})
		}),
	}
	if o.EndpointURL != "" {
		opts = append(opts, config.WithBaseEndpoint(o.EndpointURL))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS SDK configuration: %w", err)
	}
	return cfg, nil
}

func kubeClient(c Config) (kubernetes.Interface, error) {
	// Through kubeapi, whose log filter keeps object bodies out of the log.
	rc, err := kubeapi.Load(c.Kubeconfig)
	if err != nil {
		return nil, err
	}
	if c.QPS > 0 {
		rc.QPS = c.QPS
	}
	if c.Burst > 0 {
		rc.Burst = c.Burst
	}
	rc.UserAgent = "secrets-store-provider-aws/" + c.Version
	return kubernetes.NewForConfig(rc)
}

// Run serves until ctx is done.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	kube, err := kubeClient(cfg)
	if err != nil {
		return err
	}
	awsCfg, err := NewAWSConfig(ctx, AWSOptions{EndpointURL: cfg.EndpointURL, MaxAttempts: cfg.MaxAttempts})
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	b, err := NewBackend(BackendConfig{
		AWS: awsCfg, Kube: kube, DefaultRegion: cfg.Region, NodeName: cfg.NodeName, PodIdentityEndpoint: cfg.PodIdentityEndpoint,
		CacheTTL: cfg.CacheTTL, PinnedCacheTTL: max(cfg.PinnedCacheTTL, cfg.CacheTTL), Metrics: NewMetrics(reg),
		RoleCacheTTL: cfg.RoleCacheTTL, NoRoleCache: cfg.RoleCacheTTL == 0, NoCredentialsCache: !cfg.CredentialsCache,
	})
	if err != nil {
		return err
	}
	srv, err := plugin.New(plugin.Config{Name: "aws", Version: cfg.Version, Backend: b, WriteToTarget: cfg.WriteToTarget})
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(ctx, cfg.Socket) })
	if cfg.HTTPAddr != "" {
		g.Go(func() error { return serve.HTTP(ctx, cfg.HTTPAddr, srv.HTTPHandler(reg)) })
	}
	return g.Wait()
}
