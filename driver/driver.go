// Package driver is the composition root of the secrets-store CSI driver:
// Config holds every flag, Run wires the packages under internal/ together
// and serves until the context ends.
package driver

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
	"github.com/sscsi/secrets-store/driver/internal/csi"
	"github.com/sscsi/secrets-store/driver/internal/events"
	"github.com/sscsi/secrets-store/driver/internal/kubeclient"
	"github.com/sscsi/secrets-store/driver/internal/metrics"
	"github.com/sscsi/secrets-store/driver/internal/podstatus"
	"github.com/sscsi/secrets-store/driver/internal/publish"
	"github.com/sscsi/secrets-store/driver/internal/registration"
	"github.com/sscsi/secrets-store/driver/internal/rotation"
	"github.com/sscsi/secrets-store/driver/internal/secretsync"
	"github.com/sscsi/secrets-store/driver/internal/spc"
	"github.com/sscsi/secrets-store/driver/internal/tmpfs"
	"github.com/sscsi/secrets-store/internal/atomicfs"
	"github.com/sscsi/secrets-store/internal/pluginclient"
	"github.com/sscsi/secrets-store/internal/serve"
)

// BuildVersion is set at link time.
var BuildVersion = "dev"

// Config is every driver setting; cmd/secrets-store-csi-driver binds flags
// into it.
type Config struct {
	Endpoint                 string
	DriverName               string
	NodeID                   string
	ProviderVolume           string
	AdditionalProviderPaths  []string
	MetricsAddr              string
	MetricsBackend           string
	EnableSecretRotation     bool
	RotationPollInterval     time.Duration
	EnablePprof              bool
	PprofPort                int
	MaxCallRecvMsgSize       int
	ProviderHealthCheck      bool
	ProviderHealthCheckEvery time.Duration
	Kubeconfig               string
	KubeAPIQPS               float32
	KubeAPIBurst             int

	// KubeletDir is kubelet's root directory; the driver registers itself
	// in <KubeletDir>/plugins_registry when KubeletRegistration is set.
	KubeletDir          string
	KubeletRegistration bool
	// KubeletRegistrationPath is the CSI socket as kubelet sees it
	// (default <KubeletDir>/plugins/csi-secrets-store/csi.sock).
	KubeletRegistrationPath string

	TmpfsSizeBytes  int64
	MaxFiles        int
	MaxPayloadBytes int64
	// MaxDirs and MaxPathDepth bound the directories one volume's files
	// create; with MaxFiles they set each tmpfs's inode cap.
	MaxDirs                int
	MaxPathDepth           int
	ProviderConnectTimeout time.Duration
	ProviderTimeout        time.Duration
	// SPCCacheTTL reuses a SecretProviderClass read for this long and
	// shares it between concurrent mounts (0: read on every mount).
	SPCCacheTTL time.Duration
}

// Defaults returns the upstream defaults.
func Defaults() Config {
	return Config{
		Endpoint:                 "unix://tmp/csi.sock",
		DriverName:               "secrets-store.csi.k8s.io",
		ProviderVolume:           "/var/run/secrets-store-csi-providers",
		AdditionalProviderPaths:  []string{"/etc/kubernetes/secrets-store-csi-providers"},
		MetricsAddr:              ":8095",
		MetricsBackend:           "prometheus",
		RotationPollInterval:     2 * time.Minute,
		PprofPort:                6065,
		MaxCallRecvMsgSize:       4194304,
		ProviderHealthCheckEvery: 2 * time.Minute,
		KubeAPIQPS:               50,
		KubeAPIBurst:             100,
		KubeletDir:               "/var/lib/kubelet",
		KubeletRegistration:      true,
		TmpfsSizeBytes:           64 << 20,
		MaxFiles:                 atomicfs.DefaultMaxFiles,
		MaxPayloadBytes:          atomicfs.DefaultMaxTotalBytes,
		MaxDirs:                  atomicfs.DefaultMaxDirs,
		MaxPathDepth:             atomicfs.DefaultMaxDepth,
		ProviderConnectTimeout:   3 * time.Second,
		ProviderTimeout:          60 * time.Second,
		SPCCacheTTL:              time.Second,
	}
}

