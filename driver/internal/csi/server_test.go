package csi

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/sscsi/secrets-store/driver/internal/publish"
)

// recorder is a fake Publisher for this package's unit tests.
type recorder struct {
	mu      sync.Mutex
	calls   []publish.Request
	block   chan struct{}
	entered chan struct{}
	err     error
}

func (r *recorder) Publish(_ context.Context, req publish.Request) error {
	r.mu.Lock()
	r.calls = append(r.calls, req)
	block, entered, err := r.block, r.entered, r.err
	r.mu.Unlock()
	if entered != nil {
		entered <- struct{}{}
	}
	if block != nil {
		<-block
	}
	return err
}

func (r *recorder) Unpublish(context.Context, string) error { return nil }

func serve(t *testing.T, p Publisher) (csipb.NodeClient, csipb.IdentityClient) {
	t.Helper()
	s, err := New(Config{DriverName: "secrets-store.csi.k8s.io", NodeID: "n1", Publisher: p,
		Ready: func(context.Context) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "csi.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.ChainUnaryInterceptor(LogInterceptor))
	csipb.RegisterNodeServer(g, s)
	csipb.RegisterIdentityServer(g, s)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return csipb.NewNodeClient(cc), csipb.NewIdentityClient(cc)
}

func mountCap() *csipb.VolumeCapability {
	return &csipb.VolumeCapability{AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{}},
		AccessMode: &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY}}
}

func goodReq() *csipb.NodePublishVolumeRequest {
	return &csipb.NodePublishVolumeRequest{VolumeId: "v1", TargetPath: "/tmp/x", VolumeCapability: mountCap(), Readonly: true,
		VolumeContext: map[string]string{"secretProviderClass": "spc"}}
}

func TestNodePublishValidation(t *testing.T) {
	rec := &recorder{}
	node, _ := serve(t, rec)
	cases := map[string]struct {
		mut  func(*csipb.NodePublishVolumeRequest)
		want string
	}{
		"no volume id":  {func(r *csipb.NodePublishVolumeRequest) { r.VolumeId = "" }, "volume_id"},
		"no target":     {func(r *csipb.NodePublishVolumeRequest) { r.TargetPath = "" }, "target_path"},
		"no capability": {func(r *csipb.NodePublishVolumeRequest) { r.VolumeCapability = nil }, "volume_capability"},
		"block": {func(r *csipb.NodePublishVolumeRequest) {
			r.VolumeCapability.AccessType = &csipb.VolumeCapability_Block{Block: &csipb.VolumeCapability_BlockVolume{}}
		}, "block"},
		"not readonly": {func(r *csipb.NodePublishVolumeRequest) { r.Readonly = false }, "Readonly is not true in request: secrets-store volumes must be mounted read-only: set readOnly: true"},
		"group not a number": {func(r *csipb.NodePublishVolumeRequest) {
			r.VolumeCapability.GetMount().VolumeMountGroup = "staff"
		}, "volume_mount_group \"staff\" is not a numeric group ID"},
		"group negative": {func(r *csipb.NodePublishVolumeRequest) {
			r.VolumeCapability.GetMount().VolumeMountGroup = "-1"
		}, "volume_mount_group"},
		"group too large": {func(r *csipb.NodePublishVolumeRequest) {
			r.VolumeCapability.GetMount().VolumeMountGroup = "4294967295"
		}, "volume_mount_group"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			r := goodReq()
			c.mut(r)
			_, err := node.NodePublishVolume(t.Context(), r)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want InvalidArgument mentioning %q", err, c.want)
			}
		})
	}
	if len(rec.calls) != 0 {
		t.Fatalf("pipeline reached %d times with invalid requests", len(rec.calls))
	}
}

func TestErrorsKeepTheirCode(t *testing.T) {
	rec := &recorder{err: errors.Join(publish.ErrInvalidRequest)}
	node, _ := serve(t, rec)
	_, err := node.NodePublishVolume(t.Context(), goodReq())
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("err = %v", err)
	}
}

func TestConcurrentPublishOfOneVolumeIsAborted(t *testing.T) {
	rec := &recorder{block: make(chan struct{}), entered: make(chan struct{}, 1)}
	node, _ := serve(t, rec)
	done := make(chan error, 1)
	go func() { _, err := node.NodePublishVolume(context.WithoutCancel(t.Context()), goodReq()); done <- err }()
	<-rec.entered
	_, err := node.NodePublishVolume(t.Context(), goodReq())
	if status.Code(err) != codes.Aborted {
		t.Fatalf("second concurrent publish: %v, want Aborted", err)
	}
	// Another volume is not blocked.
	rec.mu.Lock()
	rec.entered = nil
	rec.mu.Unlock()
	other := goodReq()
	other.VolumeId = "v2"
	otherDone := make(chan error, 1)
	go func() { _, err := node.NodePublishVolume(context.WithoutCancel(t.Context()), other); otherDone <- err }()
	close(rec.block)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-otherDone; err != nil {
		t.Fatal(err)
	}
	// Once finished, the volume can be published again.
	if _, err := node.NodePublishVolume(t.Context(), goodReq()); err != nil {
		t.Fatal(err)
	}
}

