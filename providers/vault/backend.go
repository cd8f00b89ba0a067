// Package vault is the HashiCorp Vault provider backend: it mounts Vault
// secrets with the pod's own identity (kubernetes or jwt auth with the
// pod's service account token), accepts vault-csi-provider's
// SecretProviderClass parameters, keeps dynamic secrets per pod (or per
// SecretSync) across republishes (renewing their leases), and shares
// plain reads between mounts of the same identity for a short time.
//
// The package wires its parts: params (parameters), client (Vault HTTP
// API), auth (identity and Vault tokens), lease (per-pod and
// per-SecretSync dynamic secrets), cache (shared reads) and render
// (files and versions).
package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/sscsi/secrets-store/internal/ttlcache"
	"github.com/sscsi/secrets-store/providers/plugin"
	"github.com/sscsi/secrets-store/providers/vault/auth"
	"github.com/sscsi/secrets-store/providers/vault/cache"
	"github.com/sscsi/secrets-store/providers/vault/client"
	"github.com/sscsi/secrets-store/providers/vault/lease"
	"github.com/sscsi/secrets-store/providers/vault/params"
	"github.com/sscsi/secrets-store/providers/vault/render"
)

// Defaults of BackendConfig.
const (
	DefaultCacheTTL        = 30 * time.Second
	DefaultPinnedCacheTTL  = 15 * time.Minute
	DefaultRenewFraction   = 0.5
	DefaultReissueFraction = 0.8
	// maxClients bounds the Vault clients kept (one per address, namespace
	// and TLS settings a SecretProviderClass names).
	maxClients = 64
	// maxConcurrentCalls bounds the Vault calls one mount makes at once.
	maxConcurrentCalls = 4
	// leasedMemory is how long a request is remembered as answering with
	// a lease (so that its next reads skip the shared cache).
	leasedMemory = 24 * time.Hour
)

// BackendConfig configures a Backend.
type BackendConfig struct {
	// Defaults are the provider-wide settings a SecretProviderClass
	// overrides (environment < flags < SecretProviderClass).
	Defaults params.Defaults
	// Clock is the time source (default: the real clock).
	Clock clock.Clock
	// CacheTTL is how long a plain read is shared between mounts of the
	// same identity (0: no sharing).
	CacheTTL time.Duration
	// PinnedCacheTTL is the same for a pinned KV version.
	PinnedCacheTTL time.Duration
	// TokenCacheDisabled makes every mount log in (no Vault token reuse).
	TokenCacheDisabled bool
	// TokenCacheSize bounds the identities whose tokens are kept.
	TokenCacheSize int
	// RenewFraction and ReissueFraction tune dynamic secrets (see
	// lease.Config).
	RenewFraction   float64
	ReissueFraction float64
	// VersionKey keys the content hashes used as object versions; empty
	// means a random key per process.
	VersionKey []byte
	// Transport overrides the HTTP transport for every Vault client (tests).
	Transport http.RoundTripper
	// Metrics records Vault calls and mounts (default: unexported).
	Metrics *Metrics
}

// Backend implements plugin.Backend for Vault. Safe for concurrent use.
type Backend struct {
	cfg      BackendConfig
	clock    clock.Clock
	metrics  *Metrics
	tokens   *auth.Cache
	leases   *lease.Keeper
	reads    *cache.Cache
	versions *render.Versioner

	// leased remembers requests (per identity) whose answers carry a
	// lease for leasedMemory; at most cfg.TokenCacheSize*64 keys.
	leased *ttlcache.Set[cache.Key]
	// engines remembers, per identity, which secrets engine serves a
	// mount (learnt only for mounts without an owner; see engines.go).
	engines *ttlcache.TTL[engineKey, string]
	lookups singleflight.Group // engine lookups in flight, per identity and first path segment

	mu      sync.Mutex // guards clients
	clients map[params.Connection]*client.Client
}

var _ plugin.Backend = (*Backend)(nil)