// Validate checks c and names the flag at fault.
func (c Config) Validate() error {
	var errs []error
	if c.NodeID == "" {
		errs = append(errs, errors.New("--nodeid is required (the Kubernetes node name; in a DaemonSet use the downward API spec.nodeName)"))
	}
	if c.DriverName == "" {
		errs = append(errs, errors.New("--drivername is empty"))
	}
	if _, err := SocketPath(c.Endpoint); err != nil {
		errs = append(errs, err)
	}
	if c.ProviderVolume == "" {
		errs = append(errs, errors.New("--provider-volume is empty"))
	}
	if c.MetricsBackend != "prometheus" {
		errs = append(errs, fmt.Errorf("--metrics-backend %q is not supported; use prometheus", c.MetricsBackend))
	}
	if err := (rotation.Policy{Enabled: c.EnableSecretRotation, Interval: c.RotationPollInterval}).Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.MaxCallRecvMsgSize <= 0 {
		errs = append(errs, errors.New("--max-call-recv-msg-size must be positive"))
	}
	if c.KubeAPIQPS <= 0 || c.KubeAPIBurst <= 0 {
		errs = append(errs, errors.New("--kube-api-qps and --kube-api-burst must be positive"))
	}
	if c.ProviderHealthCheck && c.ProviderHealthCheckEvery <= 0 {
		errs = append(errs, errors.New("--provider-health-check-interval must be positive"))
	}
	if c.ProviderTimeout <= 0 || c.ProviderConnectTimeout <= 0 {
		errs = append(errs, errors.New("--provider-timeout and --provider-connect-timeout must be positive"))
	}
	return errors.Join(errs...)
}

// resumeStatus hands the pod status writer the volumes that a previous
// driver process left with an unconfirmed status (killed inside the
// writer's batching window, or while the API server was away); before the
// CSI socket serves, so no publish or unpublish of the same volume runs
// concurrently. Only the volumes' own records are read: no API call for a
// volume whose status was confirmed.
func resumeStatus(pub *publish.Publisher, m *tmpfs.OS, kubeletDir string) {
	mounts, err := m.Mounted(filepath.Join(kubeletDir, "pods"))
	if err != nil {
		klog.ErrorS(err, "cannot list the volumes mounted before the start; their unconfirmed pod statuses are written on their next fetch")
		return
	}
	pattern := filepath.Join(kubeletDir, "pods", "*", "volumes", "kubernetes.io~csi", "*", "mount")
	var targets []string
	for _, p := range mounts {
		if ok, _ := filepath.Match(pattern, p); ok {
			targets = append(targets, p)
		}
	}
	if n := pub.ResumeStatus(targets); n > 0 || len(targets) > 0 {
		klog.InfoS("volumes mounted before the start", "volumes", len(targets), "unconfirmedStatus", n)
	}
}

// SocketPath turns a CSI endpoint (unix://path, unix:///path or a plain
// path) into an absolute socket path.
func SocketPath(endpoint string) (string, error) {
	p := endpoint
	if rest, ok := strings.CutPrefix(strings.ToLower(endpoint), "unix://"); ok {
		p = endpoint[len(endpoint)-len(rest):]
	} else if strings.Contains(endpoint, "://") {
		return "", fmt.Errorf("--endpoint %q: only unix:// endpoints are supported", endpoint)
	}
	if p == "" {
		return "", fmt.Errorf("--endpoint %q has no socket path", endpoint)
	}
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return filepath.Clean(p), nil
}

