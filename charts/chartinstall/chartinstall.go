// Package chartinstall installs, upgrades and uninstalls the secrets-store
// Helm chart through the Helm Go SDK, the way `helm upgrade --install --wait`
// does, for the demo (hack/demoinstall) and the end-to-end suite.
package chartinstall

import (
	"context"
	"errors"
	"fmt"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage/driver"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
)

// CSIDriverName is the CSIDriver object the chart owns.
const CSIDriverName = "secrets-store.csi.k8s.io"

// Options says what to install where.
type Options struct {
	Kubeconfig string         // admin kubeconfig path
	Namespace  string         // release namespace (the driver's), e.g. kube-system
	Release    string         // release name
	ChartDir   string         // path of charts/secrets-store
	Values     map[string]any // merged over the chart's values.yaml
	Timeout    time.Duration  // of the install or upgrade, waiting included (default 5m)
	// SkipWait returns once the API server accepted the objects, without
	// waiting for DaemonSet pods (for clusters without nodes, e.g. tests).
	SkipWait bool
	// ReplaceUnmanagedCSIDriver deletes a CSIDriver secrets-store.csi.k8s.io
	// that no Helm release owns (e.g. applied from manifests/csidriver.yaml)
	// so the chart can create its own; Helm refuses to adopt it otherwise.
	ReplaceUnmanagedCSIDriver bool
	// Logf receives progress lines (nil: none).
	Logf func(format string, args ...any)
}

func (o *Options) validate() error {
	var errs []error
	if o.Namespace == "" {
		errs = append(errs, errors.New("chartinstall: Namespace is empty"))
	}
	if o.Release == "" {
		errs = append(errs, errors.New("chartinstall: Release is empty"))
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return errors.Join(errs...)
}

func (o *Options) config() (*action.Configuration, *genericclioptions.ConfigFlags, error) {
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = &o.Kubeconfig
	flags.Namespace = &o.Namespace
	cfg := new(action.Configuration)
	// Release records are Secrets in the release namespace, as with the helm CLI.
	if err := cfg.Init(flags, o.Namespace, "secret", func(string, ...any) {}); err != nil {
		return nil, nil, fmt.Errorf("helm configuration: %w", err)
	}
	return cfg, flags, nil
}

// Apply installs the release, or upgrades it when it exists, and waits until
// its workloads are ready.
func Apply(ctx context.Context, o Options) (*release.Release, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.ChartDir == "" {
		return nil, errors.New("chartinstall: ChartDir is empty")
	}
	ch, err := loader.Load(o.ChartDir)
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", o.ChartDir, err)
	}
	cfg, flags, err := o.config()
	if err != nil {
		return nil, err
	}
	if o.ReplaceUnmanagedCSIDriver {
		if err := replaceUnmanagedCSIDriver(ctx, flags, o); err != nil {
			return nil, err
		}
	}
	hist := action.NewHistory(cfg)
	hist.Max = 1
	_, err = hist.Run(o.Release)
	switch {
	case errors.Is(err, driver.ErrReleaseNotFound):
		in := action.NewInstall(cfg)
		in.ReleaseName, in.Namespace = o.Release, o.Namespace
		in.Wait, in.Timeout = !o.SkipWait, o.Timeout
		o.Logf("helm install %s (namespace %s, chart %s %s)", o.Release, o.Namespace, ch.Name(), ch.Metadata.Version)
		rel, err := in.RunWithContext(ctx, ch, o.Values)
		if err != nil {
			return nil, fmt.Errorf("helm install %s: %w", o.Release, err)
		}
		return rel, nil
	case err != nil:
		return nil, fmt.Errorf("helm history %s: %w", o.Release, err)
	}
	up := action.NewUpgrade(cfg)
	up.Namespace = o.Namespace
	up.Wait, up.Timeout = !o.SkipWait, o.Timeout
	o.Logf("helm upgrade %s (namespace %s, chart %s %s)", o.Release, o.Namespace, ch.Name(), ch.Metadata.Version)
	rel, err := up.RunWithContext(ctx, o.Release, ch, o.Values)
	if err != nil {
		return nil, fmt.Errorf("helm upgrade %s: %w", o.Release, err)
	}
	return rel, nil
}

// Uninstall removes the release; a release that does not exist is not an
// error. CRDs stay (Helm never deletes a chart's crds/).
func Uninstall(ctx context.Context, o Options) error {
	if err := o.validate(); err != nil {
		return err
	}
	cfg, _, err := o.config()
	if err != nil {
		return err
	}
	un := action.NewUninstall(cfg)
	un.Wait, un.Timeout = !o.SkipWait, o.Timeout
	o.Logf("helm uninstall %s (namespace %s)", o.Release, o.Namespace)
	if _, err := un.Run(o.Release); err != nil && !errors.Is(err, driver.ErrReleaseNotFound) {
		return fmt.Errorf("helm uninstall %s: %w", o.Release, err)
	}
	return ctx.Err()
}

func replaceUnmanagedCSIDriver(ctx context.Context, flags *genericclioptions.ConfigFlags, o Options) error {
	rc, err := flags.ToRESTConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", o.Kubeconfig, err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	d, err := cs.StorageV1().CSIDrivers().Get(ctx, CSIDriverName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("get CSIDriver %s: %w", CSIDriverName, err)
	}
	if d.Annotations["meta.helm.sh/release-name"] == o.Release && d.Annotations["meta.helm.sh/release-namespace"] == o.Namespace {
		return nil
	}
	if owner := d.Annotations["meta.helm.sh/release-name"]; owner != "" {
		return fmt.Errorf("CSIDriver %s belongs to Helm release %s/%s; uninstall it first", CSIDriverName, d.Annotations["meta.helm.sh/release-namespace"], owner)
	}
	o.Logf("replacing CSIDriver %s (not managed by Helm) with the chart's", CSIDriverName)
	if err := cs.StorageV1().CSIDrivers().Delete(ctx, CSIDriverName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete CSIDriver %s: %w", CSIDriverName, err)
	}
	return nil
}
