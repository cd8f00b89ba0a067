// Package pluginclient finds provider plugins' unix sockets, keeps one gRPC
// connection per provider, and calls them, failing fast when a provider is
// absent or dead instead of waiting for kubelet's deadline.
package pluginclient

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/klog/v2"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
)

// Errors. The CSI layer maps them to gRPC codes.
var (
	// ErrInvalidProviderName: spec.provider does not match the allowed pattern.
	ErrInvalidProviderName = errors.New("invalid provider name")
	// ErrProviderNotFound: no socket for the provider in any directory.
	ErrProviderNotFound = errors.New("provider not found")
	// ErrProviderUnavailable: the socket exists but nothing answers on it.
	ErrProviderUnavailable = errors.New("provider unavailable")
)

// ValidateName checks a provider name as the upstream driver does.
func ValidateName(name string) error {
	if err := ssv1.Provider(name).Validate(); err != nil {
		return fmt.Errorf("%w: spec.provider %w", ErrInvalidProviderName, err)
	}
	return nil
}

// Config configures a Client.
type Config struct {
	// Dirs are searched in order for <provider>.sock.
	Dirs []string
	// MaxRecvMsgSize is the largest response accepted (bytes).
	MaxRecvMsgSize int
	// ConnectTimeout bounds how long a call waits for the provider's socket
	// to accept a connection (default 3s).
	ConnectTimeout time.Duration
}

// Client calls provider plugins. It is safe for concurrent use.
type Client struct {
	cfg Config

	mu    sync.Mutex // guards conns
	conns map[string]*conn
}

// conn is a connection to the socket file at path; file identifies that
// file, so that a provider that restarted (and so created a new socket file
// at the same path) gets a new connection at once instead of a call failing
// on the dead one.
type conn struct {
	path string
	file fileID
	cc   *grpc.ClientConn

	// calls and retired are guarded by Client.mu.
	calls   int  // calls in flight on cc
	retired bool // replaced or Client closed: cc closes when calls reach 0
}

// fileID tells socket files at one path apart: an inode number can be
// reused at once by the next file, so the change time goes with it.
type fileID struct {
	ino        uint64
	ctimeSec   int64
	ctimeNanos int64
}

// New validates cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	if len(cfg.Dirs) == 0 {
		return nil, errors.New("pluginclient: no provider directories configured")
	}
	if cfg.MaxRecvMsgSize <= 0 {
		cfg.MaxRecvMsgSize = 4 << 20
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 3 * time.Second
	}
	return &Client{cfg: cfg, conns: map[string]*conn{}}, nil
}

// socketPath finds the provider's socket in the configured directories and
// returns its path and identity.
func (c *Client) socketPath(provider string) (string, fileID, error) {
	for _, d := range c.cfg.Dirs {
		p := filepath.Join(d, provider+".sock")
		fi, err := os.Stat(p)
		if err == nil && fi.Mode().Type() == fs.ModeSocket {
			var id fileID
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				id = fileID{ino: st.Ino, ctimeSec: st.Ctim.Sec, ctimeNanos: st.Ctim.Nsec}
			}
			return p, id, nil
		}
	}
	// "failed to lookup provider client" is the upstream driver's wording
	// (its rotation event); alerts written for it match on it.
	return "", fileID{}, fmt.Errorf("%w: failed to lookup provider client: %q: no socket %s.sock in %s; is the %q provider installed and running on this node?",
		ErrProviderNotFound, provider, provider, strings.Join(c.cfg.Dirs, ", "), provider)
}