// Run serves the driver until ctx is done.
func Run(ctx context.Context, c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	sock, _ := SocketPath(c.Endpoint)
	// Two clients with their own rate limits: reads on a mount's critical
	// path never queue behind background writes (pod status, events,
	// Secret sync).
	kcfg := kubeclient.Config{Kubeconfig: c.Kubeconfig, QPS: c.KubeAPIQPS, Burst: c.KubeAPIBurst, UserAgent: "secrets-store-csi-driver/" + BuildVersion}
	kc, err := kubeclient.New(kcfg)
	if err != nil {
		return err
	}
	bg, err := kubeclient.New(kcfg)
	if err != nil {
		return err
	}
	var spcs spc.Getter = spc.RESTGetter{Client: kc.CRD}
	if c.SPCCacheTTL > 0 {
		spcs = &spc.CachedGetter{Getter: spcs, TTL: c.SPCCacheTTL}
	}
	dirs := append(append([]string{}, c.AdditionalProviderPaths...), c.ProviderVolume)
	providers, err := pluginclient.New(pluginclient.Config{Dirs: nonEmpty(dirs), MaxRecvMsgSize: c.MaxCallRecvMsgSize, ConnectTimeout: c.ProviderConnectTimeout})
	if err != nil {
		return err
	}
	defer providers.Close()
	// The provider label takes only names with a socket on this node.
	m := metrics.NewWithConfig(metrics.Config{KnownProvider: providers.Has})
	// The writer confirms each written status to the pipeline, which keeps
	// "unconfirmed" in the volume's record until then (pub is set below,
	// before anything is recorded).
	var pub *publish.Publisher
	status, err := podstatus.New(podstatus.Config{Client: bg.CRD, NodeName: c.NodeID, Written: func(target string, objects []ssv1.SecretProviderClassObject) {
		pub.StatusWritten(target, objects)
	}})
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	ev := events.New(bg.CoreREST, "secrets-store-csi-driver", c.NodeID)
	secrets, err := secretsync.New(secretsync.Config{Core: bg.CoreREST, CRD: bg.CRD, Events: ev, Metrics: m})
	if err != nil {
		return err
	}
	mounter := tmpfs.NewOS()
	pub, err = publish.New(publish.Config{
		Mounter:   mounter,
		SPCs:      spcs,
		Providers: timeoutProviders{providers, c.ProviderTimeout},
		Rotation:  rotation.Policy{Enabled: c.EnableSecretRotation, Interval: c.RotationPollInterval},
		TmpfsSize: c.TmpfsSizeBytes,
		Limits:    atomicfs.Limits{MaxFiles: c.MaxFiles, MaxTotalBytes: c.MaxPayloadBytes, MaxDirs: c.MaxDirs, MaxDepth: c.MaxPathDepth},
		Status:    status,
		Secrets:   secrets,
		Events:    ev,
		Metrics:   m,
	})
	if err != nil {
		return err
	}
	resumeStatus(pub, mounter, c.KubeletDir)
	ready := newReadiness(kc)
	srv, err := csi.New(csi.Config{
		DriverName: c.DriverName, Version: BuildVersion, NodeID: c.NodeID, Publisher: pub,
		Ready: ready.check, Unpublished: m.Unpublish,
	})
	if err != nil {
		return err
	}

	g.Go(func() error { ev.Run(ctx); return nil })
	g.Go(func() error { status.Run(ctx); return nil })
	g.Go(func() error { secrets.Run(ctx); return nil })
	g.Go(func() error { return serveCSI(ctx, sock, srv) })
	if c.MetricsAddr != "" {
		g.Go(func() error { return serve.HTTP(ctx, c.MetricsAddr, metricsMux(m, ready)) })
	}
	if c.EnablePprof {
		g.Go(func() error { return serve.HTTP(ctx, fmt.Sprintf("127.0.0.1:%d", c.PprofPort), pprofMux()) })
	}
	if c.KubeletRegistration {
		regDir := filepath.Join(c.KubeletDir, "plugins_registry")
		ep := c.KubeletRegistrationPath
		if ep == "" {
			ep = filepath.Join(c.KubeletDir, "plugins", "csi-secrets-store", "csi.sock")
		}
		reg, err := registration.New(registration.Config{DriverName: c.DriverName, Endpoint: ep, RegistryDir: regDir})
		if err != nil {
			return err
		}
		g.Go(func() error { return reg.Serve(ctx) })
	}
	if c.ProviderHealthCheck {
		g.Go(func() error { checkProviders(ctx, providers, c.ProviderHealthCheckEvery); return nil })
	}
	klog.InfoS("driver starting", "driver", c.DriverName, "version", BuildVersion, "node", c.NodeID, "endpoint", sock,
		"rotation", c.EnableSecretRotation, "rotationPollInterval", c.RotationPollInterval, "providerDirs", dirs)
	return g.Wait()
}

func nonEmpty(in []string) []string {
	var out []string
	for _, s := range in {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
