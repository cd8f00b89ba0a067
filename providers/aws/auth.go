package aws

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

// identity is the AWS identity of one mount. Its key names the identity
// source, the role and the token subject (the pod's service account);
// caches share data only between mounts with equal keys.
type identity struct {
	key   string
	creds aws.CredentialsProvider
}

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

// checkToken verifies that the token belongs to the pod's service account
// and has not expired, and returns its subject.
func checkToken(tok plugin.Token, pod plugin.Pod, now time.Time) (string, error) {
	c, err := parseClaims(tok.Token)
	if err != nil {
		return "", fmt.Errorf("%w: %v", plugin.ErrUnauthenticated, err)
	}
	if pod.Namespace != "" && pod.ServiceAccount != "" {
		want := "system:serviceaccount:" + pod.Namespace + ":" + pod.ServiceAccount
		if c.Subject != want {
			return "", fmt.Errorf("%w: service account token subject %q is not the pod's service account %s/%s", plugin.ErrUnauthenticated, c.Subject, pod.Namespace, pod.ServiceAccount)
		}
	}
	if c.Expiry != 0 && !now.Before(time.Unix(c.Expiry, 0)) {
		return "", fmt.Errorf("%w: service account token of %s expired at %s", plugin.ErrUnauthenticated, c.Subject, time.Unix(c.Expiry, 0).UTC().Format(time.RFC3339))
	}
	return c.Subject, nil
}

// roleCache reads the IRSA role annotation of service accounts. Lifetime:
// an entry lives ttl, so an annotation change is seen within ttl; size:
// one entry per service account that mounted within ttl.
type roleCache struct {
	kube    kubernetes.Interface
	clock   clock.PassiveClock
	ttl     time.Duration
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
	if ok && now.After(e.expires) {
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
// maxCredsEntries; past it, expired entries are dropped first).
type credsCache struct {
	clock   clock.PassiveClock
	margin  time.Duration
	flights singleflight.Group

	mu      sync.Mutex // guards entries
	entries map[string]aws.Credentials
}

const maxCredsEntries = 10000

func (c *credsCache) get(ctx context.Context, key string, fetch func(context.Context) (aws.Credentials, error)) (aws.Credentials, error) {
	c.mu.Lock()
	cr, ok := c.entries[key]
	c.mu.Unlock()
	if ok && c.fresh(cr) {
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

// identityFor resolves the mount's identity: EKS Pod Identity when the
// SecretProviderClass asks for it, IRSA otherwise.
func (b *Backend) identityFor(ctx context.Context, req *plugin.Request, p *Params) (*identity, error) {
	if p.UsePodIdentity {
		return b.podIdentity(ctx, req, p)
	}
	return b.irsaIdentity(ctx, req, p)
}

func (b *Backend) irsaIdentity(ctx context.Context, req *plugin.Request, p *Params) (*identity, error) {
	tok, err := req.Token(AudienceIRSA)
	if err != nil {
		return nil, err
	}
	subject, err := checkToken(tok, req.Pod, b.clock.Now())
	if err != nil {
		return nil, err
	}
	role, err := b.roles.role(ctx, req.Pod.Namespace, req.Pod.ServiceAccount)
	if err != nil {
		return nil, err
	}
	key := "irsa|" + role + "|" + subject
	cr, err := b.creds.get(ctx, key, func(ctx context.Context) (aws.Credentials, error) {
		return b.assumeRole(ctx, p.Region, role, req.Pod, tok.Token)
	})
	if err != nil {
		return nil, err
	}
	return &identity{key: key, creds: staticProvider{cr}}, nil
}

func (b *Backend) assumeRole(ctx context.Context, region, role string, pod plugin.Pod, token string) (aws.Credentials, error) {
	out, err := b.clientsFor(region).sts.AssumeRoleWithWebIdentity(ctx, &sts.AssumeRoleWithWebIdentityInput{
		RoleArn:          aws.String(role),
		RoleSessionName:  aws.String(sessionName(pod)),
		WebIdentityToken: aws.String(token),
	})
	if err != nil {
		kind := kindOf(err)
		switch {
		case kind == nil, errors.Is(kind, plugin.ErrInvalidParameters), errors.Is(kind, plugin.ErrPermissionDenied), errors.Is(kind, plugin.ErrNotFound):
			kind = plugin.ErrUnauthenticated
		}
		// Only the code: STS messages can echo parts of the token.
		return aws.Credentials{}, fmt.Errorf("%w: sts AssumeRoleWithWebIdentity for role %s (service account %s/%s): %s", kind, role, pod.Namespace, pod.ServiceAccount, errorCode(err))
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

func (b *Backend) podIdentity(ctx context.Context, req *plugin.Request, p *Params) (*identity, error) {
	tok, err := req.Token(AudiencePodIdentity)
	if err != nil {
		return nil, err
	}
	subject, err := checkToken(tok, req.Pod, b.clock.Now())
	if err != nil {
		return nil, err
	}
	endpoint := b.podIdentityEndpoint(p.PreferredAddressType)
	key := "podidentity|" + endpoint + "|" + subject
	cr, err := b.creds.get(ctx, key, func(ctx context.Context) (aws.Credentials, error) {
		return b.agentCredentials(ctx, endpoint, tok.Token, subject)
	})
	if err != nil {
		return nil, err
	}
	return &identity{key: key, creds: staticProvider{cr}}, nil
}

func (b *Backend) podIdentityEndpoint(addressType string) string {
	if b.cfg.PodIdentityEndpoint != "" {
		return b.cfg.PodIdentityEndpoint
	}
	if addressType == AddressIPv6 {
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

func (b *Backend) agentCredentials(ctx context.Context, endpoint, token, subject string) (aws.Credentials, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return aws.Credentials{}, fmt.Errorf("pod identity agent endpoint %q: %w", endpoint, err)
	}
	hreq.Header.Set("Authorization", token)
	resp, err := b.httpClient.Do(hreq)
	b.metrics.apiCall("PodIdentityAgent", resultCode(err, resp))
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

// RegionLabel is the node label a SecretProviderClass without a region
// falls back to.
const RegionLabel = "topology.kubernetes.io/region"

// nodeRegion reads this node's region label once; a node does not move.
type nodeRegion struct {
	kube    kubernetes.Interface
	node    string
	flights singleflight.Group

	mu     sync.Mutex // guards region
	region string
}

func (n *nodeRegion) get(ctx context.Context) (string, error) {
	n.mu.Lock()
	r := n.region
	n.mu.Unlock()
	if r != "" {
		return r, nil
	}
	v, err, _ := n.flights.Do("", func() (any, error) {
		node, err := n.kube.CoreV1().Nodes().Get(ctx, n.node, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("%w: parameter region is empty and node %s could not be read for its %s label: %v", plugin.ErrUnavailable, n.node, RegionLabel, err)
		}
		r := node.Labels[RegionLabel]
		if r == "" {
			return "", fmt.Errorf("%w: parameter region is empty and node %s has no %s label; set spec.parameters.region", plugin.ErrInvalidParameters, n.node, RegionLabel)
		}
		n.mu.Lock()
		n.region = r
		n.mu.Unlock()
		return r, nil
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}
