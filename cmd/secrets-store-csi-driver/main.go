// Command secrets-store-csi-driver is the node plugin of the Secrets Store
// CSI driver: it mounts secrets from provider plugins into pods.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr/funcr"
	"k8s.io/klog/v2"

	"github.com/sscsi/secrets-store/driver"
	"github.com/sscsi/secrets-store/internal/sysmon"
)

func main() {
	cfg := driver.Defaults()
	fs := flag.NewFlagSet(os.Args[0], flag.ExitOnError)
	klog.InitFlags(fs)
	var additional string
	var jsonLogs, showVersion bool
	var qps float64
	fs.StringVar(&cfg.Endpoint, "endpoint", cfg.Endpoint, "CSI endpoint (unix socket)")
	fs.StringVar(&cfg.DriverName, "drivername", cfg.DriverName, "name of the driver")
	fs.StringVar(&cfg.NodeID, "nodeid", cfg.NodeID, "node name")
	fs.BoolVar(&jsonLogs, "log-format-json", false, "log in JSON")
	fs.StringVar(&cfg.ProviderVolume, "provider-volume", cfg.ProviderVolume, "directory of provider sockets")
	fs.StringVar(&additional, "additional-provider-volume-paths", strings.Join(cfg.AdditionalProviderPaths, ","), "comma-separated directories searched for provider sockets before --provider-volume")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", cfg.MetricsAddr, "address of the metrics and /healthz HTTP server (empty: off)")
	fs.StringVar(&cfg.MetricsBackend, "metrics-backend", cfg.MetricsBackend, "metrics backend (prometheus)")
	fs.BoolVar(&cfg.EnableSecretRotation, "enable-secret-rotation", cfg.EnableSecretRotation, "re-fetch mounted secrets on kubelet republish")
	fs.DurationVar(&cfg.RotationPollInterval, "rotation-poll-interval", cfg.RotationPollInterval, "least time between re-fetches of one volume")
	fs.BoolVar(&cfg.EnablePprof, "enable-pprof", cfg.EnablePprof, "serve pprof on 127.0.0.1:--pprof-port")
	fs.IntVar(&cfg.PprofPort, "pprof-port", cfg.PprofPort, "pprof port")
	fs.IntVar(&cfg.MaxCallRecvMsgSize, "max-call-recv-msg-size", cfg.MaxCallRecvMsgSize, "largest provider response accepted (bytes)")
	fs.BoolVar(&showVersion, "version", false, "print the version and exit")
	fs.BoolVar(&cfg.ProviderHealthCheck, "provider-health-check", cfg.ProviderHealthCheck, "check provider health periodically")
	fs.DurationVar(&cfg.ProviderHealthCheckEvery, "provider-health-check-interval", cfg.ProviderHealthCheckEvery, "provider health check interval")
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", cfg.Kubeconfig, "kubeconfig path (empty: in-cluster)")
	fs.Float64Var(&qps, "kube-api-qps", float64(cfg.KubeAPIQPS), "Kubernetes API requests per second (each of the driver's two clients: mount-path reads, background writes)")
	fs.IntVar(&cfg.KubeAPIBurst, "kube-api-burst", cfg.KubeAPIBurst, "Kubernetes API burst")
	fs.StringVar(&cfg.KubeletDir, "kubelet-dir", cfg.KubeletDir, "kubelet root directory")
	fs.BoolVar(&cfg.KubeletRegistration, "kubelet-registration", cfg.KubeletRegistration, "register with kubelet through <kubelet-dir>/plugins_registry (no registrar sidecar needed)")
	fs.StringVar(&cfg.KubeletRegistrationPath, "kubelet-registration-path", cfg.KubeletRegistrationPath, "CSI socket path as kubelet sees it (default <kubelet-dir>/plugins/csi-secrets-store/csi.sock)")
	fs.Int64Var(&cfg.TmpfsSizeBytes, "tmpfs-size-bytes", cfg.TmpfsSizeBytes, "size cap of each volume's tmpfs")
	fs.IntVar(&cfg.MaxFiles, "max-files", cfg.MaxFiles, "most files one volume may hold")
	fs.Int64Var(&cfg.MaxPayloadBytes, "max-payload-bytes", cfg.MaxPayloadBytes, "largest total size of one volume's files")
	fs.IntVar(&cfg.MaxDirs, "max-dirs", cfg.MaxDirs, "most directories one volume's file paths may create")
	fs.IntVar(&cfg.MaxPathDepth, "max-path-depth", cfg.MaxPathDepth, "most components of one file path (a/b/c has 3)")
	fs.DurationVar(&cfg.ProviderConnectTimeout, "provider-connect-timeout", cfg.ProviderConnectTimeout, "how long to wait for a provider's socket to answer")
	fs.DurationVar(&cfg.ProviderTimeout, "provider-timeout", cfg.ProviderTimeout, "deadline of one provider Mount call")
	fs.DurationVar(&cfg.SPCCacheTTL, "spc-cache-ttl", cfg.SPCCacheTTL, "reuse a SecretProviderClass read for this long across mounts (0: read on every mount)")
	_ = fs.Parse(os.Args[1:])
	if showVersion {
		fmt.Println(driver.BuildVersion)
		return
	}
	if os.Getenv("GOGC") == "" {
		// A node agent with a small live heap: collect at +50% instead of
		// +100% to keep resident memory near the live set (GOGC overrides).
		debug.SetGCPercent(50)
	}
	if os.Getenv("GOMAXPROCS") == "" {
		// A publish is mostly waiting on syscalls and sockets, passed between
		// a few goroutines (gRPC reader, handler, writer; the provider call;
		// the pod status write). With more than one P, every hand-off wakes
		// an idle thread to look for work, and in a VM each wake-up is a
		// costly context switch: one P cuts the driver's CPU per publish by
		// a fifth (docs/benchmarks.md). GOMAXPROCS overrides.
		runtime.GOMAXPROCS(1)
	}
	cfg.KubeAPIQPS = float32(qps)
	cfg.AdditionalProviderPaths = strings.Split(additional, ",")
	if jsonLogs {
		klog.SetLogger(funcr.NewJSON(func(obj string) { fmt.Fprintln(os.Stderr, obj) }, funcr.Options{LogTimestamp: true, Verbosity: verbosity(fs)}))
	}
	// The runtime's monitor thread polls every 20 us after each wake-up from
	// idle, several dozen times per publish; a coarse timer slack lets it
	// sleep through most of them (internal/sysmon, docs/benchmarks.md).
	if tid, err := sysmon.SetTimerSlack(sysmonTimerSlack); err != nil {
		klog.InfoS("runtime monitor thread keeps its default timer slack", "err", err)
	} else {
		klog.V(2).InfoS("runtime monitor thread timer slack set", "thread", tid, "slack", sysmonTimerSlack)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := driver.Run(ctx, cfg); err != nil {
		klog.ErrorS(err, "driver failed")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

// sysmonTimerSlack is how much later than asked the kernel may end the
// runtime monitor thread's sleeps: at most this much later it takes back a
// P from a blocking system call or preempts a goroutine running for 10 ms.
const sysmonTimerSlack = 5 * time.Millisecond

func verbosity(fs *flag.FlagSet) int {
	var v int
	if f := fs.Lookup("v"); f != nil {
		_, _ = fmt.Sscan(f.Value.String(), &v)
	}
	return v
}
