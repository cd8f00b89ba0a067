// Package registration registers the driver with kubelet through the
// kubelet plugin registration API, so no node-driver-registrar sidecar is
// needed.
package registration

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"

	"google.golang.org/grpc"
	"k8s.io/klog/v2"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/sscsi/secrets-store/internal/serve"
)

// Config configures the registration server.
type Config struct {
	// DriverName is the CSI driver name.
	DriverName string
	// Endpoint is the CSI socket path as kubelet sees it on the host.
	Endpoint string
	// RegistryDir is <kubelet-root>/plugins_registry.
	RegistryDir string
}

// Server answers kubelet's plugin watcher.
type Server struct {
	registerapi.UnimplementedRegistrationServer
	cfg        Config
	registered atomic.Bool
}

// New validates cfg.
func New(cfg Config) (*Server, error) {
	if cfg.DriverName == "" || cfg.Endpoint == "" || cfg.RegistryDir == "" {
		return nil, errors.New("registration: DriverName, Endpoint and RegistryDir are required")
	}
	return &Server{cfg: cfg}, nil
}

// GetInfo implements the registration API.
func (s *Server) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{
		Type:              registerapi.CSIPlugin,
		Name:              s.cfg.DriverName,
		Endpoint:          s.cfg.Endpoint,
		SupportedVersions: []string{"1.0.0"},
	}, nil
}

// NotifyRegistrationStatus implements the registration API.
func (s *Server) NotifyRegistrationStatus(_ context.Context, st *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if st.GetPluginRegistered() {
		s.registered.Store(true)
		klog.InfoS("registered with kubelet", "driver", s.cfg.DriverName)
	} else {
		s.registered.Store(false)
		klog.ErrorS(errors.New(st.GetError()), "kubelet rejected the driver's registration", "driver", s.cfg.DriverName)
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}

// Registered reports whether kubelet confirmed the registration.
func (s *Server) Registered() bool { return s.registered.Load() }

// SocketPath is where kubelet's plugin watcher looks for us.
func (s *Server) SocketPath() string {
	return filepath.Join(s.cfg.RegistryDir, s.cfg.DriverName+"-reg.sock")
}

// Serve serves until ctx is done; the socket is removed on exit so that
// kubelet deregisters the driver.
func (s *Server) Serve(ctx context.Context) error {
	g := grpc.NewServer()
	registerapi.RegisterRegistrationServer(g, s)
	if err := serve.GRPC(ctx, s.SocketPath(), g); err != nil {
		return fmt.Errorf("registration: %w", err)
	}
	return nil
}
