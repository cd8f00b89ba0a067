package plugin_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sscsi/secrets-store/providers/plugin"
)

type nopBackend struct{}

func (nopBackend) Mount(context.Context, *plugin.Request) (*plugin.Response, error) {
	return &plugin.Response{}, nil
}

func TestHTTPHandler(t *testing.T) {
	srv, err := plugin.New(plugin.Config{Name: "x", Backend: nopBackend{}})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "x"})
	reg.MustRegister(c)
	c.Inc()
	hs := httptest.NewServer(srv.HTTPHandler(reg))
	defer hs.Close()
	for path, want := range map[string]string{"/healthz": "ok", "/metrics": "x_total 1"} {
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), want) {
			t.Errorf("GET %s = %d %q, want 200 containing %q", path, resp.StatusCode, b, want)
		}
	}
}
