package vault

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"github.com/sscsi/secrets-store/internal/serve"
	"github.com/sscsi/secrets-store/providers/plugin"
	"github.com/sscsi/secrets-store/providers/vault/params"
	"github.com/sscsi/secrets-store/providers/vault/render"
)

// Config configures the provider-vault process.
type Config struct {
	// Socket is the unix socket to serve on, e.g.
	// /var/run/secrets-store-csi-providers/vault.sock.
	Socket string
	// HealthAddr serves /healthz and /metrics ("" = off).
	HealthAddr string
	// WriteToTarget selects legacy mode (the provider writes the files).
	WriteToTarget bool
	// Version is reported by the Version RPC.
	Version string
	// Defaults are the Vault address, auth mount, namespace, TLS settings
	// and audience used when a SecretProviderClass sets none.
	Defaults params.Defaults
	// CacheTTL is how long a plain read is shared between mounts of the
	// same identity (0: off).
	CacheTTL time.Duration
	// TokenCacheSize bounds the Vault tokens kept (one per identity); 0
	// turns token reuse off (every mount logs in).
	TokenCacheSize int
	// RenewFraction and ReissueFraction tune dynamic secrets.
	RenewFraction, ReissueFraction float64
	// VersionKeyFile holds the key of the content hashes used as object
	// versions ("" = a random key per process).
	VersionKeyFile string
}

// Validate checks cfg.
func (c Config) Validate() error {
	if c.Socket == "" {
		return errors.New("-endpoint is empty: give the unix socket path, e.g. /var/run/secrets-store-csi-providers/vault.sock")
	}
	if c.CacheTTL < 0 {
		return errors.New("-cache-ttl must not be negative")
	}
	if c.TokenCacheSize < 0 {
		return errors.New("-cache-size must not be negative")
	}
	if c.RenewFraction < 0 || c.RenewFraction >= 1 {
		return errors.New("-lease-renew-fraction must be in (0, 1)")
	}
	if c.ReissueFraction < 0 || c.ReissueFraction > 1 {
		return errors.New("-lease-reissue-fraction must be in (0, 1]")
	}
	// The defaults must make a valid mount on their own (role aside).
	if _, err := params.Parse(map[string]string{params.ParamRoleName: "x", params.ParamObjects: "- {objectName: x, secretPath: x}"}, c.Defaults); err != nil {
		return fmt.Errorf("provider defaults (-vault-addr, -vault-mount, -vault-namespace, -audience): %w", err)
	}
	for _, a := range c.Defaults.AllowedAddresses {
		if _, err := params.Parse(map[string]string{params.ParamRoleName: "x", params.ParamObjects: "- {objectName: x, secretPath: x}", params.ParamVaultAddress: a}, c.Defaults); err != nil {
			return fmt.Errorf("%s: %w", params.AllowedAddressesFlag, err)
		}
	}
	return nil
}

// Run serves until ctx is done.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.Defaults.AnyAddress {
		klog.InfoS("SecretProviderClasses may name any Vault in vaultAddress, which receives the pod's service account token; restrict them with " + params.AllowedAddressesFlag)
	}
	var key []byte
	if cfg.VersionKeyFile != "" {
		var err error
		if key, err = render.LoadKey(cfg.VersionKeyFile); err != nil {
			return err
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	b, err := NewBackend(BackendConfig{
		Defaults: cfg.Defaults, CacheTTL: cfg.CacheTTL, TokenCacheSize: cfg.TokenCacheSize, TokenCacheDisabled: cfg.TokenCacheSize == 0,
		RenewFraction: cfg.RenewFraction, ReissueFraction: cfg.ReissueFraction, VersionKey: key, Metrics: NewMetrics(reg),
	})
	if err != nil {
		return err
	}
	srv, err := plugin.New(plugin.Config{Name: "vault", Version: cfg.Version, Backend: b, WriteToTarget: cfg.WriteToTarget})
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(ctx, cfg.Socket) })
	if cfg.HealthAddr != "" {
		g.Go(func() error { return serve.HTTP(ctx, cfg.HealthAddr, srv.HTTPHandler(reg)) })
	}
	return g.Wait()
}
