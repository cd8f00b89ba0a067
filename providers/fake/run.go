package fake

import (
	"context"
	"errors"

	"golang.org/x/sync/errgroup"

	"github.com/sscsi/secrets-store/internal/serve"
	"github.com/sscsi/secrets-store/providers/plugin"
)

// Config configures the provider-fake process.
type Config struct {
	// Socket is the unix socket to serve on, e.g.
	// /var/run/secrets-store-csi-providers/fake.sock.
	Socket string
	// AdminAddr is the HTTP listen address of the admin API ("" = off).
	AdminAddr string
	// WriteToTarget selects legacy mode (the provider writes the files).
	WriteToTarget bool
	// Version is reported by the Version RPC.
	Version string
}

// Validate checks cfg.
func (c Config) Validate() error {
	if c.Socket == "" {
		return errors.New("--endpoint is empty: give the unix socket path, e.g. /var/run/secrets-store-csi-providers/fake.sock")
	}
	return nil
}

// Run serves until ctx is done.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	b := New()
	srv, err := plugin.New(plugin.Config{Name: "fake", Version: cfg.Version, Backend: b, WriteToTarget: cfg.WriteToTarget})
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(ctx, cfg.Socket) })
	if cfg.AdminAddr != "" {
		g.Go(func() error { return serve.HTTP(ctx, cfg.AdminAddr, b.AdminHandler()) })
	}
	return g.Wait()
}
