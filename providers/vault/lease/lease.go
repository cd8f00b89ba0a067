// Package lease keeps the dynamic secrets of each pod (or SecretSync): a
// leased Vault response (a database credential, a PKI certificate) is
// issued once for its owner and served again on every republish (or
// refresh), renewed while kubelet keeps republishing the volume (or the
// SecretSync controller keeps refreshing), and issued anew only when the
// lease cannot be renewed or has lived a configured fraction of its
// maximum lifetime. Nothing here runs in the background: an owner that is
// gone stops asking, so its lease is never renewed again and Vault
// expires it; the entry is dropped from memory once the lease has expired.
package lease

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"k8s.io/utils/clock"

	"github.com/sscsi/secrets-store/providers/plugin"
)

// Key identifies one dynamic secret of one owner.
type Key struct {
	// Owner is who the value is kept for: a pod (by UID) or a SecretSync
	// (by namespace, name and UID); see OwnerPod and OwnerSecretSync. A
	// leased value is never served to another owner, even of the same
	// service account.
	Owner string
	// Identity is the Vault identity key the value was issued to.
	Identity string
	// Request is the Vault request key (method, path, query, body).
	Request string
}

// OwnerPod is the Key.Owner of a pod's values.
func OwnerPod(uid string) string { return "pod " + uid }

// OwnerSecretSync is the Key.Owner of a SecretSync's values: its UID
// makes a SecretSync deleted and created again with the same name a new
// owner.
func OwnerSecretSync(namespace, name, uid string) string {
	return fmt.Sprintf("secretsync %s/%s %s", namespace, name, uid)
}

// ErrNoOwner is returned (wrapping plugin.ErrUnauthenticated) for a key
// without an owner: nothing issued could be kept, so nothing is issued.
var ErrNoOwner = fmt.Errorf("%w: the mount names neither a pod (UID) nor a SecretSync; leased values are kept per pod or per SecretSync (set podInfoOnMount: true on the CSIDriver; SecretSync controllers other than this project's do not send a SecretSync key)", plugin.ErrUnauthenticated)

// Issued is a fresh dynamic secret as the caller obtained it.
type Issued struct {
	// Value is opaque to this package (the decoded Vault response).
	Value any
	// LeaseID is Vault's lease id ("" for an unleased value with an
	// expiry, e.g. a PKI certificate without generate_lease).
	LeaseID string
	// TTL is the lease duration (or the time left until the value's own
	// expiry).
	TTL time.Duration
	// Renewable says whether the lease can be renewed.
	Renewable bool
}

// Renewal is the answer of a lease renewal.
type Renewal struct {
	// TTL is the lease duration Vault granted.
	TTL time.Duration
}

// Source issues and renews values for one key.
type Source interface {
	Issue(ctx context.Context) (Issued, error)
	Renew(ctx context.Context, leaseID string, increment time.Duration) (Renewal, error)
}

// Config configures a Keeper.
type Config struct {
	Clock clock.PassiveClock
	// RenewFraction: a lease is renewed on a republish once this fraction
	// of its current TTL has passed (default 0.5).
	RenewFraction float64
	// ReissueFraction: a value is issued anew on a republish once it has
	// lived this fraction of its maximum lifetime (default 0.8). The
	// maximum is learnt when Vault caps a renewal (or is the TTL of a
	// non-renewable lease).
	ReissueFraction float64
	// MaxEntries bounds the values kept (default 10000). Past it, the
	// entry closest to expiry is dropped (that pod gets a new value).
	MaxEntries int
	// SharedCallTimeout bounds an issue or renewal.
	SharedCallTimeout time.Duration
}

// Keeper holds the dynamic secrets of pods on this node (and of the
// SecretSyncs its controller refreshes). Lifetime of an
// entry: until its lease expires without a renewal (the pod stopped
// republishing), until a renewal fails, or until ReissueFraction of its
// maximum lifetime; size: at most MaxEntries.
type Keeper struct {
	cfg     Config
	flights singleflight.Group

	mu      sync.Mutex // guards entries
	entries map[Key]*entry
}

type entry struct {
	value     any // nil once expired (see Sweep)
	leaseID   string
	renewable bool
	issued    time.Time
	ttl       time.Duration // lease duration at the last issue or renewal
	renewed   time.Time     // when ttl was granted
	maxExpiry time.Time     // zero until known
}

func (e *entry) expires() time.Time { return e.renewed.Add(e.ttl) }

// New returns a Keeper.
func New(cfg Config) *Keeper {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.RenewFraction <= 0 || cfg.RenewFraction >= 1 {
		cfg.RenewFraction = 0.5
	}
	if cfg.ReissueFraction <= 0 || cfg.ReissueFraction > 1 {
		cfg.ReissueFraction = 0.8
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 10000
	}
	if cfg.SharedCallTimeout <= 0 {
		cfg.SharedCallTimeout = 30 * time.Second
	}
	return &Keeper{cfg: cfg, entries: map[Key]*entry{}}
}

// Outcome says what Get did.
type Outcome string

// Outcomes of Get.
const (
	OutcomeKept     Outcome = "kept"
	OutcomeRenewed  Outcome = "renewed"
	OutcomeReissued Outcome = "reissued"
	OutcomeIssued   Outcome = "issued"
	// OutcomeExpired: the owner's kept value had expired before it asked
	// again (nothing renewed it in time: the interval between its mounts
	// or refreshes is too long for the lease's TTL); a new value was
	// issued.
	OutcomeExpired Outcome = "expired"
)

