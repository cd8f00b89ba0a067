// Package aws is the AWS provider backend: it mounts AWS Secrets Manager
// secrets and SSM Parameter Store parameters with the pod's own identity
// (IRSA or EKS Pod Identity), batching reads and sharing them between
// mounts of the same identity for a short time.
package aws

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/sscsi/secrets-store/providers/aws/auth"
	"github.com/sscsi/secrets-store/providers/aws/fetch"
	"github.com/sscsi/secrets-store/providers/aws/params"
	"github.com/sscsi/secrets-store/providers/plugin"
)

// Defaults of BackendConfig.
const (
	DefaultCacheTTL          = fetch.DefaultCacheTTL
	DefaultPinnedCacheTTL    = fetch.DefaultPinnedCacheTTL
	DefaultCacheMaxEntries   = fetch.DefaultCacheMaxEntries
	DefaultRoleCacheTTL      = auth.DefaultRoleCacheTTL
	DefaultCredentialsMargin = auth.DefaultCredentialsMargin

	// maxRegions bounds the per-region SDK clients kept.
	maxRegions = 64
)

// BackendConfig configures a Backend.
type BackendConfig struct {
	// AWS is the base SDK configuration: retryer, HTTP client, endpoint
	// overrides. Its credentials are never used for backend reads; every
	// call carries the mounting pod's credentials. See NewAWSConfig.
	AWS aws.Config
	// Kube reads service accounts (IRSA role annotation).
	Kube kubernetes.Interface
	// DefaultRegion is used when a SecretProviderClass sets no region.
	DefaultRegion string
	// NodeName, when set and there is no DefaultRegion, lets a
	// SecretProviderClass without a region use the node's
	// topology.kubernetes.io/region label, as upstream does.
	NodeName string
	// PodIdentityEndpoint overrides the EKS Pod Identity agent URL.
	PodIdentityEndpoint string
	// HTTPClient talks to the Pod Identity agent (default: 10s timeout).
	HTTPClient *http.Client
	// Clock is the time source (default: the real clock).
	Clock clock.Clock
	// CacheTTL, PinnedCacheTTL and CacheMaxEntries shape the value cache;
	// see fetch.Config.
	CacheTTL        time.Duration
	PinnedCacheTTL  time.Duration
	CacheMaxEntries int
	// RoleCacheTTL, NoRoleCache, CredentialsMargin and NoCredentialsCache
	// shape the identity caches; see auth.Config.
	RoleCacheTTL       time.Duration
	NoRoleCache        bool
	CredentialsMargin  time.Duration
	NoCredentialsCache bool
	// Metrics records API calls and mount durations (default: unexported).
	Metrics *Metrics
}

// Backend implements plugin.Backend for AWS: it parses the parameters
// (package params), resolves the pod's identity (package auth), reads the
// objects (package fetch) and turns them into files. Safe for concurrent
// use.
type Backend struct {
	cfg        BackendConfig
	clock      clock.Clock
	metrics    *Metrics
	auth       *auth.Resolver
	fetch      *fetch.Fetcher
	nodeRegion *nodeRegion

	mu      sync.Mutex                // guards clients
	clients map[string]*regionClients // by region, at most maxRegions
}

var _ plugin.Backend = (*Backend)(nil)

// regionClients are the SDK clients of one region; credentials are set
// per call.
type regionClients struct {
	sm  *secretsmanager.Client
	ssm *ssm.Client
	sts *sts.Client
}

