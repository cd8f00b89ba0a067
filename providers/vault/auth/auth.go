// Package auth establishes a mount's Vault identity and keeps one Vault
// token per identity: the pod's service account token (from the
// CSIDriver's tokenRequests) logs in through the kubernetes or jwt auth
// method, and the Vault token is reused by every mount of the same
// identity until it nears expiry (renewed when renewable, else replaced
// by a new login). A token rejected with 403 is replaced by exactly one
// new login however many mounts saw the rejection. Tokens are never
// shared between identities.
package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"k8s.io/utils/clock"

	"github.com/sscsi/secrets-store/providers/plugin"
)

// Identity is everything that decides which Vault token a mount may use.
// Two mounts share a token only when all fields are equal.
type Identity struct {
	// Namespace and ServiceAccount are the pod's, as kubelet attests them
	// in the mount attributes (and the token's subject confirms).
	Namespace      string
	ServiceAccount string
	// Role is the Vault role, AuthMount the auth method's mount path.
	Role      string
	AuthMount string
	// VaultNamespace and Address say which Vault.
	VaultNamespace string
	Address        string
}

// Key is a stable string form of the identity for caches and logs.
func (id Identity) Key() string {
	return strings.Join([]string{id.Address, id.VaultNamespace, id.AuthMount, id.Role, id.Namespace, id.ServiceAccount}, "\x00")
}

// String names the identity in messages (no secret in it).
func (id Identity) String() string {
	return fmt.Sprintf("service account %s/%s as Vault role %s (auth/%s)", id.Namespace, id.ServiceAccount, id.Role, id.AuthMount)
}

// ForMount establishes the identity of a mount and returns it with the
// service account token to log in with. It fails closed: without the
// pod's namespace and service account, or with a token for another
// subject, an expired token or no token for audience, there is no
// identity.
func ForMount(req *plugin.Request, audience string, now time.Time) (Identity, string, error) {
	if req.Pod.Namespace == "" || req.Pod.ServiceAccount == "" {
		return Identity{}, "", fmt.Errorf("%w: the mount has no pod namespace or service account name; set podInfoOnMount: true on the CSIDriver", plugin.ErrUnauthenticated)
	}
	tok, err := req.Token(audience)
	if err != nil {
		return Identity{}, "", err
	}
	c, err := parseClaims(tok.Token)
	if err != nil {
		return Identity{}, "", fmt.Errorf("%w: service account token for audience %q: %v", plugin.ErrUnauthenticated, audience, err)
	}
	want := "system:serviceaccount:" + req.Pod.Namespace + ":" + req.Pod.ServiceAccount
	if c.Subject != want {
		return Identity{}, "", fmt.Errorf("%w: the service account token for audience %q is not the pod's (%s/%s)", plugin.ErrUnauthenticated, audience, req.Pod.Namespace, req.Pod.ServiceAccount)
	}
	if c.Expiry != 0 && !now.Before(time.Unix(c.Expiry, 0)) {
		return Identity{}, "", fmt.Errorf("%w: the service account token of %s/%s expired at %s", plugin.ErrUnauthenticated, req.Pod.Namespace, req.Pod.ServiceAccount, time.Unix(c.Expiry, 0).UTC().Format(time.RFC3339))
	}
	return Identity{Namespace: req.Pod.Namespace, ServiceAccount: req.Pod.ServiceAccount}, tok.Token, nil
}

type claims struct {
	Subject string `json:"sub"`
	Expiry  int64  `json:"exp"`
}

// parseClaims reads the JWT payload without verifying it: the token came
// from kubelet through the driver, and Vault verifies it (TokenReview or
// JWKS) before it issues anything for it. The subject is only compared
// with the pod's kubelet-attested service account.
func parseClaims(token string) (claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || len(token) > 64<<10 {
		return claims{}, errors.New("not a JWT")
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return claims{}, errors.New("undecodable payload")
	}
	var c claims
	if err := json.Unmarshal(raw, &c); err != nil || c.Subject == "" {
		return claims{}, errors.New("no sub claim")
	}
	return c, nil
}

// Token is a Vault token of one identity.
type Token struct {
	Value     string
	Renewable bool
	// TTL is the lease duration Vault granted at login or last renewal.
	TTL time.Duration
	// Obtained is when it was granted or last renewed.
	Obtained time.Time
	// LoggedIn is when the login that created it happened.
	LoggedIn time.Time
}

// expires returns when the token expires (zero TTL: never).
func (t Token) expires() time.Time {
	if t.TTL <= 0 {
		return time.Time{}
	}
	return t.Obtained.Add(t.TTL)
}

// Vault is what the cache needs from a Vault client.
type Vault interface {
	Login(ctx context.Context, jwt string) (Token, error)
	RenewSelf(ctx context.Context, token string, increment time.Duration) (Token, error)
}

// Config configures a Cache.
type Config struct {
	Clock clock.PassiveClock
	// RefreshFraction: a token is refreshed (renewed or replaced) once this
	// fraction of its TTL has passed (default 0.67).
	RefreshFraction float64
	// MaxEntries bounds the identities kept (default 10000).
	MaxEntries int
	// FreshFor: a 403 with a token younger than this is taken as a real
	// denial, not a stale token (default 5s), so that a denied path does
	// not cost a login per mount.
	FreshFor time.Duration
	// SharedCallTimeout bounds a login or renewal shared by mounts.
	SharedCallTimeout time.Duration
	// Disabled turns reuse off: every mount logs in.
	Disabled bool
}

