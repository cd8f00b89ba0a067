package spc

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
)

type countingGetter struct {
	calls atomic.Int32
	fail  atomic.Bool
	delay time.Duration
}

func (g *countingGetter) Get(_ context.Context, ns, name string) (*ssv1.SecretProviderClass, error) {
	g.calls.Add(1)
	time.Sleep(g.delay)
	if g.fail.Load() {
		return nil, apierrors.NewNotFound(ssv1.Resource("secretproviderclasses"), name)
	}
	return &ssv1.SecretProviderClass{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: ssv1.SecretProviderClassSpec{Provider: "fake"}}, nil
}

func TestCachedGetterSharesAndExpires(t *testing.T) {
	g := &countingGetter{delay: 20 * time.Millisecond}
	c := &CachedGetter{Getter: g, TTL: 200 * time.Millisecond}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Get(t.Context(), "ns", "a"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := g.calls.Load(); n != 1 {
		t.Fatalf("20 concurrent gets made %d reads, want 1", n)
	}
	if _, err := c.Get(t.Context(), "ns", "b"); err != nil || g.calls.Load() != 2 {
		t.Fatalf("other key: %v, calls %d", err, g.calls.Load())
	}
	time.Sleep(250 * time.Millisecond)
	if _, err := c.Get(t.Context(), "ns", "a"); err != nil || g.calls.Load() != 3 {
		t.Fatalf("after TTL: %v, calls %d; want a fresh read", err, g.calls.Load())
	}
}

func TestCachedGetterDoesNotCacheErrors(t *testing.T) {
	g := &countingGetter{}
	g.fail.Store(true)
	c := &CachedGetter{Getter: g, TTL: time.Hour}
	for i := 0; i < 3; i++ {
		if _, err := c.Get(t.Context(), "ns", "a"); !apierrors.IsNotFound(err) {
			t.Fatalf("err = %v", err)
		}
	}
	if g.calls.Load() != 3 {
		t.Fatalf("errors were cached: %d reads", g.calls.Load())
	}
	g.fail.Store(false)
	if _, err := c.Get(t.Context(), "ns", "a"); err != nil {
		t.Fatalf("fixed class not picked up: %v", err)
	}
	_, err := Resolve(t.Context(), c, "ns", "a")
	if err != nil {
		t.Fatal(err)
	}
	if errors.Is(err, ErrNotFound) {
		t.Fatal("unexpected")
	}
}

func TestCachedGetterBounded(t *testing.T) {
	g := &countingGetter{}
	c := &CachedGetter{Getter: g, TTL: time.Hour, MaxEntries: 10}
	for i := 0; i < 100; i++ {
		if _, err := c.Get(t.Context(), "ns", string(rune('a'+i%26))+string(rune('a'+i/26))); err != nil {
			t.Fatal(err)
		}
	}
	c.mu.Lock()
	n := len(c.items)
	c.mu.Unlock()
	if n > 10 {
		t.Fatalf("cache holds %d entries, bound is 10", n)
	}
}
