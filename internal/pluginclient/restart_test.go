package pluginclient

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"
)

// hangingServer answers Version and blocks Mount until its context ends.
type hangingServer struct {
	v1alpha1.UnimplementedCSIDriverProviderServer
	entered chan struct{}
}

func (s hangingServer) Version(context.Context, *v1alpha1.VersionRequest) (*v1alpha1.VersionResponse, error) {
	return &v1alpha1.VersionResponse{RuntimeName: "hanging"}, nil
}

func (s hangingServer) Mount(ctx context.Context, _ *v1alpha1.MountRequest) (*v1alpha1.MountResponse, error) {
	s.entered <- struct{}{}
	<-ctx.Done()
	return nil, ctx.Err()
}

// provider is a provider process stand-in whose death leaves its socket
// file behind, as a SIGKILLed process does.
type provider struct {
	g   *grpc.Server
	lis *net.UnixListener
}

func startProvider(t *testing.T, path string, srv v1alpha1.CSIDriverProviderServer) *provider {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(path) // a restarted provider replaces its stale socket
	lis, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	lis.SetUnlinkOnClose(false)
	g := grpc.NewServer()
	v1alpha1.RegisterCSIDriverProviderServer(g, srv)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return &provider{g: g, lis: lis}
}

// kill ends the provider abruptly: connections drop, the socket file stays.
func (p *provider) kill() { p.g.Stop() }

// TestProviderDiesMidCallAndComesBack: the call in flight fails at once with
// Unavailable; while the provider is gone calls fail within the connect
// timeout; once it is back on the same socket the very next call succeeds,
// on the same Client.
func TestProviderDiesMidCallAndComesBack(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "p.sock")
	entered := make(chan struct{}, 1)
	prov := startProvider(t, sock, hangingServer{entered: entered})
	c, err := New(Config{Dirs: []string{filepath.Dir(sock)}, ConnectTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Version(t.Context(), "p"); err != nil {
		t.Fatal(err)
	}

	errc := make(chan error, 1)
	go func() {
		_, err := c.Mount(t.Context(), "p", &v1alpha1.MountRequest{})
		errc <- err
	}()
	<-entered
	start := time.Now()
	prov.kill()
	select {
	case err := <-errc:
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("call in flight when the provider died: %v (code %v), want Unavailable", err, status.Code(err))
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("call in flight failed after %v, want at once", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("call in flight did not fail when the provider died")
	}

	// Gone, stale socket file left: fails within the connect timeout.
	for i := 0; i < 3; i++ {
		start := time.Now()
		_, err := c.Version(t.Context(), "p")
		if !errors.Is(err, ErrProviderUnavailable) && status.Code(err) != codes.Unavailable {
			t.Fatalf("call to a dead provider: %v, want Unavailable", err)
		}
		if d := time.Since(start); d > 1500*time.Millisecond {
			t.Fatalf("call to a dead provider took %v, want <= the 1s connect timeout", d)
		}
	}

	// Back on the same path: the next call succeeds, and so do the ones after.
	startProvider(t, sock, hangingServer{entered: entered})
	for i := 0; i < 5; i++ {
		v, err := c.Version(t.Context(), "p")
		if err != nil || v.GetRuntimeName() != "hanging" {
			t.Fatalf("call %d after the provider came back: %v, %v", i, v, err)
		}
	}
}

// TestProviderSocketRemovedAndRecreated: a provider that removes its socket
// on exit is NotFound while gone and served again when back.
func TestProviderSocketRemovedAndRecreated(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "p.sock")
	prov := startProvider(t, sock, versionServer{name: "one"})
	c, err := New(Config{Dirs: []string{dir}, ConnectTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Version(t.Context(), "p"); err != nil {
		t.Fatal(err)
	}
	prov.kill()
	if err := os.Remove(sock); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Version(t.Context(), "p"); !errors.Is(err, ErrProviderNotFound) {
		t.Fatalf("removed socket: %v, want ErrProviderNotFound", err)
	}
	startProvider(t, sock, versionServer{name: "two"})
	if v, err := c.Version(t.Context(), "p"); err != nil || v.GetRuntimeName() != "two" {
		t.Fatalf("after the provider came back: %v, %v", v, err)
	}
}

// releasedServer blocks Mount until release is closed, then succeeds.
type releasedServer struct {
	v1alpha1.UnimplementedCSIDriverProviderServer
	entered chan struct{}
	release chan struct{}
}

func (s releasedServer) Mount(context.Context, *v1alpha1.MountRequest) (*v1alpha1.MountResponse, error) {
	close(s.entered)
	<-s.release
	return &v1alpha1.MountResponse{}, nil
}

// TestReplacedConnectionOutlivesItsCalls: a provider replaced while a call
// is in flight (rolling update: the new process binds a new socket at the
// same path while the old one finishes its work) reconnects new calls at
// once, and the call in flight on the old connection still completes.
func TestReplacedConnectionOutlivesItsCalls(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "p.sock")
	old := releasedServer{entered: make(chan struct{}), release: make(chan struct{})}
	startProvider(t, sock, old)
	c, err := New(Config{Dirs: []string{filepath.Dir(sock)}, ConnectTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := c.Mount(t.Context(), "p", &v1alpha1.MountRequest{})
		errc <- err
	}()
	<-old.entered
	startProvider(t, sock, versionServer{name: "new"})
	if v, err := c.Version(t.Context(), "p"); err != nil || v.GetRuntimeName() != "new" {
		t.Fatalf("call after the replacement: %v, %v; want the new provider", v, err)
	}
	close(old.release)
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("call in flight on the replaced connection: %v, want success", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("call in flight on the replaced connection never returned")
	}
	c.mu.Lock()
	n := len(c.conns)
	c.mu.Unlock()
	if n != 1 {
		t.Fatalf("connections kept = %d, want 1", n)
	}
}
