package fake

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sscsi/secrets-store/providers/fake/params"
	"github.com/sscsi/secrets-store/providers/plugin"
)

func TestServedCounts(t *testing.T) {
	b := New()
	req := &plugin.Request{Attributes: map[string]string{"objects": "- objectName: a\n  value: x\n- objectName: b\n  value: y\n"}, Permission: 0o644}
	for i := 0; i < 2; i++ {
		if _, err := b.Mount(t.Context(), req); err != nil {
			t.Fatal(err)
		}
	}
	req.CurrentVersions = map[string]string{"a": "1"}
	if _, err := b.Mount(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(b.AdminHandler("tok"))
	defer srv.Close()
	if resp, err := http.Get(srv.URL + "/v1/served"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /v1/served without the token: %v %v, want 401", resp, err)
	}
	hreq, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/served", nil)
	hreq.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]Served
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got["a"] != (Served{Mounts: 3, WithCurrentVersion: 1}) || got["b"] != (Served{Mounts: 3}) {
		t.Fatalf("served = %+v", got)
	}
}

func TestDelay(t *testing.T) {
	b := New()
	req := &plugin.Request{Attributes: map[string]string{"objects": "- objectName: a\n  value: x\n  delay: 200ms\n"}, Permission: 0o644}
	start := time.Now()
	if _, err := b.Mount(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("mount answered after %v, want >= 200ms", d)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	req.Attributes["objects"] = "- objectName: a\n  value: x\n  delay: 30s\n"
	if _, err := b.Mount(ctx, req); err == nil {
		t.Fatal("a cancelled mount waited out its delay")
	}
	for _, bad := range []string{"-1s", "31s", "soon"} {
		if _, err := params.ParseObjects("- objectName: a\n  delay: " + bad + "\n"); err == nil {
			t.Errorf("delay %q accepted", bad)
		}
	}
}