// NewBackend validates cfg and returns a Backend.
func NewBackend(cfg BackendConfig) (*Backend, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.CacheTTL < 0 {
		return nil, errors.New("vault: CacheTTL is negative")
	}
	if cfg.PinnedCacheTTL == 0 {
		cfg.PinnedCacheTTL = DefaultPinnedCacheTTL
	}
	if cfg.RenewFraction == 0 {
		cfg.RenewFraction = DefaultRenewFraction
	}
	if cfg.ReissueFraction == 0 {
		cfg.ReissueFraction = DefaultReissueFraction
	}
	if cfg.RenewFraction <= 0 || cfg.RenewFraction >= 1 {
		return nil, errors.New("vault: RenewFraction must be between 0 and 1")
	}
	if cfg.ReissueFraction <= 0 || cfg.ReissueFraction > 1 {
		return nil, errors.New("vault: ReissueFraction must be in (0, 1]")
	}
	if cfg.TokenCacheSize <= 0 {
		cfg.TokenCacheSize = 10000
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	v, err := render.NewVersioner(cfg.VersionKey)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	return &Backend{
		cfg:      cfg,
		clock:    cfg.Clock,
		metrics:  cfg.Metrics,
		tokens:   auth.New(auth.Config{Clock: cfg.Clock, MaxEntries: cfg.TokenCacheSize, Disabled: cfg.TokenCacheDisabled}),
		leases:   lease.New(lease.Config{Clock: cfg.Clock, RenewFraction: cfg.RenewFraction, ReissueFraction: cfg.ReissueFraction}),
		reads:    cache.New(cache.Config{Clock: cfg.Clock, TTL: cfg.CacheTTL, PinnedTTL: cfg.PinnedCacheTTL}),
		versions: v,
		clients:  map[params.Connection]*client.Client{},
		leased:   ttlcache.NewSet[cache.Key](cfg.Clock, leasedMemory, cfg.TokenCacheSize*64),
		engines:  ttlcache.NewTTL[engineKey, string](cfg.Clock, maxEngineEntries),
	}, nil
}

func (b *Backend) clientFor(conn params.Connection) (*client.Client, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c, ok := b.clients[conn]; ok {
		return c, nil
	}
	c, err := client.New(client.Config{Connection: conn, Transport: b.cfg.Transport, Observe: b.metrics.vaultCall})
	if err != nil {
		return nil, err
	}
	if len(b.clients) >= maxClients {
		// Addresses come from SecretProviderClasses; never let them grow
		// this map without bound.
		b.clients = map[params.Connection]*client.Client{}
	}
	b.clients[conn] = c
	return c, nil
}

// Mount implements plugin.Backend.
func (b *Backend) Mount(ctx context.Context, req *plugin.Request) (*plugin.Response, error) {
	start := b.clock.Now()
	resp, err := b.mount(ctx, req)
	code := "OK"
	if err != nil {
		_, code = plugin.Classify(err)
	}
	b.metrics.observeMount(code, b.clock.Since(start))
	return resp, err
}

// mountState is the per-request state of one mount.
type mountState struct {
	b     *Backend
	req   *plugin.Request
	id    auth.Identity
	jwt   string
	vault *client.Client
	login *loginVault
	// owner keeps leased values apart (lease.Key.Owner; "" = none).
	owner string

	mu    sync.Mutex // guards token and stats
	token auth.Token
	stats map[string]int
}

func (b *Backend) mount(ctx context.Context, req *plugin.Request) (*plugin.Response, error) {
	p, err := params.Parse(req.Attributes, b.cfg.Defaults)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", plugin.ErrInvalidParameters, err)
	}
	id, jwt, err := auth.ForMount(req, p.Audience, b.clock.Now())
	if err != nil {
		return nil, err
	}
	owner, err := ownerOf(req)
	if err != nil {
		return nil, err
	}
	id.Role, id.AuthMount, id.VaultNamespace, id.Address = p.Role, p.AuthMount, p.Connection.Namespace, p.Connection.Address
	vc, err := b.clientFor(p.Connection)
	if err != nil {
		return nil, err
	}
	if owner == "" {
		// A write's answer is kept per owner (a PKI issue): refuse it
		// before anything is issued. A GET is refused before it is sent
		// when the engine serving its path issues leased credentials
		// (database/creds; not database/static-creds or pki/cert/ca):
		// see fetch and engines.go.
		for _, o := range p.Objects {
			if o.Request.Write() {
				return nil, fmt.Errorf("object %q (method): %w", o.Name, lease.ErrNoOwner)
			}
		}
	}
	m := &mountState{b: b, req: req, id: id, jwt: jwt, vault: vc, owner: owner, login: &loginVault{c: vc, mount: p.AuthMount, role: p.Role, clock: b.clock}, stats: map[string]int{}}
	tok, err := b.tokens.Get(ctx, id, jwt, m.login)
	if err != nil {
		return nil, fmt.Errorf("log in to Vault as %s: %w", id, err)
	}
	m.token = tok

	// One call per distinct request: objects that name the same path,
	// method and arguments share its answer.
	var reqs []params.Request
	var users [][]string // objectNames per request, for errors
	byKey := map[string]int{}
	for _, o := range p.Objects {
		i, ok := byKey[o.Request.Key()]
		if !ok {
			i = len(reqs)
			byKey[o.Request.Key()] = i
			reqs = append(reqs, o.Request)
			users = append(users, nil)
		}
		users[i] = append(users[i], o.Name)
	}
	answers := make([]*client.Secret, len(reqs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(maxConcurrentCalls)
	for i, r := range reqs {
		g.Go(func() error {
			s, err := m.fetch(gctx, r)
			if err != nil {
				return fmt.Errorf("%s (secretPath): %w", objectList(users[i]), err)
			}
			answers[i] = s
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	resp := &plugin.Response{}
	for _, o := range p.Objects {
		files, versions, err := b.versions.Files(o, answers[byKey[o.Request.Key()]], req.Permission)
		if err != nil {
			return nil, err
		}
		resp.Files = append(resp.Files, files...)
		resp.Versions = append(resp.Versions, versions...)
	}
	b.leases.Sweep()
	klog.V(3).InfoS("vault mount fetched", "pod", klog.KRef(req.Pod.Namespace, req.Pod.Name), "secretSync", req.SecretSync.Name, "role", p.Role, "objects", len(p.Objects), "requests", len(reqs), "files", len(resp.Files), "rotation", len(req.CurrentVersions) > 0, "calls", m.statsString())
	return resp, nil
}

// maxUIDLen bounds the SecretSync UID an attribute may carry (Kubernetes
// UIDs are 36 characters).
const maxUIDLen = 128

// ownerOf returns who the mount's leased values are kept for: the pod
// (kubelet's pod UID) when there is one, else the SecretSync our
// controller names, else "" (nothing leased can be kept: see
// lease.ErrNoOwner). A pod's UID wins over SecretSync attributes, which a
// SecretProviderClass's parameters could carry into a pod's mount.
func ownerOf(req *plugin.Request) (string, error) {
	if req.Pod.UID != "" {
		return lease.OwnerPod(req.Pod.UID), nil
	}
	ss := req.SecretSync
	if ss.Name == "" && ss.UID == "" {
		return "", nil
	}
	if errs := validation.IsDNS1123Subdomain(ss.Name); len(errs) > 0 {
		return "", fmt.Errorf("%w: attribute %s: not a SecretSync name", plugin.ErrInvalidParameters, plugin.AttrSecretSyncName)
	}
	if ss.UID == "" || len(ss.UID) > maxUIDLen || strings.ContainsFunc(ss.UID, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return "", fmt.Errorf("%w: attribute %s: not a UID", plugin.ErrInvalidParameters, plugin.AttrSecretSyncUID)
	}
	return lease.OwnerSecretSync(req.Pod.Namespace, ss.Name, ss.UID), nil
}

func (m *mountState) count(what string) {
	m.mu.Lock()
	m.stats[what]++
	m.mu.Unlock()
}

func (m *mountState) statsString() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, _ := json.Marshal(m.stats)
	return string(b)
}

// fetch returns the answer for one request: from the owner's dynamic
// secrets when it is leased or a write, from the shared cache when it is
// a plain read. Without an owner, a request remembered as leased, or one
// that the engine serving its path answers with a leased credential
// (refuseOwnerlessIssue), is refused before it is sent; should a leased
// answer still come (an engine not known to lease, or Vault not telling
// the engine), it is refused after it, that one value expires in Vault,
// and the request is remembered as leased.
func (m *mountState) fetch(ctx context.Context, r params.Request) (*client.Secret, error) {
	b := m.b
	ck := cache.Key{Identity: m.id.Key(), Request: r.Key()}
	if r.Write() || b.leased.Has(ck) {
		return m.dynamic(ctx, r, nil)
	}
	if m.owner == "" {
		if err := m.refuseOwnerlessIssue(ctx, r); err != nil {
			return nil, err
		}
	}
	mine := false
	v, hit, err := b.reads.Load(ctx, ck, r.Pinned(), func(ctx context.Context) (any, bool, error) {
		mine = true
		s, err := m.call(ctx, r)
		if err != nil {
			return nil, false, err
		}
		return s, s.LeaseID == "", nil
	})
	if err != nil {
		return nil, err
	}
	s := v.(*client.Secret)
	if hit {
		m.count("cacheHit")
	}
	if s.LeaseID == "" {
		return s, nil
	}
	// A leased answer belongs to the owner whose call produced it;
	// another owner that waited on the same call gets its own.
	b.leased.Add(ck)
	if !mine {
		return m.dynamic(ctx, r, nil)
	}
	return m.dynamic(ctx, r, s)
}

// dynamic serves a leased or written value kept for this mount's owner
// (pod or SecretSync).
func (m *mountState) dynamic(ctx context.Context, r params.Request, prefetched *client.Secret) (*client.Secret, error) {
	src := &leaseSource{m: m, r: r, prefetched: prefetched}
	v, outcome, err := m.b.leases.Get(ctx, lease.Key{Owner: m.owner, Identity: m.id.Key(), Request: r.Key()}, src)
	if err != nil {
		return nil, err
	}
	m.count(string(outcome))
	m.b.metrics.leaseOutcome(string(outcome))
	if outcome == lease.OutcomeExpired {
		// Not the value, the lease id or the request (its secretArgs may
		// be secret): who, and what to change.
		klog.InfoS("a kept leased value had expired before it was asked for again, so a new one was issued: nothing renewed it in time; the interval between this owner's mounts (the driver's rotation poll for a pod, the SecretSync controller's poll interval for a SecretSync) must be below half the lease's TTL",
			"pod", klog.KRef(m.req.Pod.Namespace, m.req.Pod.Name), "secretSync", m.req.SecretSync.Name, "identity", m.id.String())
	}
	return v.(*client.Secret), nil
}

// call sends one request with the identity's token. A 403 answer gets one
// new login (shared with every mount that saw the same token rejected)
// and one retry.
func (m *mountState) call(ctx context.Context, r params.Request) (*client.Secret, error) {
	var body []byte
	if r.Body != "" {
		body = []byte(r.Body)
	}
	creq := client.Request{Op: "read " + r.Path, Method: r.Method, Path: r.Path, Query: r.Query, Body: body, UserData: true}
	if r.Write() {
		creq.Op = "write " + r.Path
	}
	m.mu.Lock()
	tok := m.token
	m.mu.Unlock()
	creq.Token = tok.Value
	m.count("call")
	s, err := m.vault.Do(ctx, creq)
	if err != nil && client.IsStatus(err, http.StatusForbidden) {
		nt, ok, lerr := m.b.tokens.Relogin(ctx, m.id, tok, m.jwt, m.login)
		if lerr != nil {
			return nil, fmt.Errorf("log in to Vault again as %s after a 403: %w", m.id, lerr)
		}
		if ok {
			m.mu.Lock()
			m.token = nt
			m.mu.Unlock()
			creq.Token = nt.Value
			m.count("relogin")
			s, err = m.vault.Do(ctx, creq)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.id, err)
	}
	return s, nil
}

func (m *mountState) currentToken() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.token.Value
}

// expiration is the expiry an unleased write answer carries (a PKI
// certificate issued without generate_lease). Reads never use it: a KV
// secret may have a key named expiration.
func expiration(s *client.Secret) (time.Time, bool) {
	n, ok := s.Data["expiration"].(json.Number)
	if !ok {
		return time.Time{}, false
	}
	i, err := n.Int64()
	if err != nil || i <= 0 {
		return time.Time{}, false
	}
	return time.Unix(i, 0), true
}

// leaseSource issues and renews one owner's dynamic secret.
type leaseSource struct {
	m          *mountState
	r          params.Request
	prefetched *client.Secret
}

func (s *leaseSource) Issue(ctx context.Context) (lease.Issued, error) {
	sec := s.prefetched
	s.prefetched = nil
	if sec == nil {
		var err error
		if sec, err = s.m.call(ctx, s.r); err != nil {
			return lease.Issued{}, err
		}
	}
	is := lease.Issued{Value: sec, LeaseID: sec.LeaseID, TTL: sec.LeaseTTL(), Renewable: sec.Renewable}
	if sec.LeaseID == "" {
		is.Renewable = false
		is.TTL = 0
		if exp, ok := expiration(sec); ok && s.r.Write() {
			is.TTL = exp.Sub(s.m.b.clock.Now())
		}
	}
	return is, nil
}

func (s *leaseSource) Renew(ctx context.Context, leaseID string, increment time.Duration) (lease.Renewal, error) {
	sec, err := s.m.vault.RenewLease(ctx, s.m.currentToken(), leaseID, increment)
	s.m.count("renew")
	if err != nil {
		return lease.Renewal{}, err
	}
	return lease.Renewal{TTL: sec.LeaseTTL()}, nil
}

// loginVault adapts a client to auth.Vault for one auth mount and role.
type loginVault struct {
	c     *client.Client
	mount string
	role  string
	clock clock.PassiveClock
}

func (l *loginVault) Login(ctx context.Context, jwt string) (auth.Token, error) {
	a, err := l.c.Login(ctx, l.mount, l.role, jwt)
	if err != nil {
		return auth.Token{}, err
	}
	now := l.clock.Now()
	return auth.Token{Value: a.ClientToken, Renewable: a.Renewable, TTL: a.TTL(), Obtained: now, LoggedIn: now}, nil
}

func (l *loginVault) RenewSelf(ctx context.Context, token string, increment time.Duration) (auth.Token, error) {
	a, err := l.c.RenewSelf(ctx, token, increment)
	if err != nil {
		return auth.Token{}, err
	}
	if a.ClientToken != token {
		return auth.Token{}, errors.New("renewal answered with another token")
	}
	return auth.Token{Value: token, Renewable: a.Renewable, TTL: a.TTL(), Obtained: l.clock.Now()}, nil
}

// objectList names the objects of a failed request in an error.
func objectList(names []string) string {
	if len(names) == 1 {
		return fmt.Sprintf("object %q", names[0])
	}
	if len(names) > 3 {
		return fmt.Sprintf("objects %q and %d more", names[:3], len(names)-3)
	}
	return fmt.Sprintf("objects %q", names)
}

// sanitize keeps label values bounded.
func sanitize(s string) string {
	if i := strings.IndexByte(s, ' '); i > 0 {
		return s[:i]
	}
	return s
}
