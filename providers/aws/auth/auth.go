// Package auth resolves the AWS identity of one mount from the pod's own
// service-account token: IRSA (sts AssumeRoleWithWebIdentity with the
// role annotated on the service account) or EKS Pod Identity (the node's
// agent). Credentials are cached per identity until shortly before they
// expire; identical concurrent requests share one call.
package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"golang.org/x/sync/singleflight"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/sscsi/secrets-store/providers/aws/awserr"
	"github.com/sscsi/secrets-store/providers/aws/params"
	"github.com/sscsi/secrets-store/providers/plugin"
)

// Token audiences and the service account annotation naming the IRSA role.
const (
	AudienceIRSA        = "sts.amazonaws.com"
	AudiencePodIdentity = "pods.eks.amazonaws.com"
	RoleAnnotation      = "eks.amazonaws.com/role-arn"

	// Default EKS Pod Identity agent endpoints.
	PodIdentityEndpointIPv4 = "http://169.254.170.23/v1/credentials"
	PodIdentityEndpointIPv6 = "http://[fd00:ec2::23]/v1/credentials"
)

// Identity is the AWS identity of one mount. Key names the identity
// source, the role and the token subject (the pod's service account);
// caches share data only between mounts with equal keys.
type Identity struct {
	Key   string
	Creds aws.CredentialsProvider
}

// Defaults of Config.
const (
	DefaultRoleCacheTTL      = time.Minute
	DefaultCredentialsMargin = 5 * time.Minute
	// sharedCallTimeout bounds a credentials call shared by several mounts.
	sharedCallTimeout = 60 * time.Second
)

// Config configures a Resolver.
type Config struct {
	// Kube reads service accounts (IRSA role annotation).
	Kube kubernetes.Interface
	// STS returns the STS client of a region (credentials set per call).
	STS func(region string) *sts.Client
	// PodIdentityEndpoint overrides the EKS Pod Identity agent URL.
	PodIdentityEndpoint string
	// HTTPClient talks to the Pod Identity agent (default: 10s timeout).
	HTTPClient *http.Client
	// Clock is the time source (default: the real clock).
	Clock clock.Clock
	// RoleCacheTTL is how long a service account's role annotation is
	// cached (default DefaultRoleCacheTTL).
	RoleCacheTTL time.Duration
	// NoRoleCache reads the service account on every IRSA mount.
	NoRoleCache bool
	// CredentialsMargin: cached credentials are renewed this long before
	// they expire (default DefaultCredentialsMargin).
	CredentialsMargin time.Duration
	// NoCredentialsCache asks STS or the Pod Identity agent on every
	// mount; concurrent mounts of one identity still share one call.
	NoCredentialsCache bool
	// ObserveCall records a call that is not an SDK operation (the Pod
	// Identity agent) by api and result code; nil records nothing.
	ObserveCall func(api, code string)
}

// Resolver resolves mount identities. Safe for concurrent use.
type Resolver struct {
	cfg   Config
	roles *roleCache
	creds *credsCache
}

// New validates cfg and returns a Resolver.
func New(cfg Config) (*Resolver, error) {
	if cfg.Kube == nil || cfg.STS == nil {
		return nil, errors.New("auth: Config.Kube and Config.STS are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.RoleCacheTTL <= 0 {
		cfg.RoleCacheTTL = DefaultRoleCacheTTL
	}
	if cfg.CredentialsMargin <= 0 {
		cfg.CredentialsMargin = DefaultCredentialsMargin
	}
	if cfg.ObserveCall == nil {
		cfg.ObserveCall = func(string, string) {}
	}
	return &Resolver{
		cfg:   cfg,
		roles: &roleCache{kube: cfg.Kube, clock: cfg.Clock, ttl: cfg.RoleCacheTTL, off: cfg.NoRoleCache, entries: map[string]roleEntry{}},
		creds: &credsCache{clock: cfg.Clock, margin: cfg.CredentialsMargin, off: cfg.NoCredentialsCache, entries: map[string]aws.Credentials{}},
	}, nil
}

// Forget drops the cached credentials of an identity, e.g. after the
// backend rejected them.
func (a *Resolver) Forget(key string) { a.creds.forget(key) }

// claims are the JWT claims used to key credentials. The token is not
// verified here: it came from kubelet through the driver, and STS or the
// Pod Identity agent verify it before any credentials are issued for it.
type claims struct {
	Subject string `json:"sub"`
	Expiry  int64  `json:"exp"`
}

func parseClaims(token string) (claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return claims{}, errors.New("service account token is not a JWT")
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return claims{}, errors.New("service account token has an undecodable payload")
	}
	var c claims
	if err := json.Unmarshal(raw, &c); err != nil || c.Subject == "" {
		return claims{}, errors.New("service account token has no sub claim")
	}
	return c, nil
}

