// Package cache shares Vault reads between mounts of the same identity for
// a short time: the pods of one workload (same service account, role and
// SecretProviderClass) and their rotation republishes then cost one read
// per path instead of one per pod. Only unleased GET answers are shared;
// leased values belong to one pod (see package lease).
package cache

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sync/singleflight"
	"k8s.io/utils/clock"

	"github.com/sscsi/secrets-store/internal/ttlcache"
)

// Key identifies one read: the same request with the same identity.
// Mounts share an entry only when both match, so a pod never sees a value
// its own identity has not read.
type Key struct {
	Identity string
	Request  string
}

// Config configures a Cache.
type Config struct {
	Clock clock.PassiveClock
	// TTL is how long a value of a moving reference (latest KV version,
	// any other read) is shared; 0 disables sharing.
	TTL time.Duration
	// PinnedTTL is the same for a pinned KV version (?version=N).
	PinnedTTL time.Duration
	// MaxEntries bounds the cache (default 10000).
	MaxEntries int
	// SharedCallTimeout bounds a read shared by several mounts.
	SharedCallTimeout time.Duration
}

// Cache is a TTL cache with single-flight loads. Lifetime: TTL (PinnedTTL
// for pinned reads); size: at most MaxEntries, the entry closest to expiry
// evicted first (ttlcache.TTL). Values stay in this process's memory only.
type Cache struct {
	cfg     Config
	flights singleflight.Group
	entries *ttlcache.TTL[Key, any]
}

// New returns a Cache.
func New(cfg Config) *Cache {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 10000
	}
	if cfg.PinnedTTL < cfg.TTL {
		cfg.PinnedTTL = cfg.TTL
	}
	if cfg.SharedCallTimeout <= 0 {
		cfg.SharedCallTimeout = 30 * time.Second
	}
	return &Cache{cfg: cfg, entries: ttlcache.NewTTL[Key, any](cfg.Clock, cfg.MaxEntries)}
}

// Load returns the cached value for k or calls load once for all
// concurrent callers of k. load returns the value and whether it may be
// shared (a leased answer may not). hit reports a cache hit.
func (c *Cache) Load(ctx context.Context, k Key, pinned bool, load func(context.Context) (any, bool, error)) (v any, hit bool, err error) {
	if c.cfg.TTL <= 0 {
		v, _, err := load(ctx)
		return v, false, err
	}
	if v, ok := c.entries.Get(k); ok {
		return v, true, nil
	}
	ch := c.flights.DoChan(fmt.Sprintf("%q", k), func() (any, error) {
		// A flight that ended between this caller's miss and its joining
		// may have stored the value already: do not read it again.
		if v, ok := c.entries.Get(k); ok {
			return v, nil
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.SharedCallTimeout)
		defer cancel()
		v, share, err := load(sctx)
		if err != nil {
			return nil, err
		}
		if share {
			c.put(k, v, pinned)
		}
		return v, nil
	})
	select {
	case r := <-ch:
		return r.Val, false, r.Err
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
}

func (c *Cache) put(k Key, v any, pinned bool) {
	ttl := c.cfg.TTL
	if pinned {
		ttl = c.cfg.PinnedTTL
	}
	c.entries.Put(k, v, ttl)
}

// ForgetIdentity drops every value read with identity, e.g. after its
// token was rejected.
func (c *Cache) ForgetIdentity(identity string) {
	c.entries.DeleteFunc(func(k Key) bool { return k.Identity == identity })
}