// expiredMemory is how long an owner's expired value is remembered
// (without the value) so that its next request is told OutcomeExpired.
const expiredMemory = 24 * time.Hour

// Get returns the pod's value for key, issuing, renewing or re-issuing it
// as its lease requires. A renewal that fails because Vault is
// unavailable keeps serving the value while its lease is still valid.
func (k *Keeper) Get(ctx context.Context, key Key, src Source) (any, Outcome, error) {
	if key.Owner == "" {
		return nil, "", ErrNoOwner
	}
	type result struct {
		value   any
		outcome Outcome
	}
	ch := k.flights.DoChan(fmt.Sprintf("%q", key), func() (any, error) {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), k.cfg.SharedCallTimeout)
		defer cancel()
		v, o, err := k.get(sctx, key, src)
		return result{v, o}, err
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, "", r.Err
		}
		res := r.Val.(result)
		return res.value, res.outcome, nil
	case <-ctx.Done():
		return nil, "", ctx.Err()
	}
}

func (k *Keeper) get(ctx context.Context, key Key, src Source) (any, Outcome, error) {
	now := k.cfg.Clock.Now()
	k.mu.Lock()
	e, ok := k.entries[key]
	k.mu.Unlock()
	if !ok {
		return k.issue(ctx, key, src, OutcomeIssued)
	}
	if !now.Before(e.expires()) {
		return k.issue(ctx, key, src, OutcomeExpired)
	}
	if !e.maxExpiry.IsZero() {
		life := e.maxExpiry.Sub(e.issued)
		if !now.Before(e.issued.Add(time.Duration(float64(life) * k.cfg.ReissueFraction))) {
			return k.issue(ctx, key, src, OutcomeReissued)
		}
	}
	if !e.renewable || e.leaseID == "" || now.Before(e.renewed.Add(time.Duration(float64(e.ttl)*k.cfg.RenewFraction))) {
		return e.value, OutcomeKept, nil
	}
	increment := e.ttl
	r, err := src.Renew(ctx, e.leaseID, increment)
	if err != nil {
		if errors.Is(err, plugin.ErrUnavailable) || errors.Is(err, plugin.ErrThrottled) || errors.Is(err, context.DeadlineExceeded) {
			// Vault is down; the lease is still valid until e.expires().
			return e.value, OutcomeKept, nil
		}
		// Revoked, expired, or no longer renewable: a new value.
		return k.issue(ctx, key, src, OutcomeReissued)
	}
	k.mu.Lock()
	ne := *e
	ne.renewed = now
	ne.ttl = r.TTL
	if r.TTL < increment {
		// Vault capped the renewal: this is the lease's max lifetime.
		ne.maxExpiry = now.Add(r.TTL)
	}
	k.entries[key] = &ne
	k.mu.Unlock()
	if !ne.maxExpiry.IsZero() && !now.Before(ne.issued.Add(time.Duration(float64(ne.maxExpiry.Sub(ne.issued))*k.cfg.ReissueFraction))) {
		return k.issue(ctx, key, src, OutcomeReissued)
	}
	return ne.value, OutcomeRenewed, nil
}

func (k *Keeper) issue(ctx context.Context, key Key, src Source, o Outcome) (any, Outcome, error) {
	is, err := src.Issue(ctx)
	if err != nil {
		k.mu.Lock()
		delete(k.entries, key)
		k.mu.Unlock()
		return nil, "", err
	}
	now := k.cfg.Clock.Now()
	e := &entry{value: is.Value, leaseID: is.LeaseID, renewable: is.Renewable, issued: now, ttl: is.TTL, renewed: now}
	if !is.Renewable {
		e.maxExpiry = now.Add(is.TTL)
	}
	k.mu.Lock()
	if _, ok := k.entries[key]; !ok && len(k.entries) >= k.cfg.MaxEntries {
		k.evictLocked(now)
	}
	k.entries[key] = e
	k.mu.Unlock()
	return is.Value, o, nil
}

// evictLocked drops expired entries, then the one closest to expiry.
func (k *Keeper) evictLocked(now time.Time) {
	var victim Key
	var first time.Time
	found := false
	for key, e := range k.entries {
		exp := e.expires()
		if !now.Before(exp) {
			delete(k.entries, key)
			continue
		}
		if !found || exp.Before(first) {
			victim, first, found = key, exp, true
		}
	}
	if found && len(k.entries) >= k.cfg.MaxEntries {
		delete(k.entries, victim)
	}
}

// Sweep drops the values whose lease has expired (their owners stopped
// asking: a pod gone, a SecretSync deleted, or asking too rarely), keeping
// only the key and times for expiredMemory so that an owner that asks
// again is told OutcomeExpired; then it forgets them. Mounts call it; it
// costs one pass over the entries. It returns the values dropped.
func (k *Keeper) Sweep() int {
	now := k.cfg.Clock.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for key, e := range k.entries {
		switch {
		case now.Before(e.expires()):
		case e.value != nil:
			k.entries[key] = &entry{issued: e.issued, ttl: e.ttl, renewed: e.renewed}
			n++
		case !now.Before(e.expires().Add(expiredMemory)):
			delete(k.entries, key)
		}
	}
	return n
}

// Len is the number of values kept (expired ones excluded).
func (k *Keeper) Len() int {
	now := k.cfg.Clock.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, e := range k.entries {
		if e.value != nil && now.Before(e.expires()) {
			n++
		}
	}
	return n
}
