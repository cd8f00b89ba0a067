package serve

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// slowHealth answers Check once release is closed, so a test can hold a
// call in flight across the stop.
type slowHealth struct {
	healthpb.UnimplementedHealthServer
	started chan struct{}
	release chan struct{}
}

func (h *slowHealth) Check(context.Context, *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	close(h.started)
	<-h.release
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func startGRPC(t *testing.T, path string, h healthpb.HealthServer) (cancel func(), done <-chan error) {
	t.Helper()
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, h)
	ctx, cancel := context.WithCancel(t.Context())
	d := make(chan error, 1)
	go func() { d <- GRPC(ctx, path, srv) }()
	t.Cleanup(cancel)
	return cancel, d
}

func dial(t *testing.T, path string) healthpb.HealthClient {
	t.Helper()
	cc, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return healthpb.NewHealthClient(cc)
}

func waitSocket(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if fi, err := os.Lstat(path); err == nil && fi.Mode().Type() == os.ModeSocket {
			if c, err := net.Dial("unix", path); err == nil {
				_ = c.Close()
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("socket %s never accepted connections", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestGRPCLifecycle: the directory is created, a stale socket is replaced,
// an in-flight call finishes across the stop, and the socket is removed.
func TestGRPCLifecycle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nested", "dir", "p.sock")
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		t.Fatal(err)
	}
	// A stale socket: bound, then its listener forgets to unlink it.
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	_ = stale.Close()

	h := &slowHealth{started: make(chan struct{}), release: make(chan struct{})}
	cancel, done := startGRPC(t, path, h)
	waitSocket(t, path)
	c := dial(t, path)
	callErr := make(chan error, 1)
	go func() {
		_, err := c.Check(t.Context(), &healthpb.HealthCheckRequest{})
		callErr <- err
	}()
	<-h.started
	cancel()
	select {
	case err := <-done:
		t.Fatalf("GRPC returned (%v) while a call was in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(h.release)
	if err := <-callErr; err != nil {
		t.Fatalf("in-flight call failed across a graceful stop: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("GRPC = %v, want nil after the context ended", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind after stop: %v", err)
	}
}

// TestGRPCRefusesNonSocket: a regular file at the socket path is not ours
// to delete.
func TestGRPCRefusesNonSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.sock")
	if err := os.WriteFile(path, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := GRPC(t.Context(), path, grpc.NewServer())
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("GRPC = %v, want a refusal naming the non-socket", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "keep me" {
		t.Fatalf("file at socket path changed: %q", b)
	}
}

func TestGRPCRejectsRelativePath(t *testing.T) {
	if err := GRPC(t.Context(), "rel/p.sock", grpc.NewServer()); err == nil || !strings.Contains(err.Error(), "not absolute") {
		t.Fatalf("GRPC = %v, want an error for a relative path", err)
	}
}

// TestGRPCKeepsReplacedSocket: when a newer process has replaced the socket,
// the old one's exit does not remove the newer socket.
func TestGRPCKeepsReplacedSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.sock")
	h := &slowHealth{started: make(chan struct{}), release: make(chan struct{})}
	close(h.release)
	cancel, done := startGRPC(t, path, h)
	waitSocket(t, path)
	// The successor replaces the socket file.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	next, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("successor's socket removed by the old server's exit: %v", err)
	}
}

func TestHTTP(t *testing.T) {
	// Pick a free port, release it, and serve there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- HTTP(ctx, addr, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if string(b) != "ok" {
				t.Fatalf("body = %q", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("HTTP never served: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A second server on the same address fails with the address named.
	if err := HTTP(t.Context(), addr, http.NotFoundHandler()); err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("second HTTP on %s = %v, want a listen error naming it", addr, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("HTTP = %v, want nil after the context ended", err)
	}
}
