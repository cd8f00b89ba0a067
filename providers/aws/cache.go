package aws

import (
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// valueKey identifies one fetched value: the same object read with the
// same identity in the same region. Pods share an entry only when all
// three match, so a pod never sees a value its own identity could not
// read.
type valueKey struct {
	identity string
	region   string
	ref      Ref
}

// fetchResult is an object's value and version.
type fetchResult struct {
	value   []byte
	version string
}

type cacheEntry struct {
	res     fetchResult
	expires time.Time
}

// valueCache keeps fetched values for a short time so that the many pods
// of one workload (same service account, same SecretProviderClass) and
// their rotation re-mounts share one backend read. Lifetime: entries for
// a moving reference (latest value, a label or stage) live ttl; entries
// for a pinned version live pinnedTTL. Size: at most maxEntries; the
// entry closest to expiry is evicted first. Values stay in this process's
// memory only, like the fetches they replace.
type valueCache struct {
	clock      clock.PassiveClock
	ttl        time.Duration
	pinnedTTL  time.Duration
	maxEntries int

	mu      sync.Mutex // guards entries
	entries map[valueKey]cacheEntry
}

func newValueCache(c clock.PassiveClock, ttl, pinnedTTL time.Duration, maxEntries int) *valueCache {
	return &valueCache{clock: c, ttl: ttl, pinnedTTL: pinnedTTL, maxEntries: maxEntries, entries: map[valueKey]cacheEntry{}}
}

func (c *valueCache) get(k valueKey) (fetchResult, bool) {
	if c.ttl <= 0 {
		return fetchResult{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return fetchResult{}, false
	}
	if !c.clock.Now().Before(e.expires) {
		delete(c.entries, k)
		return fetchResult{}, false
	}
	return e.res, true
}

func (c *valueCache) put(k valueKey, r fetchResult) {
	if c.ttl <= 0 {
		return
	}
	ttl := c.ttl
	if k.ref.Pinned() && c.pinnedTTL > ttl {
		ttl = c.pinnedTTL
	}
	now := c.clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.maxEntries {
		c.evictLocked(now)
	}
	c.entries[k] = cacheEntry{res: r, expires: now.Add(ttl)}
}

// evictLocked drops expired entries, then the one closest to expiry.
func (c *valueCache) evictLocked(now time.Time) {
	var victim valueKey
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

// forgetIdentity drops every value read with identity, e.g. after its
// credentials were rejected.
func (c *valueCache) forgetIdentity(identity string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.entries {
		if k.identity == identity {
			delete(c.entries, k)
		}
	}
}

// expiringSet remembers keys for a while, e.g. identities whose policy
// does not allow BatchGetSecretValue. Lifetime: ttl per key; size: at
// most maxEntries keys (past it, the set starts over).
type expiringSet struct {
	clock      clock.PassiveClock
	ttl        time.Duration
	maxEntries int

	mu   sync.Mutex // guards keys
	keys map[string]time.Time
}

func (s *expiringSet) add(k string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.keys) >= s.maxEntries {
		s.keys = map[string]time.Time{}
	}
	s.keys[k] = s.clock.Now().Add(s.ttl)
}

func (s *expiringSet) has(k string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.keys[k]
	if ok && !s.clock.Now().Before(exp) {
		delete(s.keys, k)
		return false
	}
	return ok
}
