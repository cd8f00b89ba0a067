// Package plugin is the scaffolding every provider shares: it serves the
// upstream provider API (sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1)
// on a unix socket, decodes mount requests into a typed Request, validates
// what a Backend returns, maps errors to gRPC codes, writes files itself in
// legacy mode, and logs without secret material.
package plugin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"runtime"
	"sort"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/sscsi/secrets-store/internal/atomicfs"
	"github.com/sscsi/secrets-store/internal/serve"
)

// Backend fetches the objects a mount asks for. Implementations must be safe
// for concurrent use; per-request state lives in the Request.
type Backend interface {
	Mount(ctx context.Context, req *Request) (*Response, error)
}

// File is one file for the volume.
type File struct {
	Path     string
	Mode     fs.FileMode
	Contents []byte
}

// ObjectVersion is the version of one backend object.
type ObjectVersion struct {
	ID      string
	Version string
}

// Response is what a Backend returns for a mount.
type Response struct {
	Files    []File
	Versions []ObjectVersion
}

// Config configures a Server.
type Config struct {
	// Name is the provider name (the socket's basename), e.g. "aws".
	Name string
	// Version is reported by the Version RPC.
	Version string
	// Backend serves mounts.
	Backend Backend
	// WriteToTarget selects legacy mode: the provider writes the files into
	// the target path itself and returns none to the driver.
	WriteToTarget bool
	// Limits bound what one mount may return.
	Limits atomicfs.Limits
	// MountTimeout bounds one Mount call (default 60s).
	MountTimeout time.Duration
}

// Server implements v1alpha1.CSIDriverProviderServer over a Backend.
type Server struct {
	v1alpha1.UnimplementedCSIDriverProviderServer
	cfg    Config
	health *health.Server
}

var _ v1alpha1.CSIDriverProviderServer = (*Server)(nil)

// New validates cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Name == "" {
		return nil, errors.New("plugin: Config.Name is empty")
	}
	if cfg.Backend == nil {
		return nil, errors.New("plugin: Config.Backend is nil")
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.MountTimeout <= 0 {
		cfg.MountTimeout = 60 * time.Second
	}
	return &Server{cfg: cfg, health: health.NewServer()}, nil
}

// Version implements the Version RPC.
func (s *Server) Version(context.Context, *v1alpha1.VersionRequest) (*v1alpha1.VersionResponse, error) {
	return &v1alpha1.VersionResponse{Version: "v1alpha1", RuntimeName: s.cfg.Name, RuntimeVersion: s.cfg.Version}, nil
}

// Mount implements the Mount RPC.
func (s *Server) Mount(ctx context.Context, in *v1alpha1.MountRequest) (*v1alpha1.MountResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.MountTimeout)
	defer cancel()
	start := time.Now()
	req, err := DecodeRequest(in)
	if err == nil {
		var resp *Response
		resp, err = s.cfg.Backend.Mount(ctx, req)
		if err == nil {
			var out *v1alpha1.MountResponse
			out, err = s.finish(req, resp)
			if err == nil {
				klog.V(2).InfoS("mount served", "provider", s.cfg.Name, "pod", podRef(req), "files", len(resp.Files), "objects", len(resp.Versions), "duration", time.Since(start))
				return out, nil
			}
		}
	}
	code, name := Classify(err)
	ns := ""
	if req != nil {
		ns = podRef(req).String()
	}
	klog.ErrorS(err, "mount failed", "provider", s.cfg.Name, "pod", ns, "code", name)
	st := status.New(code, err.Error())
	// Carry error.code for drivers that read it from the response shape.
	if d, derr := st.WithDetails(&v1alpha1.MountResponse{Error: &v1alpha1.Error{Code: name}}); derr == nil {
		st = d
	}
	return nil, st.Err()
}

func podRef(r *Request) klog.ObjectRef {
	return klog.ObjectRef{Namespace: r.Pod.Namespace, Name: r.Pod.Name}
}

// finish validates the backend's response and builds the wire response,
// writing the files itself in legacy mode.
func (s *Server) finish(req *Request, resp *Response) (*v1alpha1.MountResponse, error) {
	if resp == nil {
		return nil, errors.New("backend returned no response")
	}
	files := make([]atomicfs.File, len(resp.Files))
	for i, f := range resp.Files {
		files[i] = atomicfs.File{Path: f.Path, Mode: f.Mode, Contents: f.Contents}
	}
	if err := atomicfs.Validate(files, s.cfg.Limits); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidParameters, err)
	}
	if len(resp.Versions) == 0 {
		return nil, errors.New("backend returned no object versions")
	}
	out := &v1alpha1.MountResponse{}
	vs := append([]ObjectVersion(nil), resp.Versions...)
	sort.Slice(vs, func(i, j int) bool { return vs[i].ID < vs[j].ID })
	for _, v := range vs {
		out.ObjectVersion = append(out.ObjectVersion, &v1alpha1.ObjectVersion{Id: v.ID, Version: v.Version})
	}
	if s.cfg.WriteToTarget {
		if req.TargetPath == "" || !filepath.IsAbs(req.TargetPath) {
			return nil, fmt.Errorf("%w: target_path %q must be an absolute path in legacy mode", ErrInvalidParameters, req.TargetPath)
		}
		if _, err := atomicfs.Write(req.TargetPath, files, s.cfg.Limits); err != nil {
			return nil, fmt.Errorf("write files into target path: %w", err)
		}
		return out, nil
	}
	for _, f := range resp.Files {
		//nolint:gosec // G115: atomicfs.Validate above bounds every mode to 0777
		out.Files = append(out.Files, &v1alpha1.File{Path: f.Path, Mode: int32(f.Mode), Contents: f.Contents})
	}
	return out, nil
}

// Serve listens on socketPath (replacing a stale socket) and serves the
// provider API and the gRPC health service until ctx is done; the health
// service reports NOT_SERVING from the moment ctx ends.
func (s *Server) Serve(ctx context.Context, socketPath string) error {
	g := grpc.NewServer(serve.LocalOptions(grpc.ChainUnaryInterceptor(LogInterceptor))...)
	v1alpha1.RegisterCSIDriverProviderServer(g, s)
	healthpb.RegisterHealthServer(g, s.health)
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(v1alpha1.CSIDriverProvider_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	stop := context.AfterFunc(ctx, s.health.Shutdown)
	defer stop()
	klog.InfoS("provider starting", "provider", s.cfg.Name, "socket", socketPath, "version", s.cfg.Version, "go", runtime.Version())
	return serve.GRPC(ctx, socketPath, g)
}

// Healthy reports whether the gRPC health service says SERVING; used by
// the HTTP /healthz handler of provider binaries.
func (s *Server) Healthy(ctx context.Context) bool {
	r, err := s.health.Check(ctx, &healthpb.HealthCheckRequest{})
	return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING
}

// codeOf is used by tests and the interceptor.
func codeOf(err error) codes.Code { return status.Code(err) }
