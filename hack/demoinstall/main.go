// Command demoinstall installs (or upgrades, or uninstalls) the
// secrets-store Helm chart through the Helm Go SDK, waiting for its
// DaemonSets, for `make demo`. It is `helm upgrade --install --wait` without
// needing the helm binary.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"helm.sh/helm/v3/pkg/chartutil"

	"github.com/sscsi/secrets-store/charts/chartinstall"
)

type config struct {
	opts       chartinstall.Options
	valuesFile string
	uninstall  bool
}

func main() {
	var cfg config
	flag.StringVar(&cfg.opts.Kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "admin kubeconfig")
	flag.StringVar(&cfg.opts.Namespace, "namespace", "kube-system", "release namespace")
	flag.StringVar(&cfg.opts.Release, "release", "secrets-store", "release name")
	flag.StringVar(&cfg.opts.ChartDir, "chart", "charts/secrets-store", "chart directory")
	flag.StringVar(&cfg.valuesFile, "values", "", "values file merged over the chart's values.yaml")
	flag.DurationVar(&cfg.opts.Timeout, "timeout", 5*time.Minute, "install/upgrade timeout, waiting for the DaemonSets included")
	flag.BoolVar(&cfg.opts.ReplaceUnmanagedCSIDriver, "replace-unmanaged-csidriver", false, "delete a CSIDriver secrets-store.csi.k8s.io no Helm release owns, so the chart can create its own")
	flag.BoolVar(&cfg.uninstall, "uninstall", false, "uninstall the release instead")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "demoinstall:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config) error {
	cfg.opts.Logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, "  "+format+"\n", args...) }
	if cfg.uninstall {
		return chartinstall.Uninstall(ctx, cfg.opts)
	}
	if cfg.valuesFile != "" {
		v, err := chartutil.ReadValuesFile(cfg.valuesFile)
		if err != nil {
			return fmt.Errorf("values %s: %w", cfg.valuesFile, err)
		}
		cfg.opts.Values = v
	}
	rel, err := chartinstall.Apply(ctx, cfg.opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "  release %s revision %d: %s\n", rel.Name, rel.Version, rel.Info.Status)
	return nil
}
