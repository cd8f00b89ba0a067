// Command provider-aws serves AWS Secrets Manager and SSM Parameter Store
// over the Secrets Store CSI provider API, with each pod's own identity.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/sscsi/secrets-store/providers/aws"
)

var version = "dev"

func main() {
	var cfg aws.Config
	klog.InitFlags(nil)
	flag.StringVar(&cfg.Socket, "endpoint", "/var/run/secrets-store-csi-providers/aws.sock", "unix socket to serve the provider API on")
	flag.StringVar(&cfg.HTTPAddr, "metrics-addr", ":8990", "HTTP address for /healthz and /metrics (empty: off)")
	flag.BoolVar(&cfg.WriteToTarget, "write-to-target", false, "legacy mode: write files into the target path instead of returning them to the driver")
	flag.StringVar(&cfg.Region, "region", os.Getenv("AWS_REGION"), "default region for SecretProviderClasses that set none (default $AWS_REGION)")
	flag.StringVar(&cfg.NodeName, "node-name", os.Getenv("NODE_NAME"), "this node's name; without --region, SecretProviderClasses without a region use its topology.kubernetes.io/region label (default $NODE_NAME)")
	flag.StringVar(&cfg.EndpointURL, "endpoint-url", "", "override every AWS endpoint, STS included (default: the SDK's, which honours AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>)")
	flag.StringVar(&cfg.PodIdentityEndpoint, "pod-identity-endpoint", os.Getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI"), "EKS Pod Identity agent URL (default $AWS_CONTAINER_CREDENTIALS_FULL_URI, else the agent's link-local address for preferredAddressType)")
	flag.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "kubeconfig path (default: in-cluster)")
	qps := flag.Float64("qps", 5, "Kubernetes client queries per second")
	flag.IntVar(&cfg.Burst, "burst", 10, "Kubernetes client burst")
	flag.DurationVar(&cfg.CacheTTL, "cache-ttl", aws.DefaultCacheTTL, "how long a fetched value is shared between mounts of the same identity (0: off, pinned versions included); keep it below the rotation poll interval")
	flag.DurationVar(&cfg.PinnedCacheTTL, "pinned-cache-ttl", aws.DefaultPinnedCacheTTL, "the same for a pinned objectVersion, which cannot change (never less than --cache-ttl)")
	flag.DurationVar(&cfg.RoleCacheTTL, "role-cache-ttl", aws.DefaultRoleCacheTTL, "how long a service account's eks.amazonaws.com/role-arn annotation is cached (0: off, read on every mount)")
	flag.BoolVar(&cfg.CredentialsCache, "credentials-cache", true, "keep each identity's AWS credentials until 5 minutes before they expire (false: STS or the Pod Identity agent on every mount)")
	flag.IntVar(&cfg.MaxAttempts, "max-attempts", 0, "AWS SDK attempts per call, retries included (0: SDK default)")
	// Flags of the upstream AWS provider, so its DaemonSet arguments work.
	providerVolume := flag.String("provider-volume", "", "upstream-compatible: directory for the socket (<dir>/aws.sock); overrides --endpoint")
	driverWrites := flag.Bool("driver-writes-secrets", true, "upstream-compatible: false selects legacy mode, like --write-to-target")
	flag.Parse()
	if *providerVolume != "" {
		cfg.Socket = filepath.Join(*providerVolume, "aws.sock")
	}
	if !*driverWrites {
		cfg.WriteToTarget = true
	}
	cfg.QPS = float32(*qps)
	cfg.Version = version
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := aws.Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "provider-aws:", err)
		os.Exit(1)
	}
}
