package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestUpstreamSeriesNames checks the exposition carries the upstream series
// names and labels that dashboards rely on.
func TestUpstreamSeriesNames(t *testing.T) {
	r := New()
	r.Publish("aws", "", time.Millisecond, true)
	r.Publish("aws", "NotFound", 0, true)
	r.Unpublish(false)
	r.Unpublish(true)
	r.Rotation("aws", "", true, time.Second)
	r.Rotation("aws", "Unavailable", false, time.Second)
	r.Sync("aws", 2, 90*time.Second)
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	out := string(b)
	for _, want := range []string{
		`node_publish_total{os_type="linux",provider="aws"} 1`,
		`node_publish_error_total{error_type="NotFound",os_type="linux",provider="aws"} 1`,
		`node_unpublish_total{os_type="linux"} 1`,
		`node_unpublish_error_total{os_type="linux"} 1`,
		`rotation_reconcile_total{os_type="linux",provider="aws",rotated="true"} 1`,
		`rotation_reconcile_error_total{error_type="Unavailable",os_type="linux",provider="aws",rotated="false"} 1`,
		`rotation_reconcile_duration_sec_bucket`,
		`sync_k8s_secret_total{os_type="linux",provider="aws"} 2`,
		`sync_k8s_secret_duration_sec_bucket{os_type="linux",le="120"} 1`,
		`node_publish_duration_seconds_bucket`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
}
