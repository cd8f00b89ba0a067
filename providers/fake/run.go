package fake

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

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
	// AdminTokenFile is where the admin API's bearer token is written at
	// start (mode 0600; default fake-admin.token next to Socket, a
	// root-only directory on the node). Every admin call but /healthz
	// must carry "Authorization: Bearer <token>", so a pod that can reach
	// the address (host network) still cannot change values.
	AdminTokenFile string
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
		tokenFile := cfg.AdminTokenFile
		if tokenFile == "" {
			tokenFile = filepath.Join(filepath.Dir(cfg.Socket), DefaultAdminTokenName)
		}
		token, err := writeToken(tokenFile)
		if err != nil {
			return fmt.Errorf("admin API token: %w", err)
		}
		g.Go(func() error { return serve.HTTP(ctx, cfg.AdminAddr, b.AdminHandler(token)) })
	}
	return g.Wait()
}

// DefaultAdminTokenName is the admin token file's name next to the socket.
const DefaultAdminTokenName = "fake-admin.token"

// writeToken makes a new random token and writes it to path atomically,
// readable by its owner (root) only.
func writeToken(path string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	token := hex.EncodeToString(b)
	tmp, err := os.CreateTemp(filepath.Dir(path), ".fake-admin-token-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if err = tmp.Chmod(0o600); err == nil {
		_, err = tmp.WriteString(token + "\n")
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return "", err
	}
	return token, nil
}
