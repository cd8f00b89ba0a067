// Package serve owns the process's listeners: one unix-socket gRPC serve
// loop and one HTTP serve loop, both of which run until their context ends
// and then stop gracefully within StopTimeout.
//
// Every gRPC server of the project (the CSI socket, the kubelet
// registration socket, each provider's socket) and every HTTP endpoint
// (metrics, health, pprof, admin APIs) is served through this package, so
// that shutdown behaviour is the same everywhere.
package serve

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"k8s.io/klog/v2"
)

// StopTimeout bounds a graceful stop: in-flight calls (gRPC) or requests
// (HTTP) get this long to finish once the context ends; then the server
// is stopped hard.
const StopTimeout = 10 * time.Second

// socketDirMode is the mode of a socket directory this package creates;
// an existing directory keeps its mode.
const socketDirMode = 0o750

// LocalOptions are the server options of every gRPC server on a unix socket
// (the CSI socket, each provider's socket). Static flow-control windows turn
// off bandwidth-delay probing: with a dynamic window the server answers each
// burst of a client's data with a PING, which the client must read and ack
// (a wake-up, a read and a write on each side per call) on a local socket
// with nothing to probe. A few long-lived goroutines serve the calls instead
// of one new goroutine (and its stack growth) per call.
func LocalOptions(opts ...grpc.ServerOption) []grpc.ServerOption {
	return append([]grpc.ServerOption{
		grpc.InitialWindowSize(1 << 20), grpc.InitialConnWindowSize(1 << 20),
		grpc.NumStreamWorkers(4),
	}, opts...)
}

// GRPC serves srv on the unix socket at path until ctx is done, then stops
// srv gracefully (hard after StopTimeout) and returns nil.
//
// It creates the socket's directory if missing and replaces a stale
// socket left by an earlier process; it refuses to replace anything at
// path that is not a socket. On return the socket file is removed, unless
// another process has replaced it meanwhile. A serve error (other than
// the stop) is returned wrapped.
func GRPC(ctx context.Context, path string, srv *grpc.Server) error {
	lis, err := listenUnix(path)
	if err != nil {
		return err
	}
	ours, _ := os.Lstat(path)
	defer removeIfSame(path, ours)
	klog.InfoS("gRPC serving", "socket", path)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case <-ctx.Done():
		stopGRPC(srv)
		return nil
	case err := <-errc:
		return fmt.Errorf("serve gRPC on %s: %w", path, err)
	}
}

// HTTP serves h on the TCP address addr (host:port; port 0 picks one)
// until ctx is done, then shuts down gracefully within StopTimeout and
// returns nil. Headers must arrive within 5s (slowloris).
func HTTP(ctx context.Context, addr string, h http.Handler) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	klog.InfoS("HTTP serving", "addr", lis.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(lis) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), StopTimeout)
		defer cancel()
		if err := hs.Shutdown(sctx); err != nil {
			_ = hs.Close()
			klog.InfoS("HTTP server stopped hard", "addr", addr, "err", err)
		}
		return nil
	case err := <-errc:
		return fmt.Errorf("serve HTTP on %s: %w", addr, err)
	}
}

func listenUnix(path string) (net.Listener, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("socket path %q is not absolute", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), socketDirMode); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// removeIfSame removes the socket, and only if it is still ours.
	lis.(*net.UnixListener).SetUnlinkOnClose(false)
	return lis, nil
}

// removeStale removes a socket left at path by an earlier process. Anything
// else at path is not ours to delete.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect socket path %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("socket path %s exists and is not a socket (%s); refusing to replace it", path, fi.Mode().Type())
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	return nil
}

func removeIfSame(path string, ours os.FileInfo) {
	now, err := os.Lstat(path)
	if err != nil || ours == nil || !os.SameFile(ours, now) {
		return
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		klog.ErrorS(err, "remove socket on exit", "socket", path)
	}
}

func stopGRPC(srv *grpc.Server) {
	done := make(chan struct{})
	go func() { srv.GracefulStop(); close(done) }()
	t := time.NewTimer(StopTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		klog.InfoS("gRPC calls still running after the stop timeout; stopping hard", "timeout", StopTimeout)
		srv.Stop()
		<-done
	}
}