// attested is the pod's identity as kubelet reported it through the driver.
func attested(pod plugin.Pod) string { return pod.Namespace + "/" + pod.ServiceAccount }

// checkToken verifies that the token belongs to the pod's service account
// and has not expired, and returns its subject.
func checkToken(tok plugin.Token, pod plugin.Pod, now time.Time) (string, error) {
	c, err := parseClaims(tok.Token)
	if err != nil {
		return "", fmt.Errorf("%w: %v", plugin.ErrUnauthenticated, err)
	}
	// Fail closed: without the kubelet-attested namespace and service
	// account there is nothing to check the token against, and nothing to
	// key shared credentials by.
	if pod.Namespace == "" || pod.ServiceAccount == "" {
		return "", fmt.Errorf("%w: the mount request does not name the pod's namespace and service account (csi.storage.k8s.io/pod.namespace, csi.storage.k8s.io/serviceAccount.name); the CSIDriver object must set podInfoOnMount: true", plugin.ErrUnauthenticated)
	}
	want := "system:serviceaccount:" + pod.Namespace + ":" + pod.ServiceAccount
	if c.Subject != want {
		return "", fmt.Errorf("%w: service account token subject %q is not the pod's service account %s/%s", plugin.ErrUnauthenticated, c.Subject, pod.Namespace, pod.ServiceAccount)
	}
	if c.Expiry != 0 && !now.Before(time.Unix(c.Expiry, 0)) {
		return "", fmt.Errorf("%w: service account token of %s expired at %s", plugin.ErrUnauthenticated, c.Subject, time.Unix(c.Expiry, 0).UTC().Format(time.RFC3339))
	}
	return c.Subject, nil
}

// roleCache reads the IRSA role annotation of service accounts. Lifetime:
// an entry lives ttl, so an annotation change is seen within ttl; size:
// one entry per service account that mounted within ttl. With off, nothing
// is kept: every mount reads its service account (concurrent reads of one
// account are still shared).
type roleCache struct {
	kube    kubernetes.Interface
	clock   clock.PassiveClock
	ttl     time.Duration
	off     bool
	flights singleflight.Group

	mu      sync.Mutex // guards entries
	entries map[string]roleEntry
}

type roleEntry struct {
	role    string
	expires time.Time
}

func (c *roleCache) role(ctx context.Context, namespace, name string) (string, error) {
	if namespace == "" || name == "" {
		return "", fmt.Errorf("%w: the mount has no pod namespace or service account name (is podInfoOnMount set on the CSIDriver?)", plugin.ErrInvalidParameters)
	}
	key := namespace + "/" + name
	now := c.clock.Now()
	c.mu.Lock()
	e, ok := c.entries[key]
	if ok && (c.off || now.After(e.expires)) {
		delete(c.entries, key)
		ok = false
	}
	c.mu.Unlock()
	if !ok {
		v, err, _ := c.flights.Do(key, func() (any, error) {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), roleLookupTimeout)
			defer cancel()
			sa, err := c.kube.CoreV1().ServiceAccounts(namespace).Get(sctx, name, metav1.GetOptions{})
			if err != nil {
				if apierrors.IsNotFound(err) {
					return nil, fmt.Errorf("%w: service account %s not found", plugin.ErrUnauthenticated, key)
				}
				return nil, fmt.Errorf("%w: read service account %s: %v", plugin.ErrUnavailable, key, err)
			}
			r := roleEntry{role: sa.Annotations[RoleAnnotation], expires: c.clock.Now().Add(c.ttl)}
			if c.off {
				return r, nil
			}
			c.mu.Lock()
			if len(c.entries) > maxRoleEntries {
				c.entries = map[string]roleEntry{}
			}
			c.entries[key] = r
			c.mu.Unlock()
			return r, nil
		})
		if err != nil {
			return "", err
		}
		e = v.(roleEntry)
	}
	if e.role == "" {
		return "", fmt.Errorf("%w: service account %s has no %s annotation; annotate it with the IAM role to assume, or set usePodIdentity: \"true\"", plugin.ErrUnauthenticated, key, RoleAnnotation)
	}
	return e.role, nil
}

const (
	// maxRoleEntries bounds the role cache; past it the cache starts over.
	maxRoleEntries = 10000
	// roleLookupTimeout bounds a service account read shared by mounts.
	roleLookupTimeout = 15 * time.Second
)

