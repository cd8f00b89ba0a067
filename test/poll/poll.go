// Package poll waits in tests for a condition that other processes (the
// API server, a driver, kubelet) make true in their own time.
package poll

import (
	"testing"
	"time"
)

// Interval is how often Until checks its condition.
const Interval = 50 * time.Millisecond

// Until calls f every Interval until it returns nil, and fails the test with
// f's last error once timeout has passed or the test's context has ended.
func Until(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("test ended: %v", err)
		case <-time.After(Interval):
		}
	}
}