// NewBackend validates cfg and returns a Backend.
func NewBackend(cfg BackendConfig) (*Backend, error) {
	if cfg.Kube == nil {
		return nil, errors.New("aws: BackendConfig.Kube is nil")
	}
	if cfg.DefaultRegion != "" && !params.ValidRegion(cfg.DefaultRegion) {
		return nil, fmt.Errorf("aws: default region %q is not a region name", cfg.DefaultRegion)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	b := &Backend{
		cfg:        cfg,
		clock:      cfg.Clock,
		metrics:    cfg.Metrics,
		clients:    map[string]*regionClients{},
		nodeRegion: &nodeRegion{kube: cfg.Kube, node: cfg.NodeName},
	}
	var err error
	b.auth, err = auth.New(auth.Config{
		Kube: cfg.Kube, STS: func(region string) *sts.Client { return b.clientsFor(region).sts },
		PodIdentityEndpoint: cfg.PodIdentityEndpoint, HTTPClient: cfg.HTTPClient, Clock: cfg.Clock,
		RoleCacheTTL: cfg.RoleCacheTTL, NoRoleCache: cfg.NoRoleCache, CredentialsMargin: cfg.CredentialsMargin,
		NoCredentialsCache: cfg.NoCredentialsCache, ObserveCall: cfg.Metrics.apiCall,
	})
	if err != nil {
		return nil, fmt.Errorf("aws: %w", err)
	}
	b.fetch, err = fetch.New(fetch.Config{
		Clients: func(region string) (*secretsmanager.Client, *ssm.Client) {
			c := b.clientsFor(region)
			return c.sm, c.ssm
		},
		Clock: cfg.Clock, CacheTTL: cfg.CacheTTL, PinnedCacheTTL: cfg.PinnedCacheTTL, CacheMaxEntries: cfg.CacheMaxEntries,
		Rejected: b.auth.Forget,
	})
	if err != nil {
		return nil, fmt.Errorf("aws: %w", err)
	}
	return b, nil
}

func (b *Backend) clientsFor(region string) *regionClients {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c, ok := b.clients[region]; ok {
		return c
	}
	if len(b.clients) >= maxRegions {
		// Region names come from SecretProviderClasses; never let them
		// grow this map without bound.
		b.clients = map[string]*regionClients{}
	}
	cfg := b.cfg.AWS.Copy()
	cfg.Region = region
	cfg.Credentials = aws.AnonymousCredentials{}
	cfg.APIOptions = append(cfg.APIOptions, b.metrics.middleware)
	c := &regionClients{
		sm:  secretsmanager.NewFromConfig(cfg),
		ssm: ssm.NewFromConfig(cfg),
		sts: sts.NewFromConfig(cfg),
	}
	b.clients[region] = c
	return c
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

func (b *Backend) mount(ctx context.Context, req *plugin.Request) (*plugin.Response, error) {
	def := b.cfg.DefaultRegion
	if req.Attributes[params.ParamRegion] == "" && def == "" && b.cfg.NodeName != "" {
		var err error
		if def, err = b.nodeRegion.get(ctx); err != nil {
			return nil, err
		}
	}
	p, err := params.ParseParams(req.Attributes, def)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", plugin.ErrInvalidParameters, err)
	}
	id, err := b.auth.Identity(ctx, req, p)
	if err != nil {
		return nil, err
	}
	vals, err := b.fetch.All(ctx, id, p)
	if err != nil {
		return nil, err
	}
	resp, err := buildResponse(p, vals, req.Permission)
	if err != nil {
		return nil, err
	}
	changed := 0
	for _, v := range resp.Versions {
		if req.CurrentVersions[v.ID] != v.Version {
			changed++
		}
	}
	klog.V(3).InfoS("aws mount fetched", "pod", klog.KRef(req.Pod.Namespace, req.Pod.Name), "objects", len(p.Objects), "files", len(resp.Files), "changedVersions", changed, "rotation", len(req.CurrentVersions) > 0)
	return resp, nil
}

// buildResponse turns fetched values into files and versions: the
// object's own file, its jmesPath files and its template output. Every
// file gets a version entry, keyed by its path.
func buildResponse(p *params.Params, vals []fetch.Value, def fs.FileMode) (*plugin.Response, error) {
	resp := &plugin.Response{}
	add := func(path string, mode fs.FileMode, data []byte, version string) {
		if mode == 0 {
			mode = def
		}
		resp.Files = append(resp.Files, plugin.File{Path: path, Mode: mode, Contents: data})
		resp.Versions = append(resp.Versions, plugin.ObjectVersion{ID: path, Version: version})
	}
	for i, o := range p.Objects {
		v := vals[i]
		where := o.Where(i)
		if len(o.JMESPaths) == 0 && o.Template == nil {
			add(o.FileName, o.Mode, v.Data, v.Version)
			continue
		}
		doc, err := decodeJSON(v.Data)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: jmesPath/objectTemplate: %v", plugin.ErrInvalidParameters, where, err)
		}
		main := v.Data
		if o.Template != nil {
			if main, err = renderTemplate(o.Template, doc); err != nil {
				return nil, fmt.Errorf("%w: %s: %v", plugin.ErrInvalidParameters, where, err)
			}
		}
		add(o.FileName, o.Mode, main, v.Version)
		for j, jp := range o.JMESPaths {
			s, err := extractJMESPath(jp.Compiled, doc)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: jmesPath[%d].path %q: %v", plugin.ErrInvalidParameters, where, j, jp.Expr, err)
			}
			add(jp.FileName, jp.Mode, []byte(s), v.Version)
		}
	}
	return resp, nil
}
