// Package ttlcache holds the providers' short-lived, bounded, in-memory
// caches: values shared between mounts of one identity for a few seconds
// (provider-aws's fetched values, provider-vault's reads), and sets of keys
// remembered for a while (identities denied a batch API, requests that
// answer with a lease). Nothing here touches a disk.
package ttlcache

import (
	"sync"
	"time"

	"k8s.io/utils/clock"
)

type entry[V any] struct {
	val     V
	expires time.Time
}

// TTL keeps values for a short time so that the many pods of one workload
// (same service account, same SecretProviderClass) and their rotation
// re-mounts share one backend read. Lifetime: each entry lives the ttl
// given to Put. Size: at most MaxEntries; the entry closest to expiry is
// evicted first. A TTL is safe for concurrent use.
type TTL[K comparable, V any] struct {
	clock      clock.PassiveClock
	maxEntries int

	mu      sync.Mutex // guards entries
	entries map[K]entry[V]
}

// NewTTL returns an empty cache of at most maxEntries entries.
func NewTTL[K comparable, V any](c clock.PassiveClock, maxEntries int) *TTL[K, V] {
	return &TTL[K, V]{clock: c, maxEntries: maxEntries, entries: map[K]entry[V]{}}
}

// Get returns the value of k unless it has expired.
func (c *TTL[K, V]) Get(k K) (V, bool) {
	var zero V
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return zero, false
	}
	if !c.clock.Now().Before(e.expires) {
		delete(c.entries, k)
		return zero, false
	}
	return e.val, true
}

// Put stores v under k for ttl; a ttl <= 0 stores nothing.
func (c *TTL[K, V]) Put(k K, v V, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	now := c.clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.maxEntries {
		c.evictLocked(now)
	}
	c.entries[k] = entry[V]{val: v, expires: now.Add(ttl)}
}

// evictLocked drops expired entries, then the one closest to expiry.
func (c *TTL[K, V]) evictLocked(now time.Time) {
	var victim K
	var first time.Time
	found := false
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, k)
			continue
		}
		if !found || e.expires.Before(first) {
			victim, first, found = k, e.expires, true
		}
	}
	if len(c.entries) >= c.maxEntries && found {
		delete(c.entries, victim)
	}
}

// DeleteFunc drops every entry whose key matches, e.g. every value read
// with credentials that were just rejected.
func (c *TTL[K, V]) DeleteFunc(match func(K) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.entries {
		if match(k) {
			delete(c.entries, k)
		}
	}
}

// Set remembers keys for a while, e.g. identities whose policy does not
// allow BatchGetSecretValue, or requests whose answer carried a lease.
// Lifetime: ttl per key; size: at most maxEntries keys (past it, the set
// starts over). Safe for concurrent use.
type Set[K comparable] struct {
	clock      clock.PassiveClock
	ttl        time.Duration
	maxEntries int

	mu   sync.Mutex // guards keys
	keys map[K]time.Time
}

// NewSet returns an empty set whose keys live ttl.
func NewSet[K comparable](c clock.PassiveClock, ttl time.Duration, maxEntries int) *Set[K] {
	return &Set[K]{clock: c, ttl: ttl, maxEntries: maxEntries, keys: map[K]time.Time{}}
}

// Add remembers k for the set's ttl.
func (s *Set[K]) Add(k K) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.keys) >= s.maxEntries {
		s.keys = map[K]time.Time{}
	}
	s.keys[k] = s.clock.Now().Add(s.ttl)
}

// Has reports whether k was added less than ttl ago.
func (s *Set[K]) Has(k K) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.keys[k]
	if ok && !s.clock.Now().Before(exp) {
		delete(s.keys, k)
		return false
	}
	return ok
}
