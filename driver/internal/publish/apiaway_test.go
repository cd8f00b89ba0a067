package publish

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
	"github.com/sscsi/secrets-store/driver/internal/rotation"
	"github.com/sscsi/secrets-store/driver/internal/spc"
)

// awayAPI is an spc.Getter whose API server can be switched off: reads then
// fail the way a refused connection does.
type awayAPI struct {
	spc.Getter
	down atomic.Bool
}

func (a *awayAPI) Get(ctx context.Context, ns, name string) (*ssv1.SecretProviderClass, error) {
	if a.down.Load() {
		return nil, errors.New(`Get "https://127.0.0.1:6443/apis/...": dial tcp 127.0.0.1:6443: connect: connection refused`)
	}
	return a.Getter.Get(ctx, ns, name)
}

// TestAPIServerAwayDuringRotation: mounted volumes keep rotating with the
// class they were fetched with and record the outcome for the status
// writer; a new mount fails with Unavailable naming the class and the API;
// a driver restarted during the outage keeps the files.
func TestAPIServerAwayDuringRotation(t *testing.T) {
	h := newHarness(t, rotation.Policy{Enabled: true, Interval: time.Minute})
	api := &awayAPI{Getter: h.spcs}
	h.cfg.SPCs = api
	h.restart()
	tgt := h.target("a")
	if err := h.pub.Publish(t.Context(), h.req(tgt, "fake")); err != nil {
		t.Fatal(err)
	}

	api.down.Store(true)
	h.fake.Set("user", []byte("bob"))
	h.advance(2 * time.Minute)
	if err := h.pub.Publish(t.Context(), h.req(tgt, "fake")); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(tgt, "user")); got != "bob" {
		t.Fatalf("user after a rotation with the API away = %q, want bob", got)
	}
	h.status.mu.Lock()
	last := h.status.got[len(h.status.got)-1]
	h.status.mu.Unlock()
	if !last.Rotation || !last.Changed || !strings.Contains(last.Versions[1].Version, "+1") {
		t.Errorf("recorded outcome = %+v, want the rotated versions", last)
	}

	err := h.pub.Publish(t.Context(), h.req(h.target("new"), "fake"))
	if Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "Kubernetes API is unavailable") || !strings.Contains(err.Error(), "ns/fake") {
		t.Fatalf("new mount with the API away: %v (code %v), want Unavailable naming the API and ns/fake", err, Code(err))
	}

	// Restarted while the API is away: no class known, the rotation fails
	// and the files stay.
	h.restart()
	h.fake.Set("user", []byte("carol"))
	h.advance(2 * time.Minute)
	if err := h.pub.Publish(t.Context(), h.req(tgt, "fake")); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(tgt, "user")); got != "bob" {
		t.Fatalf("user = %q, want the last good bob", got)
	}
	api.down.Store(false)
	if err := h.pub.Publish(t.Context(), h.req(tgt, "fake")); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(tgt, "user")); got != "carol" {
		t.Fatalf("user after the API came back = %q, want carol", got)
	}
}