// Cache holds one Vault token per identity. Lifetime: until
// RefreshFraction of the token's TTL has passed (then renewed or
// replaced) or until it is rejected; size: one entry per identity that
// mounted within its token's TTL, at most MaxEntries (past it, entries
// closest to expiry are dropped). Tokens stay in this process's memory.
type Cache struct {
	cfg     Config
	flights singleflight.Group

	mu      sync.Mutex // guards entries
	entries map[string]Token
}

// New returns a Cache.
func New(cfg Config) *Cache {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.RefreshFraction <= 0 || cfg.RefreshFraction >= 1 {
		cfg.RefreshFraction = 0.67
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 10000
	}
	if cfg.FreshFor <= 0 {
		cfg.FreshFor = 5 * time.Second
	}
	if cfg.SharedCallTimeout <= 0 {
		cfg.SharedCallTimeout = 30 * time.Second
	}
	return &Cache{cfg: cfg, entries: map[string]Token{}}
}

// Get returns a usable token for id: the cached one while fresh, a
// renewed one when it is renewable and due, else a new login with jwt.
// Concurrent calls for one identity share one login or renewal.
func (c *Cache) Get(ctx context.Context, id Identity, jwt string, v Vault) (Token, error) {
	if c.cfg.Disabled {
		return v.Login(ctx, jwt)
	}
	key := id.Key()
	now := c.cfg.Clock.Now()
	c.mu.Lock()
	t, ok := c.entries[key]
	c.mu.Unlock()
	if ok && !c.due(t, now) {
		return t, nil
	}
	return c.shared(ctx, "refresh\x00"+key, func(ctx context.Context) (Token, error) {
		// Another caller may have refreshed it while this one waited.
		c.mu.Lock()
		cur, ok := c.entries[key]
		c.mu.Unlock()
		now := c.cfg.Clock.Now()
		if ok && !c.due(cur, now) {
			return cur, nil
		}
		if ok && cur.Renewable && now.Before(cur.expires()) {
			nt, err := v.RenewSelf(ctx, cur.Value, cur.TTL)
			// A renewal that gives less than asked has reached the
			// token's max TTL: log in again instead.
			if err == nil && nt.TTL >= cur.TTL {
				nt.LoggedIn = cur.LoggedIn
				c.store(key, nt)
				return nt, nil
			}
		}
		nt, err := v.Login(ctx, jwt)
		if err != nil {
			c.drop(key, "")
			return Token{}, err
		}
		c.store(key, nt)
		return nt, nil
	})
}

// Relogin replaces the token that Vault rejected (403) with a new login,
// once: callers that saw the same rejected token share one login, and a
// caller whose rejected token was already replaced gets the replacement.
// ok is false when the rejected token was fresh: the denial is real and
// logging in again would not change it.
func (c *Cache) Relogin(ctx context.Context, id Identity, rejected Token, jwt string, v Vault) (Token, bool, error) {
	if c.cfg.Clock.Now().Sub(rejected.LoggedIn) < c.cfg.FreshFor {
		return Token{}, false, nil
	}
	if c.cfg.Disabled {
		t, err := v.Login(ctx, jwt)
		return t, err == nil, err
	}
	key := id.Key()
	t, err := c.shared(ctx, "relogin\x00"+key+"\x00"+rejected.Value, func(ctx context.Context) (Token, error) {
		c.mu.Lock()
		cur, ok := c.entries[key]
		c.mu.Unlock()
		if ok && cur.Value != rejected.Value {
			return cur, nil
		}
		nt, err := v.Login(ctx, jwt)
		if err != nil {
			c.drop(key, rejected.Value)
			return Token{}, err
		}
		c.store(key, nt)
		return nt, nil
	})
	return t, err == nil, err
}

func (c *Cache) shared(ctx context.Context, key string, fn func(context.Context) (Token, error)) (Token, error) {
	ch := c.flights.DoChan(key, func() (any, error) {
		// Shared by every mount of the identity waiting now: it must not
		// fail because the first of them gave up.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.SharedCallTimeout)
		defer cancel()
		return fn(sctx)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return Token{}, r.Err
		}
		return r.Val.(Token), nil
	case <-ctx.Done():
		return Token{}, fmt.Errorf("waiting for a Vault login: %w", ctx.Err())
	}
}

func (c *Cache) due(t Token, now time.Time) bool {
	if t.TTL <= 0 {
		return false
	}
	return !now.Before(t.Obtained.Add(time.Duration(float64(t.TTL) * c.cfg.RefreshFraction)))
}

func (c *Cache) store(key string, t Token) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; !ok && len(c.entries) >= c.cfg.MaxEntries {
		now := c.cfg.Clock.Now()
		var victim string
		var first time.Time
		for k, e := range c.entries {
			exp := e.expires()
			if !exp.IsZero() && !now.Before(exp) {
				delete(c.entries, k)
				continue
			}
			if victim == "" || (!exp.IsZero() && exp.Before(first)) {
				victim, first = k, exp
			}
		}
		if len(c.entries) >= c.cfg.MaxEntries {
			delete(c.entries, victim)
		}
	}
	c.entries[key] = t
}

// drop forgets the identity's token (only if it is still value, when
// value is set).
func (c *Cache) drop(key, value string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.entries[key]; ok && (value == "" || cur.Value == value) {
		delete(c.entries, key)
	}
}

// Len is the number of identities with a token.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
