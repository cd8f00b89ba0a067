// Package sanity runs csi-sanity against the real driver: real tmpfs
// mounts, a real kube-apiserver holding the SecretProviderClass, and the
// fake provider on a unix socket.
//
// csi-sanity only publishes a real volume when the plugin has a controller
// service that can create one. An inline ephemeral volume has no controller:
// kubelet makes up the volume context from the pod. So the suite talks to a
// thin stand-in for kubelet in front of the driver's socket: it answers
// CreateVolume with the volume context kubelet would send (SPC name, pod
// info) and forwards every Identity and Node call to the driver unchanged,
// except that it sets readonly as kubelet does for a `readOnly: true` pod
// volume. The controller specs test only that stand-in, so they are skipped.
package sanity

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/sscsi/secrets-store/test/driverharness"
)

const (
	spcName = "sanity"
	spcNS   = "default"
)

func TestSanity(t *testing.T) {
	env := driverharness.Start(t, driverharness.Options{})
	if err := env.CreateSPC(t.Context(), spcNS, spcName, "- objectName: username\n  value: sanity-user\n- objectName: nested/password\n  value: sanity-pass\n"); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("unix://"+env.Endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority("localhost"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	front := filepath.Join(env.Dir, "kubelet-standin.sock")
	stop := serveStandIn(t, front, conn)
	t.Cleanup(stop)

	cfg := sanity.NewTestConfig()
	cfg.Address = "unix://" + front
	cfg.TargetPath = filepath.Join(env.Dir, "target")
	cfg.StagingPath = filepath.Join(env.Dir, "staging")
	cfg.IdempotentCount = 3
	cfg.TestVolumeAccessType = "mount"
	cfg.CheckPath = func(p string) (sanity.PathKind, error) {
		fi, err := os.Stat(p)
		switch {
		case os.IsNotExist(err):
			return sanity.PathIsNotFound, nil
		case err != nil:
			return sanity.PathIsOther, err
		case fi.IsDir():
			return sanity.PathIsDir, nil
		default:
			return sanity.PathIsFile, nil
		}
	}
	sanity.GinkgoTest(&cfg)
	gomega.RegisterFailHandler(ginkgo.Fail)
	suite, reporter := ginkgo.GinkgoConfiguration()
	// Specs of services the driver does not have, answered only by the
	// stand-in above (controller, snapshots, group controller).
	suite.SkipStrings = append(suite.SkipStrings, "Controller Service", "SnapshotService", "GroupController", "ListSnapshots", "DeleteSnapshot", "CreateSnapshot", "ExpandVolume")
	suite.Timeout = 10 * time.Minute
	ginkgo.RunSpecs(t, "secrets-store CSI sanity", suite, reporter)
}

// standIn plays kubelet's part for inline volumes (see the package doc).
type standIn struct {
	csipb.UnimplementedIdentityServer
	csipb.UnimplementedControllerServer
	csipb.UnimplementedNodeServer
	id   csipb.IdentityClient
	node csipb.NodeClient
}

func serveStandIn(t *testing.T, sock string, driver *grpc.ClientConn) func() {
	t.Helper()
	s := &standIn{id: csipb.NewIdentityClient(driver), node: csipb.NewNodeClient(driver)}
	g := grpc.NewServer()
	csipb.RegisterIdentityServer(g, s)
	csipb.RegisterControllerServer(g, s)
	csipb.RegisterNodeServer(g, s)
	lis, err := netListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	return g.Stop
}

func (s *standIn) GetPluginInfo(ctx context.Context, r *csipb.GetPluginInfoRequest) (*csipb.GetPluginInfoResponse, error) {
	return s.id.GetPluginInfo(ctx, r)
}

func (s *standIn) Probe(ctx context.Context, r *csipb.ProbeRequest) (*csipb.ProbeResponse, error) {
	return s.id.Probe(ctx, r)
}

// GetPluginCapabilities adds the controller service the stand-in provides
// to the driver's own (empty) list.
func (s *standIn) GetPluginCapabilities(ctx context.Context, r *csipb.GetPluginCapabilitiesRequest) (*csipb.GetPluginCapabilitiesResponse, error) {
	resp, err := s.id.GetPluginCapabilities(ctx, r)
	if err != nil {
		return nil, err
	}
	resp.Capabilities = append(resp.Capabilities, &csipb.PluginCapability{Type: &csipb.PluginCapability_Service_{
		Service: &csipb.PluginCapability_Service{Type: csipb.PluginCapability_Service_CONTROLLER_SERVICE}}})
	return resp, nil
}

func (s *standIn) ControllerGetCapabilities(context.Context, *csipb.ControllerGetCapabilitiesRequest) (*csipb.ControllerGetCapabilitiesResponse, error) {
	return &csipb.ControllerGetCapabilitiesResponse{Capabilities: []*csipb.ControllerServiceCapability{{
		Type: &csipb.ControllerServiceCapability_Rpc{Rpc: &csipb.ControllerServiceCapability_RPC{Type: csipb.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME}}}}}, nil
}

// CreateVolume returns what kubelet would put in an inline volume's context.
func (s *standIn) CreateVolume(_ context.Context, r *csipb.CreateVolumeRequest) (*csipb.CreateVolumeResponse, error) {
	return &csipb.CreateVolumeResponse{Volume: &csipb.Volume{
		VolumeId:      "csi-" + r.GetName(),
		CapacityBytes: r.GetCapacityRange().GetRequiredBytes(),
		VolumeContext: map[string]string{
			"secretProviderClass":                    spcName,
			"csi.storage.k8s.io/pod.name":            "sanity-pod",
			"csi.storage.k8s.io/pod.namespace":       spcNS,
			"csi.storage.k8s.io/pod.uid":             "00000000-0000-0000-0000-000000000001",
			"csi.storage.k8s.io/serviceAccount.name": "default",
			"csi.storage.k8s.io/ephemeral":           "true",
		},
	}}, nil
}

func (s *standIn) DeleteVolume(context.Context, *csipb.DeleteVolumeRequest) (*csipb.DeleteVolumeResponse, error) {
	return &csipb.DeleteVolumeResponse{}, nil
}

func (s *standIn) NodeGetInfo(ctx context.Context, r *csipb.NodeGetInfoRequest) (*csipb.NodeGetInfoResponse, error) {
	return s.node.NodeGetInfo(ctx, r)
}

func (s *standIn) NodeGetCapabilities(ctx context.Context, r *csipb.NodeGetCapabilitiesRequest) (*csipb.NodeGetCapabilitiesResponse, error) {
	return s.node.NodeGetCapabilities(ctx, r)
}

func (s *standIn) NodePublishVolume(ctx context.Context, r *csipb.NodePublishVolumeRequest) (*csipb.NodePublishVolumeResponse, error) {
	r.Readonly = true
	resp, err := s.node.NodePublishVolume(ctx, r)
	if err == nil {
		// The files must really be there, on the real mount.
		// A missing or wrong file fails the spec through its error check.
		b, rerr := os.ReadFile(filepath.Join(r.GetTargetPath(), "nested", "password"))
		if rerr != nil || string(b) != "sanity-pass" {
			return nil, status.Errorf(codes.Internal, "stand-in: published volume lacks nested/password with the provider's value: %v", rerr)
		}
	}
	return resp, err
}

func (s *standIn) NodeUnpublishVolume(ctx context.Context, r *csipb.NodeUnpublishVolumeRequest) (*csipb.NodeUnpublishVolumeResponse, error) {
	return s.node.NodeUnpublishVolume(ctx, r)
}

func (s *standIn) NodeStageVolume(ctx context.Context, r *csipb.NodeStageVolumeRequest) (*csipb.NodeStageVolumeResponse, error) {
	return s.node.NodeStageVolume(ctx, r)
}

func (s *standIn) NodeUnstageVolume(ctx context.Context, r *csipb.NodeUnstageVolumeRequest) (*csipb.NodeUnstageVolumeResponse, error) {
	return s.node.NodeUnstageVolume(ctx, r)
}

func (s *standIn) NodeGetVolumeStats(ctx context.Context, r *csipb.NodeGetVolumeStatsRequest) (*csipb.NodeGetVolumeStatsResponse, error) {
	return s.node.NodeGetVolumeStats(ctx, r)
}

func (s *standIn) NodeExpandVolume(ctx context.Context, r *csipb.NodeExpandVolumeRequest) (*csipb.NodeExpandVolumeResponse, error) {
	return s.node.NodeExpandVolume(ctx, r)
}
