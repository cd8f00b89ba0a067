package fake

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

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
		lis, err := net.Listen("tcp", cfg.AdminAddr)
		if err != nil {
			return fmt.Errorf("admin API: listen on %s: %w", cfg.AdminAddr, err)
		}
		hs := &http.Server{Handler: b.AdminHandler(), ReadHeaderTimeout: 5 * time.Second}
		klog.InfoS("admin API serving", "addr", lis.Addr().String())
		g.Go(func() error {
			if err := hs.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		g.Go(func() error {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			return hs.Shutdown(sctx)
		})
	}
	return g.Wait()
}
