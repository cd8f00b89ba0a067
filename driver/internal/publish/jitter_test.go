package publish

import (
	"fmt"
	"testing"
	"time"

	"github.com/sscsi/secrets-store/driver/internal/rotation"
)

// TestRotationJitterSpreadsVolumesMountedTogether: volumes mounted in the
// same instant (a node filling up, a rollout) do not all re-fetch at the same
// republish: none is due before the jitter window opens, part of them inside
// it, all of them once the whole interval has passed.
func TestRotationJitterSpreadsVolumesMountedTogether(t *testing.T) {
	const n = 40
	interval := 100 * time.Second
	h := newHarness(t, rotation.Policy{Enabled: true, Interval: interval})
	targets := make([]string, n)
	for i := range targets {
		targets[i] = h.target(fmt.Sprintf("p%02d", i))
		if err := h.pub.Publish(t.Context(), h.req(targets[i], "fake")); err != nil {
			t.Fatal(err)
		}
	}
	republish := func() int {
		t.Helper()
		before := h.fake.Calls()
		for _, tgt := range targets {
			if err := h.pub.Publish(t.Context(), h.req(tgt, "fake")); err != nil {
				t.Fatal(err)
			}
		}
		return h.fake.Calls() - before
	}
	window := time.Duration(float64(interval) * rotation.Jitter)

	h.advance(interval - window - time.Second)
	if got := republish(); got != 0 {
		t.Fatalf("%d of %d volumes re-fetched before the jitter window opened", got, n)
	}
	h.advance(window/2 + time.Second) // the middle of the window
	mid := republish()
	if mid < n/5 || mid > n*4/5 {
		t.Fatalf("%d of %d volumes mounted together re-fetched in the middle of the jitter window, want between %d and %d: the rotations are not spread",
			mid, n, n/5, n*4/5)
	}
	h.advance(window / 2)
	if got := republish(); got != n-mid {
		t.Fatalf("%d volumes re-fetched once the interval had passed, want the %d not re-fetched yet", got, n-mid)
	}
}
