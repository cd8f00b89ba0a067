package driver

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestReadinessSharesOneCallAndHoldsNoLock: probes arriving while the API
// call hangs share it, and a probe that gives up returns at once instead
// of queueing behind the call.
func TestReadinessSharesOneCallAndHoldsNoLock(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	r := &readiness{ping: func(ctx context.Context) error {
		calls.Add(1)
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for range 5 {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- r.check(t.Context()) }()
	}
	// A probe with its own short deadline is not stuck behind the call.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := r.check(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("probe with a deadline = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("probe with a 50ms deadline took %v", d)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("shared probe = %v, want ready", err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("API calls = %d, want 1 shared by every probe", n)
	}
	// Within the TTL the result is reused.
	if err := r.check(t.Context()); err != nil || calls.Load() != 1 {
		t.Fatalf("cached probe = %v after %d calls", err, calls.Load())
	}
}