func TestIdentity(t *testing.T) {
	_, id := serve(t, &recorder{})
	info, err := id.GetPluginInfo(t.Context(), &csipb.GetPluginInfoRequest{})
	if err != nil || info.GetName() != "secrets-store.csi.k8s.io" {
		t.Fatalf("GetPluginInfo = %v, %v", info, err)
	}
	caps, err := id.GetPluginCapabilities(t.Context(), &csipb.GetPluginCapabilitiesRequest{})
	if err != nil || len(caps.GetCapabilities()) != 0 {
		t.Fatalf("capabilities = %v, %v; a node-only driver advertises none", caps, err)
	}
	p, err := id.Probe(t.Context(), &csipb.ProbeRequest{})
	if err != nil || !p.GetReady().GetValue() {
		t.Fatalf("Probe = %v, %v", p, err)
	}
}

func TestProbeNotReady(t *testing.T) {
	s, _ := New(Config{DriverName: "d", NodeID: "n", Publisher: &recorder{}, Ready: func(context.Context) error { return errors.New("api down") }})
	p, err := s.Probe(t.Context(), &csipb.ProbeRequest{})
	if err != nil || p.GetReady().GetValue() {
		t.Fatalf("Probe = %v, %v; want not ready", p, err)
	}
}

// TestLogsNeverCarrySecrets drives calls at -v=10 and checks that a known
// secret and a known token never reach the log.
func TestLogsNeverCarrySecrets(t *testing.T) {
	const secret, token = "s3cr3t-PASSWORD-value", "eyJ-TOKEN-value"
	var buf bytes.Buffer
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	_ = fs.Set("v", "10")
	_ = fs.Set("logtostderr", "false")
	_ = fs.Set("alsologtostderr", "false")
	klog.SetOutput(&buf)
	t.Cleanup(func() { _ = fs.Set("v", "0"); _ = fs.Set("logtostderr", "true"); klog.SetOutput(nil) })

	rec := &recorder{err: status.Error(codes.NotFound, "provider said no")}
	node, _ := serve(t, rec)
	r := goodReq()
	r.Secrets = map[string]string{"password": secret}
	r.VolumeContext["csi.storage.k8s.io/serviceAccount.tokens"] = `{"aud":{"token":"` + token + `","expirationTimestamp":"2030-01-01T00:00:00Z"}}`
	_, _ = node.NodePublishVolume(t.Context(), r)
	time.Sleep(50 * time.Millisecond)
	klog.Flush()
	out := buf.String()
	if !strings.Contains(out, "NodePublishVolume") || !strings.Contains(out, "redacted") {
		t.Fatalf("expected the request to be logged (redacted) at -v=10; log:\n%s", out)
	}
	for _, s := range []string{secret, token} {
		if strings.Contains(out, s) {
			t.Fatalf("log contains secret material %q:\n%s", s, out)
		}
	}
	// The caller's request is not modified by redaction.
	if rec.calls[0].Secrets["password"] != secret {
		t.Fatal("redaction changed the request passed to the pipeline")
	}
}

// TestVolumeMountGroup: the node advertises VOLUME_MOUNT_GROUP (so kubelet
// sends the pod's fsGroup) and the group reaches the pipeline; no group stays
// nil (upstream behaviour).
func TestVolumeMountGroup(t *testing.T) {
	rec := &recorder{}
	node, _ := serve(t, rec)
	caps, err := node.NodeGetCapabilities(t.Context(), &csipb.NodeGetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range caps.GetCapabilities() {
		found = found || c.GetRpc().GetType() == csipb.NodeServiceCapability_RPC_VOLUME_MOUNT_GROUP
	}
	if !found || len(caps.GetCapabilities()) != 1 {
		t.Fatalf("capabilities %v, want exactly VOLUME_MOUNT_GROUP", caps.GetCapabilities())
	}
	r := goodReq()
	r.VolumeCapability.GetMount().VolumeMountGroup = "2000"
	if _, err := node.NodePublishVolume(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	r = goodReq()
	r.VolumeId = "v2"
	if _, err := node.NodePublishVolume(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	if len(rec.calls) != 2 || rec.calls[0].Group == nil || *rec.calls[0].Group != 2000 || rec.calls[1].Group != nil {
		t.Fatalf("pipeline got groups %+v", rec.calls)
	}
}
