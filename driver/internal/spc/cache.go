package spc

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
)

// CachedGetter reuses a SecretProviderClass read for a short time and shares
// one read between concurrent mounts of the same class, so that a rollout of
// many pods costs one API read per class per TTL instead of one per pod. It
// is not a cluster-wide cache: only classes that mounts asked for are held,
// and only for TTL. Errors are never cached (a user who fixes a class is
// picked up on kubelet's next retry).
type CachedGetter struct {
	Getter Getter
	// TTL is how long a read is reused (default 1s).
	TTL time.Duration
	// MaxEntries bounds the cache (default 1024).
	MaxEntries int

	group singleflight.Group
	mu    sync.Mutex // guards items
	items map[string]cached
}

type cached struct {
	obj *ssv1.SecretProviderClass
	at  time.Time
}

// Get implements Getter. The returned object is shared: callers must not
// modify it.
func (c *CachedGetter) Get(ctx context.Context, namespace, name string) (*ssv1.SecretProviderClass, error) {
	key := namespace + "/" + name
	ttl := c.TTL
	if ttl <= 0 {
		ttl = time.Second
	}
	now := time.Now()
	c.mu.Lock()
	if it, ok := c.items[key]; ok && now.Sub(it.at) < ttl {
		c.mu.Unlock()
		return it.obj, nil
	}
	c.mu.Unlock()
	v, err, _ := c.group.Do(key, func() (any, error) {
		// Detach from one caller's cancellation: others share this read.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		obj, err := c.Getter.Get(rctx, namespace, name)
		if err != nil {
			return nil, err
		}
		c.store(key, obj, time.Now(), ttl)
		return obj, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*ssv1.SecretProviderClass), nil
}

func (c *CachedGetter) store(key string, obj *ssv1.SecretProviderClass, now time.Time, ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.items == nil {
		c.items = map[string]cached{}
	}
	max := c.MaxEntries
	if max <= 0 {
		max = 1024
	}
	if len(c.items) >= max {
		for k, it := range c.items {
			if now.Sub(it.at) >= ttl {
				delete(c.items, k)
			}
		}
		if len(c.items) >= max {
			c.items = map[string]cached{}
		}
	}
	c.items[key] = cached{obj: obj, at: now}
}
