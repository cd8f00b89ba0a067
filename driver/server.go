package driver

import (
	"context"
	"fmt"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc"
	"k8s.io/klog/v2"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/sscsi/secrets-store/driver/internal/csi"
	"github.com/sscsi/secrets-store/driver/internal/kubeclient"
	"github.com/sscsi/secrets-store/driver/internal/metrics"
	"github.com/sscsi/secrets-store/internal/pluginclient"
	"github.com/sscsi/secrets-store/internal/serve"
)

// Server plumbing Run wires together: the CSI socket, the metrics and
// pprof muxes, the readiness probe and the provider health checks.

// timeoutProviders bounds each provider call so that a hung provider fails
// the mount with DeadlineExceeded before kubelet gives up.
type timeoutProviders struct {
	c *pluginclient.Client
	d time.Duration
}

func (t timeoutProviders) Mount(ctx context.Context, provider string, req *v1alpha1.MountRequest) (*v1alpha1.MountResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, t.d)
	defer cancel()
	return t.c.Mount(ctx, provider, req)
}

func serveCSI(ctx context.Context, sock string, srv *csi.Server) error {
	g := grpc.NewServer(serve.LocalOptions(grpc.ChainUnaryInterceptor(csi.LogInterceptor))...)
	csipb.RegisterIdentityServer(g, srv)
	csipb.RegisterNodeServer(g, srv)
	return serve.GRPC(ctx, sock, g)
}

func metricsMux(m *metrics.Recorder, r *readiness) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, req *http.Request) {
		if err := r.check(req.Context()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

func pprofMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// Readiness probe timing: a result is reused for readinessTTL so probes do
// not load the API server; one API call takes at most readinessTimeout.
const (
	readinessTTL     = 5 * time.Second
	readinessTimeout = 3 * time.Second
)

// readiness caches whether the Kubernetes API answers. Concurrent probes
// share one API call; no lock is held across it.
type readiness struct {
	ping    func(context.Context) error // asks the API server /readyz
	flights singleflight.Group

	mu      sync.Mutex // guards checked, err
	checked time.Time
	err     error
}

func newReadiness(kc *kubeclient.Clients) *readiness {
	return &readiness{ping: func(ctx context.Context) error { return kc.CoreREST.Get().AbsPath("/readyz").Do(ctx).Error() }}
}

func (r *readiness) check(ctx context.Context) error {
	r.mu.Lock()
	fresh, err := time.Since(r.checked) < readinessTTL, r.err
	r.mu.Unlock()
	if fresh {
		return err
	}
	ch := r.flights.DoChan("", func() (any, error) {
		// Shared by every probe waiting now: one giving up must not fail
		// the others.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readinessTimeout)
		defer cancel()
		err := r.ping(pctx)
		if err != nil {
			err = fmt.Errorf("the Kubernetes API is not reachable: %w", err)
		}
		r.mu.Lock()
		r.checked, r.err = time.Now(), err
		r.mu.Unlock()
		return nil, err
	})
	select {
	case res := <-ch:
		return res.Err
	case <-ctx.Done():
		return fmt.Errorf("readiness check: %w", ctx.Err())
	}
}

func checkProviders(ctx context.Context, c *pluginclient.Client, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		for _, p := range c.Providers() {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			v, err := c.Version(cctx, p)
			cancel()
			if err != nil {
				klog.ErrorS(err, "provider health check failed", "provider", p)
				continue
			}
			klog.V(4).InfoS("provider healthy", "provider", p, "runtime", v.GetRuntimeName(), "version", v.GetRuntimeVersion())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
