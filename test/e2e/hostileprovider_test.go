//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/sscsi/secrets-store/test/e2e/framework"
)

// hostileProvider is a provider served by the test process on a socket in
// the node's providers directory that answers each mount with a response
// our own providers never send (they refuse such classes themselves), so
// the driver's own checks of a provider's response are what a pod meets.
// The class parameter "answer" picks the response: see hostileAnswers.
type hostileProvider struct {
	v1alpha1.UnimplementedCSIDriverProviderServer
}

// hostileAnswers are the responses, by the class parameter "answer".
var hostileAnswers = map[string]*v1alpha1.MountResponse{
	// Two files with one path (upstream: "appears more than once").
	"duplicate": {
		ObjectVersion: []*v1alpha1.ObjectVersion{{Id: "a", Version: "1"}, {Id: "b", Version: "1"}},
		Files:         []*v1alpha1.File{{Path: "f", Mode: 0o644, Contents: []byte("a")}, {Path: "f", Mode: 0o644, Contents: []byte("b")}},
	},
	// A file that is also another file's directory.
	"conflict": {
		ObjectVersion: []*v1alpha1.ObjectVersion{{Id: "a", Version: "1"}, {Id: "b", Version: "1"}},
		Files:         []*v1alpha1.File{{Path: "d", Mode: 0o644, Contents: []byte("a")}, {Path: "d/e", Mode: 0o644, Contents: []byte("b")}},
	},
	// A set-uid mode.
	"mode": {
		ObjectVersion: []*v1alpha1.ObjectVersion{{Id: "a", Version: "1"}},
		Files:         []*v1alpha1.File{{Path: "f", Mode: 0o4755, Contents: []byte("a")}},
	},
	// Files but no object versions.
	"noversions": {
		Files: []*v1alpha1.File{{Path: "f", Mode: 0o644, Contents: []byte("a")}},
	},
	// An old-style provider error code, and one that says throttled.
	"errorcode": {Error: &v1alpha1.Error{Code: "BackendUnreachable"}},
	"throttled": {Error: &v1alpha1.Error{Code: "ThrottlingException"}},
}

// hostileHang is the answer that never comes.
const hostileHang = "hang"

func (hostileProvider) Version(context.Context, *v1alpha1.VersionRequest) (*v1alpha1.VersionResponse, error) {
	return &v1alpha1.VersionResponse{Version: "v1alpha1", RuntimeName: "hostile", RuntimeVersion: "0"}, nil
}

func (hostileProvider) Mount(ctx context.Context, req *v1alpha1.MountRequest) (*v1alpha1.MountResponse, error) {
	var attrs map[string]string
	if err := json.Unmarshal([]byte(req.GetAttributes()), &attrs); err != nil {
		return nil, err
	}
	if attrs["answer"] == hostileHang {
		// Never answers: the driver's --provider-timeout (60 s) ends the call.
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if r, ok := hostileAnswers[attrs["answer"]]; ok {
		return r, nil
	}
	return &v1alpha1.MountResponse{Error: &v1alpha1.Error{Code: "UnknownAnswer"}}, nil
}

// serveHostileProvider serves hostileProvider in the node's providers
// directory until the test ends and returns its provider name.
func serveHostileProvider(t *testing.T) string {
	t.Helper()
	name := "hostile" + framework.RandomSuffix()
	path := filepath.Join(framework.ProviderDir, name+".sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatalf("hostile provider socket: %v", err)
	}
	srv := grpc.NewServer()
	v1alpha1.RegisterCSIDriverProviderServer(srv, hostileProvider{})
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Stop()
		_ = os.Remove(path)
	})
	return name
}
