// Package csi serves the CSI Identity and Node services: it validates each
// request, serialises operations per volume, runs the publish pipeline and
// maps its errors to gRPC codes.
package csi

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"k8s.io/klog/v2"

	"github.com/sscsi/secrets-store/driver/internal/publish"
)

// Publisher is the mount pipeline.
type Publisher interface {
	Publish(ctx context.Context, req publish.Request) error
	Unpublish(ctx context.Context, target string) error
}

// Config configures the servers.
type Config struct {
	DriverName string
	Version    string
	NodeID     string
	Publisher  Publisher
	// Ready reports whether the driver can serve (Probe); nil = always.
	Ready func(ctx context.Context) error
	// Unpublished is told about every unpublish outcome (metrics); optional.
	Unpublished func(failed bool)
}

// Server implements csi.IdentityServer and csi.NodeServer.
type Server struct {
	csipb.UnimplementedIdentityServer
	csipb.UnimplementedNodeServer
	cfg   Config
	locks *volumeLocks
}

var (
	_ csipb.IdentityServer = (*Server)(nil)
	_ csipb.NodeServer     = (*Server)(nil)
)

// New validates cfg.
func New(cfg Config) (*Server, error) {
	if cfg.DriverName == "" || cfg.NodeID == "" || cfg.Publisher == nil {
		return nil, errors.New("csi: DriverName, NodeID and Publisher are required")
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	return &Server{cfg: cfg, locks: newVolumeLocks()}, nil
}

// GetPluginInfo implements csi.IdentityServer.
func (s *Server) GetPluginInfo(context.Context, *csipb.GetPluginInfoRequest) (*csipb.GetPluginInfoResponse, error) {
	return &csipb.GetPluginInfoResponse{Name: s.cfg.DriverName, VendorVersion: s.cfg.Version}, nil
}

// GetPluginCapabilities implements csi.IdentityServer. The driver is
// node-only: it has no controller service and no topology.
func (s *Server) GetPluginCapabilities(context.Context, *csipb.GetPluginCapabilitiesRequest) (*csipb.GetPluginCapabilitiesResponse, error) {
	return &csipb.GetPluginCapabilitiesResponse{}, nil
}

// Probe implements csi.IdentityServer: not ready until the Kubernetes API
// answers.
func (s *Server) Probe(ctx context.Context, _ *csipb.ProbeRequest) (*csipb.ProbeResponse, error) {
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(ctx); err != nil {
			klog.V(2).InfoS("probe: not ready", "err", err)
			return &csipb.ProbeResponse{Ready: wrapperspb.Bool(false)}, nil
		}
	}
	return &csipb.ProbeResponse{Ready: wrapperspb.Bool(true)}, nil
}

// NodeGetInfo implements csi.NodeServer.
func (s *Server) NodeGetInfo(context.Context, *csipb.NodeGetInfoRequest) (*csipb.NodeGetInfoResponse, error) {
	return &csipb.NodeGetInfoResponse{NodeId: s.cfg.NodeID}, nil
}

// NodeGetCapabilities implements csi.NodeServer. The one optional node
// capability is VOLUME_MOUNT_GROUP: kubelet (1.23+) then hands the pod's
// fsGroup to NodePublishVolume instead of changing ownership itself (which
// it never does for read-only volumes), and the driver makes the files
// group-readable. No staging, stats or expansion.
func (s *Server) NodeGetCapabilities(context.Context, *csipb.NodeGetCapabilitiesRequest) (*csipb.NodeGetCapabilitiesResponse, error) {
	return &csipb.NodeGetCapabilitiesResponse{Capabilities: []*csipb.NodeServiceCapability{{
		Type: &csipb.NodeServiceCapability_Rpc{Rpc: &csipb.NodeServiceCapability_RPC{Type: csipb.NodeServiceCapability_RPC_VOLUME_MOUNT_GROUP}},
	}}}, nil
}

// mountGroup parses volume_capability.mount.volume_mount_group: "" (the pod
// has no fsGroup) is nil; otherwise a decimal group ID.
func mountGroup(vc *csipb.VolumeCapability) (*uint32, error) {
	g := vc.GetMount().GetVolumeMountGroup()
	if g == "" {
		return nil, nil
	}
	n, err := strconv.ParseUint(g, 10, 32)
	if err != nil || n == math.MaxUint32 {
		return nil, fmt.Errorf("volume_capability.mount.volume_mount_group %q is not a numeric group ID (the pod's securityContext.fsGroup)", g)
	}
	gid := uint32(n)
	return &gid, nil
}

// NodePublishVolume implements csi.NodeServer.
func (s *Server) NodePublishVolume(ctx context.Context, req *csipb.NodePublishVolumeRequest) (*csipb.NodePublishVolumeResponse, error) {
	switch {
	case req.GetVolumeId() == "":
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	case req.GetTargetPath() == "":
		return nil, status.Error(codes.InvalidArgument, "target_path is required")
	case req.GetVolumeCapability() == nil:
		return nil, status.Error(codes.InvalidArgument, "volume_capability is required")
	case req.GetVolumeCapability().GetBlock() != nil:
		return nil, status.Error(codes.InvalidArgument, "volume_capability: block access is not supported; use a filesystem (mount) volume")
	case !req.GetReadonly():
		return nil, status.Error(codes.InvalidArgument, "Readonly is not true in request: secrets-store volumes must be mounted read-only: set readOnly: true on the pod's csi volume")
	}
	group, err := mountGroup(req.GetVolumeCapability())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if !s.locks.tryLock(req.GetVolumeId()) {
		return nil, status.Errorf(codes.Aborted, "an operation on volume %s is already in progress", req.GetVolumeId())
	}
	defer s.locks.unlock(req.GetVolumeId())
	err = s.cfg.Publisher.Publish(ctx, publish.Request{
		VolumeID:      req.GetVolumeId(),
		TargetPath:    req.GetTargetPath(),
		VolumeContext: req.GetVolumeContext(),
		Secrets:       req.GetSecrets(),
		Group:         group,
	})
	if err != nil {
		return nil, status.Error(publish.Code(err), err.Error())
	}
	return &csipb.NodePublishVolumeResponse{}, nil
}

// NodeUnpublishVolume implements csi.NodeServer.
func (s *Server) NodeUnpublishVolume(ctx context.Context, req *csipb.NodeUnpublishVolumeRequest) (*csipb.NodeUnpublishVolumeResponse, error) {
	switch {
	case req.GetVolumeId() == "":
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	case req.GetTargetPath() == "":
		return nil, status.Error(codes.InvalidArgument, "target_path is required")
	}
	if !s.locks.tryLock(req.GetVolumeId()) {
		return nil, status.Errorf(codes.Aborted, "an operation on volume %s is already in progress", req.GetVolumeId())
	}
	defer s.locks.unlock(req.GetVolumeId())
	start := time.Now()
	err := s.cfg.Publisher.Unpublish(ctx, req.GetTargetPath())
	if s.cfg.Unpublished != nil {
		s.cfg.Unpublished(err != nil)
	}
	if err != nil {
		return nil, status.Error(publish.Code(err), err.Error())
	}
	klog.V(2).InfoS("volume unpublished", "volumeID", req.GetVolumeId(), "target", req.GetTargetPath(), "duration", time.Since(start))
	return &csipb.NodeUnpublishVolumeResponse{}, nil
}
