package pluginclient

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"
)

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"aws", "azure", "gcp", "vault", "my_provider-2", strings.Repeat("a", 30)} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("%q rejected: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "../aws", "a/b", "a.sock", strings.Repeat("a", 31), "a b"} {
		if err := ValidateName(bad); !errors.Is(err, ErrInvalidProviderName) {
			t.Errorf("%q accepted", bad)
		}
	}
}

type versionServer struct {
	v1alpha1.UnimplementedCSIDriverProviderServer
	name string
}

func (s versionServer) Version(context.Context, *v1alpha1.VersionRequest) (*v1alpha1.VersionResponse, error) {
	return &v1alpha1.VersionResponse{RuntimeName: s.name}, nil
}

func serveAt(t *testing.T, path, name string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	v1alpha1.RegisterCSIDriverProviderServer(g, versionServer{name: name})
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
}

// TestSearchOrder: the additional directories are searched before
// --provider-volume, as upstream does.
func TestSearchOrder(t *testing.T) {
	root := t.TempDir()
	first, second := filepath.Join(root, "etc"), filepath.Join(root, "run")
	serveAt(t, filepath.Join(second, "aws.sock"), "aws-in-run")
	serveAt(t, filepath.Join(first, "aws.sock"), "aws-in-etc")
	serveAt(t, filepath.Join(second, "vault.sock"), "vault-in-run")
	c, err := New(Config{Dirs: []string{first, second}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for provider, want := range map[string]string{"aws": "aws-in-etc", "vault": "vault-in-run"} {
		v, err := c.Version(t.Context(), provider)
		if err != nil || v.GetRuntimeName() != want {
			t.Errorf("%s: got %v, %v; want %s", provider, v, err, want)
		}
	}
	got := c.Providers()
	sort.Strings(got)
	if strings.Join(got, ",") != "aws,vault" {
		t.Errorf("Providers = %v", got)
	}
	if _, err := c.Version(t.Context(), "gcp"); !errors.Is(err, ErrProviderNotFound) || !strings.Contains(err.Error(), first) || !strings.Contains(err.Error(), second) ||
		!strings.Contains(err.Error(), `failed to lookup provider client: "gcp"`) {
		t.Errorf("missing provider: %v", err)
	}
}
