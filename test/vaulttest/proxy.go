package vaulttest

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
)

// FaultProxy is a plain-HTTP reverse proxy in front of a Server that counts requests and can
// answer chosen ones with an error status instead of forwarding them (5xx, or 403 to force a
// re-login). Point the client under test at Addr.
type FaultProxy struct {
	// Addr is the proxy's address, http://127.0.0.1:<port>.
	Addr string

	mu     sync.Mutex // guards faults and counts
	faults []fault
	counts map[string]int
}

type fault struct {
	pathPrefix string
	status     int
	left       int
}

// FaultProxy starts a proxy to s, closed in T.Cleanup.
func (s *Server) FaultProxy(t T) *FaultProxy {
	t.Helper()
	target, err := url.Parse(s.Addr)
	if err != nil {
		t.Fatalf("vaulttest: %v", err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if s.CACertPEM != nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(s.CACertPEM)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	rp.Transport = tr
	p := &FaultProxy{counts: map[string]int{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("vaulttest: proxy listener: %v", err)
	}
	p.Addr = "http://" + l.Addr().String()
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if status := p.record(r); status != 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = fmt.Fprintf(w, `{"errors":["vaulttest: injected %d"]}`, status)
			return
		}
		rp.ServeHTTP(w, r)
	})}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Logf("vaulttest: proxy: %v", err)
		}
	}()
	t.Cleanup(func() { _ = srv.Close() })
	return p
}

// record counts r and returns the status to answer it with, 0 to forward it.
func (p *FaultProxy) record(r *http.Request) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts[r.Method+" "+r.URL.Path]++
	for i := range p.faults {
		f := &p.faults[i]
		if f.left > 0 && strings.HasPrefix(r.URL.Path, f.pathPrefix) {
			f.left--
			return f.status
		}
	}
	return 0
}

// FailNext answers the next n requests whose path starts with pathPrefix (e.g. "/v1/secret/",
// "/v1/auth/kubernetes/login"; "" matches every request) with status instead of forwarding them.
func (p *FaultProxy) FailNext(pathPrefix string, status, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = append(p.faults, fault{pathPrefix: pathPrefix, status: status, left: n})
}

// Count is how many requests with method and a path starting with pathPrefix reached the proxy
// (forwarded or failed). method "" matches any method.
func (p *FaultProxy) Count(method, pathPrefix string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for k, c := range p.counts {
		m, path, _ := strings.Cut(k, " ")
		if (method == "" || m == method) && strings.HasPrefix(path, pathPrefix) {
			n += c
		}
	}
	return n
}

// Reset forgets the counts and any pending faults.
func (p *FaultProxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts = map[string]int{}
	p.faults = nil
}
