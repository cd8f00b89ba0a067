// Command secrets-store-sync-controller keeps Kubernetes Secrets in sync
// with external secret stores for SecretSync objects
// (secret-sync.x-k8s.io/v1alpha1), through the same provider plugins as
// the CSI driver, with no pod mounting a volume. Flag names and defaults
// follow kubernetes-sigs/secrets-store-sync-controller.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"github.com/sscsi/secrets-store/synccontroller"
)

var version = "dev"

// listFlag is a flag that may be repeated and holds comma lists.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func main() {
	var cfg synccontroller.Config
	var audiences, providerDirs listFlag
	var showVersion bool
	var qps float64
	klog.InitFlags(nil)
	flag.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "kubeconfig path (empty: in-cluster)")
	flag.BoolVar(&cfg.LeaderElect, "leader-elect", true, "elect one active replica through a Lease")
	flag.StringVar(&cfg.LeaderElectionNamespace, "leader-election-namespace", "kube-system", "namespace of the leader election Lease")
	flag.StringVar(&cfg.LeaderElectionID, "leader-election-id", "secrets-store-sync-controller", "name of the leader election Lease")
	flag.StringVar(&cfg.ServingAddress, "controller-server-address", ":8081", "address serving /healthz, /readyz and /metrics (empty: off)")
	flag.IntVar(&cfg.MaxCallRecvMsg, "max-call-recv-msg-size", 4<<20, "largest provider response accepted (bytes)")
	flag.Var(&audiences, "token-request-audience", "audience of the service account tokens passed to providers; repeat or comma-separate (empty: the API server's audience)")
	flag.Var(&providerDirs, "provider-volume", "directory holding provider sockets <provider>.sock; repeat or comma-separate (default /provider)")
	flag.DurationVar(&cfg.RotationPollInterval, "rotation-poll-interval", 12*time.Hour, "how often each SecretSync is re-fetched from its provider, jittered by 10% (0s: only when it or its SecretProviderClass changes)")
	flag.StringVar(&cfg.ControllerName, "controller-name", "", "handle only SecretSyncs whose spec.secretSyncControllerName is empty or this name")
	flag.IntVar(&cfg.Workers, "workers", 4, "SecretSyncs synced at once")
	flag.Float64Var(&qps, "kube-api-qps", 20, "Kubernetes API requests per second")
	flag.IntVar(&cfg.Burst, "kube-api-burst", 40, "Kubernetes API request burst")
	flag.BoolVar(&showVersion, "version", false, "print the version and exit")
	flag.Parse()
	if showVersion {
		fmt.Println(version)
		return
	}
	cfg.QPS = float32(qps)
	cfg.TokenRequestAudiences = audiences
	cfg.ProviderDirs = providerDirs
	if len(cfg.ProviderDirs) == 0 {
		cfg.ProviderDirs = []string{"/provider"}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := synccontroller.Run(ctx, cfg); err != nil {
		klog.ErrorS(err, "secrets-store-sync-controller")
		klog.Flush()
		os.Exit(1)
	}
}