// credsCache holds temporary credentials per identity key until refresh
// before their expiry. Lifetime: until Expires-margin; size: one entry per
// identity that mounted within the credentials' lifetime (bounded by
// maxCredsEntries; past it, expired entries are dropped first). With off,
// nothing is kept: only mounts of one identity waiting at the same moment
// share a call.
type credsCache struct {
	clock   clock.PassiveClock
	margin  time.Duration
	off     bool
	flights singleflight.Group

	mu      sync.Mutex // guards entries
	entries map[string]aws.Credentials
}

const maxCredsEntries = 10000

func (c *credsCache) get(ctx context.Context, key string, fetch func(context.Context) (aws.Credentials, error)) (aws.Credentials, error) {
	c.mu.Lock()
	cr, ok := c.entries[key]
	c.mu.Unlock()
	if ok && !c.off && c.fresh(cr) {
		return cr, nil
	}
	ch := c.flights.DoChan(key, func() (any, error) {
		// Shared by every mount of the identity waiting now: it must not
		// fail because the first of them gave up.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sharedCallTimeout)
		defer cancel()
		cr, err := fetch(sctx)
		if err != nil {
			return nil, err
		}
		if c.off {
			return cr, nil
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if len(c.entries) >= maxCredsEntries {
			for k, e := range c.entries {
				if !c.fresh(e) {
					delete(c.entries, k)
				}
			}
		}
		if len(c.entries) < maxCredsEntries {
			c.entries[key] = cr
		}
		return cr, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return aws.Credentials{}, r.Err
		}
		return r.Val.(aws.Credentials), nil
	case <-ctx.Done():
		return aws.Credentials{}, fmt.Errorf("waiting for credentials: %w", ctx.Err())
	}
}

func (c *credsCache) fresh(cr aws.Credentials) bool {
	return !cr.CanExpire || c.clock.Now().Add(c.margin).Before(cr.Expires)
}

func (c *credsCache) forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, key)
}

// staticProvider hands fixed credentials to the SDK for one call.
type staticProvider struct{ creds aws.Credentials }

func (p staticProvider) Retrieve(context.Context) (aws.Credentials, error) { return p.creds, nil }

// Identity resolves the mount's identity: EKS Pod Identity when the
// SecretProviderClass asks for it, IRSA otherwise.
func (a *Resolver) Identity(ctx context.Context, req *plugin.Request, p *params.Params) (*Identity, error) {
	if p.UsePodIdentity {
		return a.podIdentity(ctx, req, p)
	}
	return a.irsaIdentity(ctx, req, p)
}

func (a *Resolver) irsaIdentity(ctx context.Context, req *plugin.Request, p *params.Params) (*Identity, error) {
	tok, err := req.Token(AudienceIRSA)
	if err != nil {
		return nil, err
	}
	if _, err := checkToken(tok, req.Pod, a.cfg.Clock.Now()); err != nil {
		return nil, err
	}
	role, err := a.roles.role(ctx, req.Pod.Namespace, req.Pod.ServiceAccount)
	if err != nil {
		return nil, err
	}
	// Keyed by the kubelet-attested identity (checkToken made sure the
	// token's subject is that same account).
	key := "irsa|" + role + "|" + attested(req.Pod)
	cr, err := a.creds.get(ctx, key, func(ctx context.Context) (aws.Credentials, error) {
		return a.assumeRole(ctx, p.Region, role, req.Pod, tok.Token)
	})
	if err != nil {
		return nil, err
	}
	return &Identity{Key: key, Creds: staticProvider{cr}}, nil
}

func (a *Resolver) assumeRole(ctx context.Context, region, role string, pod plugin.Pod, token string) (aws.Credentials, error) {
	out, err := a.cfg.STS(region).AssumeRoleWithWebIdentity(ctx, &sts.AssumeRoleWithWebIdentityInput{
		RoleArn:          aws.String(role),
		RoleSessionName:  aws.String(sessionName(pod)),
		WebIdentityToken: aws.String(token),
	})
	if err != nil {
		kind := awserr.Kind(err)
		switch {
		case kind == nil, errors.Is(kind, plugin.ErrInvalidParameters), errors.Is(kind, plugin.ErrPermissionDenied), errors.Is(kind, plugin.ErrNotFound):
			kind = plugin.ErrUnauthenticated
		}
		// Only the code: STS messages can echo parts of the token.
		return aws.Credentials{}, fmt.Errorf("%w: sts AssumeRoleWithWebIdentity for role %s (service account %s/%s): %s", kind, role, pod.Namespace, pod.ServiceAccount, awserr.Code(err))
	}
	c := out.Credentials
	if c == nil || c.AccessKeyId == nil || c.SecretAccessKey == nil {
		return aws.Credentials{}, fmt.Errorf("%w: sts AssumeRoleWithWebIdentity for role %s returned no credentials", plugin.ErrUnavailable, role)
	}
	cr := aws.Credentials{AccessKeyID: *c.AccessKeyId, SecretAccessKey: *c.SecretAccessKey, SessionToken: aws.ToString(c.SessionToken), Source: "AssumeRoleWithWebIdentity"}
	if c.Expiration != nil {
		cr.CanExpire, cr.Expires = true, *c.Expiration
	}
	return cr, nil
}