// client returns a connected client for provider, dialing or re-dialing as
// needed, and waits at most ConnectTimeout for the connection to be ready.
// The caller must call release once its call on the client has ended: a
// connection replaced meanwhile is closed only then, so a call in flight
// to a provider that is being replaced (rolling update) completes.
func (c *Client) client(ctx context.Context, provider string) (cl v1alpha1.CSIDriverProviderClient, release func(), err error) {
	if err := ValidateName(provider); err != nil {
		return nil, nil, err
	}
	path, file, err := c.socketPath(provider)
	if err != nil {
		return nil, nil, err
	}
	c.mu.Lock()
	cn, ok := c.conns[provider]
	if ok && (cn.path != path || cn.file != file) {
		klog.V(2).InfoS("provider socket replaced; reconnecting", "provider", provider, "socket", path)
		delete(c.conns, provider)
		c.retireLocked(cn)
		ok = false
	}
	if !ok {
		cc, err := grpc.NewClient("unix://"+path,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithAuthority("localhost"),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(c.cfg.MaxRecvMsgSize)),
			// Static flow-control windows turn off gRPC's bandwidth-delay
			// probing, which adds a PING and its ack (two writes, two reads,
			// two goroutine wake-ups) to calls on a local socket where there
			// is no bandwidth to probe. 1 MiB lets a large response through
			// without waiting for window updates.
			grpc.WithInitialWindowSize(windowSize),
			grpc.WithInitialConnWindowSize(windowSize),
		)
		if err != nil {
			c.mu.Unlock()
			return nil, nil, fmt.Errorf("%w: %s: %w", ErrProviderUnavailable, path, err)
		}
		cn = &conn{path: path, file: file, cc: cc}
		c.conns[provider] = cn
	}
	cn.calls++
	c.mu.Unlock()
	release = func() { c.release(cn) }

	if err := waitReady(ctx, cn.cc, c.cfg.ConnectTimeout); err != nil {
		release()
		return nil, nil, fmt.Errorf("%w: provider %q does not answer on %s within %s: %w", ErrProviderUnavailable, provider, path, c.cfg.ConnectTimeout, err)
	}
	return v1alpha1.NewCSIDriverProviderClient(cn.cc), release, nil
}

// retireLocked marks cn for closing once its calls have ended. c.mu held.
func (c *Client) retireLocked(cn *conn) {
	cn.retired = true
	if cn.calls == 0 {
		closeConn(cn)
	}
}

// release ends one call on cn, closing cn if it was retired meanwhile.
func (c *Client) release(cn *conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cn.calls--
	if cn.retired && cn.calls == 0 {
		closeConn(cn)
	}
}

func closeConn(cn *conn) {
	if err := cn.cc.Close(); err != nil {
		klog.V(4).InfoS("close provider connection", "socket", cn.path, "err", err)
	}
}

// windowSize is the static HTTP/2 flow-control window of provider connections.
const windowSize = 1 << 20

func waitReady(ctx context.Context, cc *grpc.ClientConn, timeout time.Duration) error {
	if cc.GetState() == connectivity.Ready {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cc.Connect()
	for {
		s := cc.GetState()
		switch s {
		case connectivity.Ready:
			return nil
		case connectivity.TransientFailure:
			// Try once more, then report: a refused connection is final
			// for this call.
			cc.ResetConnectBackoff()
		}
		if !cc.WaitForStateChange(ctx, s) {
			return fmt.Errorf("connection state %s", s)
		}
		if cc.GetState() == connectivity.TransientFailure {
			return errors.New("connection refused or socket dead")
		}
	}
}

// Mount calls the provider's Mount RPC.
func (c *Client) Mount(ctx context.Context, provider string, req *v1alpha1.MountRequest) (*v1alpha1.MountResponse, error) {
	cl, release, err := c.client(ctx, provider)
	if err != nil {
		return nil, err
	}
	defer release()
	return cl.Mount(ctx, req)
}

// Version calls the provider's Version RPC (health checks).
func (c *Client) Version(ctx context.Context, provider string) (*v1alpha1.VersionResponse, error) {
	cl, release, err := c.client(ctx, provider)
	if err != nil {
		return nil, err
	}
	defer release()
	return cl.Version(ctx, &v1alpha1.VersionRequest{Version: "v1alpha1"})
}

// Has reports whether provider is a valid name with a socket now, or one
// this client has connected to (which it does only through a socket that
// existed). The driver labels metrics only with such names, so a
// SecretProviderClass cannot invent series.
func (c *Client) Has(provider string) bool {
	if ValidateName(provider) != nil {
		return false
	}
	// A connection is only ever made to a socket that existed: no need to
	// look at the socket again on every call's metrics.
	c.mu.Lock()
	_, connected := c.conns[provider]
	c.mu.Unlock()
	if connected {
		return true
	}
	_, _, err := c.socketPath(provider)
	return err == nil
}

// Providers lists the provider names that have a socket now.
func (c *Client) Providers() []string {
	seen := map[string]bool{}
	var out []string
	for _, d := range c.cfg.Dirs {
		ents, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range ents {
			name, ok := strings.CutSuffix(e.Name(), ".sock")
			if ok && e.Type() == fs.ModeSocket && !seen[name] && ValidateName(name) == nil {
				seen[name] = true
				out = append(out, name)
			}
		}
	}
	return out
}

// Close closes every connection once the calls in flight on it have ended.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, cn := range c.conns {
		delete(c.conns, name)
		c.retireLocked(cn)
	}
}