// sessionName names the STS session after the service account, so that
// CloudTrail shows which workload read a secret.
func sessionName(pod plugin.Pod) string {
	n := "sscsi-" + pod.Namespace + "-" + pod.ServiceAccount
	var b strings.Builder
	for _, r := range n {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("=,.@-_", r) {
			b.WriteRune(r)
		}
	}
	s := b.String()
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}

func (a *Resolver) podIdentity(ctx context.Context, req *plugin.Request, p *params.Params) (*Identity, error) {
	tok, err := req.Token(AudiencePodIdentity)
	if err != nil {
		return nil, err
	}
	subject, err := checkToken(tok, req.Pod, a.cfg.Clock.Now())
	if err != nil {
		return nil, err
	}
	endpoint := a.podIdentityEndpoint(p.PreferredAddressType)
	key := "podidentity|" + endpoint + "|" + attested(req.Pod)
	cr, err := a.creds.get(ctx, key, func(ctx context.Context) (aws.Credentials, error) {
		return a.agentCredentials(ctx, endpoint, tok.Token, subject)
	})
	if err != nil {
		return nil, err
	}
	return &Identity{Key: key, Creds: staticProvider{cr}}, nil
}

func (a *Resolver) podIdentityEndpoint(addressType string) string {
	if a.cfg.PodIdentityEndpoint != "" {
		return a.cfg.PodIdentityEndpoint
	}
	if addressType == params.AddressIPv6 {
		return PodIdentityEndpointIPv6
	}
	return PodIdentityEndpointIPv4
}

// agentResponse is the EKS Pod Identity agent's credentials document.
type agentResponse struct {
	AccessKeyID     string    `json:"AccessKeyId"`
	SecretAccessKey string    `json:"SecretAccessKey"`
	Token           string    `json:"Token"`
	Expiration      time.Time `json:"Expiration"`
}

func (a *Resolver) agentCredentials(ctx context.Context, endpoint, token, subject string) (aws.Credentials, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return aws.Credentials{}, fmt.Errorf("pod identity agent endpoint %q: %w", endpoint, err)
	}
	hreq.Header.Set("Authorization", token)
	resp, err := a.cfg.HTTPClient.Do(hreq)
	a.cfg.ObserveCall("PodIdentityAgent", resultCode(err, resp))
	if err != nil {
		return aws.Credentials{}, fmt.Errorf("%w: pod identity agent %s unreachable for %s", plugin.ErrUnavailable, endpoint, subject)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return aws.Credentials{}, fmt.Errorf("%w: pod identity agent throttled the request for %s", plugin.ErrThrottled, subject)
	case resp.StatusCode >= 500:
		return aws.Credentials{}, fmt.Errorf("%w: pod identity agent answered HTTP %d for %s", plugin.ErrUnavailable, resp.StatusCode, subject)
	case resp.StatusCode != http.StatusOK:
		return aws.Credentials{}, fmt.Errorf("%w: pod identity agent refused %s (HTTP %d); is there a pod identity association for this service account?", plugin.ErrUnauthenticated, subject, resp.StatusCode)
	}
	var ar agentResponse
	if err := json.Unmarshal(body, &ar); err != nil || ar.AccessKeyID == "" || ar.SecretAccessKey == "" {
		return aws.Credentials{}, fmt.Errorf("%w: pod identity agent returned no usable credentials for %s", plugin.ErrUnavailable, subject)
	}
	cr := aws.Credentials{AccessKeyID: ar.AccessKeyID, SecretAccessKey: ar.SecretAccessKey, SessionToken: ar.Token, Source: "EKSPodIdentity"}
	if !ar.Expiration.IsZero() {
		cr.CanExpire, cr.Expires = true, ar.Expiration
	}
	return cr, nil
}

func resultCode(err error, resp *http.Response) string {
	if err != nil {
		return "NetworkError"
	}
	if resp.StatusCode == http.StatusOK {
		return "OK"
	}
	return fmt.Sprintf("HTTP%d", resp.StatusCode)
}
