// Package fetch reads the objects of one mount from AWS Secrets Manager and
// SSM Parameter Store with the mount's identity: Secrets Manager latest
// values in batches of 20 (one by one for identities whose policy denies
// the batch call), pinned ones one by one, SSM parameters in batches of
// 10, the failover region after throttling or server errors. Values are
// shared for a short time between mounts of the same identity.
package fetch

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"golang.org/x/sync/singleflight"
	"k8s.io/utils/clock"

	"github.com/sscsi/secrets-store/internal/ttlcache"
	"github.com/sscsi/secrets-store/providers/aws/auth"
	"github.com/sscsi/secrets-store/providers/aws/awserr"
	"github.com/sscsi/secrets-store/providers/aws/params"
	"github.com/sscsi/secrets-store/providers/plugin"
)

// Batch sizes are the services' limits.
const (
	secretsBatchSize    = 20 // BatchGetSecretValue SecretIdList
	parametersBatchSize = 10 // GetParameters Names
	// maxConcurrentCalls bounds the calls one mount makes at once.
	maxConcurrentCalls = 4
	// sharedCallTimeout bounds a backend call shared by several mounts.
	sharedCallTimeout = 60 * time.Second
	// batchDeniedFor is how long an identity whose policy refuses
	// BatchGetSecretValue reads secrets one by one.
	batchDeniedFor = time.Hour
)

// Defaults of Config.
const (
	DefaultCacheTTL        = 30 * time.Second
	DefaultPinnedCacheTTL  = 15 * time.Minute
	DefaultCacheMaxEntries = 10000
)

// Value is an object's value and version.
type Value struct {
	Data    []byte
	Version string
}

// key identifies one fetched value: the same object read with the same
// identity in the same region. Pods share an entry only when all three
// match, so a pod never sees a value its own identity could not read.
type key struct {
	identity string
	region   string
	ref      params.Ref
}

// Config configures a Fetcher.
type Config struct {
	// Clients returns the SDK clients of a region; credentials are set
	// per call.
	Clients func(region string) (*secretsmanager.Client, *ssm.Client)
	// Clock is the time source (default: the real clock).
	Clock clock.Clock
	// CacheTTL is how long a fetched latest value, label or stage is
	// shared between mounts of the same identity; 0 disables the value
	// cache. Keep it well below the driver's rotation poll interval.
	CacheTTL time.Duration
	// PinnedCacheTTL is the same for a pinned objectVersion (default
	// DefaultPinnedCacheTTL).
	PinnedCacheTTL time.Duration
	// CacheMaxEntries bounds the value cache (default
	// DefaultCacheMaxEntries).
	CacheMaxEntries int
	// Rejected is told the key of an identity whose credentials the
	// backend rejected or denied access with, so that new ones are
	// fetched next time.
	Rejected func(identity string)
}

// Fetcher reads objects. Safe for concurrent use.
type Fetcher struct {
	cfg    Config
	values *ttlcache.TTL[key, Value]
	// batchDenied holds identities whose policy refuses
	// BatchGetSecretValue; they read secrets one by one for a while.
	batchDenied *ttlcache.Set[string]
	flights     singleflight.Group // shares identical backend calls of one identity
}

// New validates cfg and returns a Fetcher.
func New(cfg Config) (*Fetcher, error) {
	if cfg.Clients == nil {
		return nil, errors.New("fetch: Config.Clients is nil")
	}
	if cfg.CacheTTL < 0 {
		return nil, errors.New("fetch: CacheTTL is negative")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.PinnedCacheTTL == 0 {
		cfg.PinnedCacheTTL = DefaultPinnedCacheTTL
	}
	if cfg.CacheMaxEntries <= 0 {
		cfg.CacheMaxEntries = DefaultCacheMaxEntries
	}
	if cfg.Rejected == nil {
		cfg.Rejected = func(string) {}
	}
	return &Fetcher{
		cfg:         cfg,
		values:      ttlcache.NewTTL[key, Value](cfg.Clock, cfg.CacheMaxEntries),
		batchDenied: ttlcache.NewSet[string](cfg.Clock, batchDeniedFor, DefaultCacheMaxEntries),
	}, nil
}

// cached returns a value shared by an earlier mount of the same identity.
func (f *Fetcher) cached(k key) (Value, bool) {
	if f.cfg.CacheTTL <= 0 {
		return Value{}, false
	}
	return f.values.Get(k)
}

// remember shares v with later mounts of the same identity; a pinned
// version lives longer, since it cannot change.
func (f *Fetcher) remember(k key, v Value) {
	ttl := f.cfg.CacheTTL
	if ttl <= 0 {
		return
	}
	if k.ref.Pinned() && f.cfg.PinnedCacheTTL > ttl {
		ttl = f.cfg.PinnedCacheTTL
	}
	f.values.Put(k, v, ttl)
}

// job is one backend call: a batch of refs of one type, or one pinned
// Secrets Manager read.
type job struct {
	api  string
	refs []params.Ref
}

func (j job) key() string {
	var b strings.Builder
	b.WriteString(j.api)
	for _, r := range j.refs {
		fmt.Fprintf(&b, "|%s\x00%s\x00%s\x00%s", r.Type, r.Name, r.Version, r.Label)
	}
	return b.String()
}

// jobError is the failure of some refs of a job.
type jobError struct {
	refs []params.Ref
	err  error
}

// jobResult is what one job produced.
type jobResult struct {
	values map[params.Ref]Value
	errs   []jobError
}

// batchable reports whether a Secrets Manager ref can go into
// BatchGetSecretValue, which returns the AWSCURRENT version only (refs
// name that stage with an empty label, see params.Ref).
func batchable(r params.Ref) bool {
	return r.Version == "" && r.Label == ""
}

// planJobs groups refs into calls: Secrets Manager current values in
// batches of 20, pinned ones one by one, SSM parameters in batches of 10
// with never two selectors of one name in the same batch (the response
// is matched back by name).
func planJobs(refs []params.Ref, batchSecrets bool) []job {
	var jobs []job
	var sm []params.Ref
	var ssmBatches [][]params.Ref
	for _, r := range refs {
		switch {
		case r.Type == params.TypeSecretsManager && batchable(r) && batchSecrets:
			sm = append(sm, r)
		case r.Type == params.TypeSecretsManager:
			jobs = append(jobs, job{api: "GetSecretValue", refs: []params.Ref{r}})
		default:
			placed := false
			for i, b := range ssmBatches {
				if len(b) < parametersBatchSize && !hasName(b, r.Name) {
					ssmBatches[i] = append(b, r)
					placed = true
					break
				}
			}
			if !placed {
				ssmBatches = append(ssmBatches, []params.Ref{r})
			}
		}
	}
	for len(sm) > 0 {
		n := min(len(sm), secretsBatchSize)
		jobs = append(jobs, job{api: "BatchGetSecretValue", refs: sm[:n]})
		sm = sm[n:]
	}
	for _, b := range ssmBatches {
		jobs = append(jobs, job{api: "GetParameters", refs: b})
	}
	return jobs
}

func hasName(refs []params.Ref, name string) bool {
	for _, r := range refs {
		if r.Name == name {
			return true
		}
	}
	return false
}

// All reads every object of p with identity id. Results are aligned
// with p.Objects. Any failure fails the whole mount: a partial file set is
// never returned.
func (f *Fetcher) All(ctx context.Context, id *auth.Identity, p *params.Params) ([]Value, error) {
	byRef := map[params.Ref][]int{}
	var refs []params.Ref
	for i, o := range p.Objects {
		r := o.Ref()
		if _, ok := byRef[r]; !ok {
			refs = append(refs, r)
		}
		byRef[r] = append(byRef[r], i)
	}
	out := make([]Value, len(p.Objects))
	got, failed := f.fetchRegion(ctx, id, p.Region, refs)
	for r, v := range got {
		for _, i := range byRef[r] {
			out[i] = v
		}
	}
	var fatal, primaryErr error
	var failover []int
	for _, je := range failed {
		if p.FailoverRegion == "" || !awserr.FailoverEligible(je.err) {
			fatal = firstErr(fatal, je.err)
			continue
		}
		primaryErr = firstErr(primaryErr, je.err)
		for _, r := range je.refs {
			failover = append(failover, byRef[r]...)
		}
	}
	if fatal != nil {
		return nil, fatal
	}
	if len(failover) == 0 {
		return out, nil
	}
	fByRef := map[params.Ref][]int{}
	var frefs []params.Ref
	for _, i := range failover {
		r := p.Objects[i].FailoverRef()
		if _, ok := fByRef[r]; !ok {
			frefs = append(frefs, r)
		}
		fByRef[r] = append(fByRef[r], i)
	}
	fgot, ffailed := f.fetchRegion(ctx, id, p.FailoverRegion, frefs)
	if len(ffailed) > 0 {
		return nil, fmt.Errorf("%w; failover region %s also failed: %v", primaryErr, p.FailoverRegion, ffailed[0].err)
	}
	for r, v := range fgot {
		for _, i := range fByRef[r] {
			out[i] = v
		}
	}
	return out, nil
}

func firstErr(have, next error) error {
	if have != nil {
		return have
	}
	return next
}

// fetchRegion reads refs in one region, from the value cache when it can.
// Concurrent mounts that need the same call with the same identity share
// it.
func (f *Fetcher) fetchRegion(ctx context.Context, id *auth.Identity, region string, refs []params.Ref) (map[params.Ref]Value, []jobError) {
	got := map[params.Ref]Value{}
	var miss []params.Ref
	for _, r := range refs {
		if v, ok := f.cached(key{identity: id.Key, region: region, ref: r}); ok {
			got[r] = v
			continue
		}
		miss = append(miss, r)
	}
	if len(miss) == 0 {
		return got, nil
	}
	jobs := planJobs(miss, !f.batchDenied.Has(id.Key))
	results := make([]jobResult, len(jobs))
	sem := make(chan struct{}, maxConcurrentCalls)
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			ch := f.flights.DoChan(id.Key+"\x01"+region+"\x01"+j.key(), func() (any, error) {
				// The call is shared: one caller giving up must not fail
				// the others, so it runs on its own deadline.
				sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sharedCallTimeout)
				defer cancel()
				res := f.runJob(sctx, id, region, j)
				for r, v := range res.values {
					f.remember(key{identity: id.Key, region: region, ref: r}, v)
				}
				return res, nil
			})
			select {
			case r := <-ch:
				results[i] = r.Val.(jobResult)
			case <-ctx.Done():
				results[i] = failAll(j.refs, fmt.Errorf("waiting for %s: %w", j.api, ctx.Err()))
			}
		}()
	}
	wg.Wait()
	var errs []jobError
	for _, res := range results {
		for r, v := range res.values {
			got[r] = v
		}
		errs = append(errs, res.errs...)
	}
	for _, je := range errs {
		switch {
		case errors.Is(je.err, plugin.ErrUnauthenticated):
			// The credentials were rejected: get new ones next time.
			f.cfg.Rejected(id.Key)
			f.values.DeleteFunc(func(k key) bool { return k.identity == id.Key })
		case errors.Is(je.err, plugin.ErrPermissionDenied):
			// Access denied may be aimed at these credentials rather than
			// the role (IAM "revoke active sessions" denies sessions
			// issued before a time): the next mount assumes the role
			// again instead of failing until the cached credentials
			// expire.
			f.cfg.Rejected(id.Key)
		}
	}
	sort.SliceStable(errs, func(i, k int) bool { return errRank(errs[i].err) < errRank(errs[k].err) })
	return got, errs
}

// errRank orders errors so that the one reported is the one the user can
// act on: configuration and access problems before transient ones.
func errRank(err error) int {
	switch {
	case errors.Is(err, plugin.ErrInvalidParameters):
		return 0
	case errors.Is(err, plugin.ErrNotFound), errors.Is(err, plugin.ErrPermissionDenied), errors.Is(err, plugin.ErrUnauthenticated):
		return 1
	}
	return 2
}

func (f *Fetcher) runJob(ctx context.Context, id *auth.Identity, region string, j job) jobResult {
	sm, ssmc := f.cfg.Clients(region)
	switch j.api {
	case "BatchGetSecretValue":
		return f.batchSecrets(ctx, sm, id, j.refs)
	case "GetSecretValue":
		return f.getSecret(ctx, sm, id, j.refs[0])
	default:
		return f.getParameters(ctx, ssmc, id, j.refs)
	}
}

func smCreds(id *auth.Identity) func(*secretsmanager.Options) {
	return func(o *secretsmanager.Options) { o.Credentials = id.Creds }
}

func ssmCreds(id *auth.Identity) func(*ssm.Options) {
	return func(o *ssm.Options) { o.Credentials = id.Creds }
}

func failAll(refs []params.Ref, err error) jobResult {
	return jobResult{errs: []jobError{{refs: refs, err: err}}}
}

func what(r params.Ref) string {
	s := fmt.Sprintf("%q", r.Name)
	if r.Version != "" {
		s += " objectVersion " + r.Version
	}
	if r.Label != "" {
		s += " objectVersionLabel " + r.Label
	}
	return s
}

func secretValue(bin []byte, str *string) []byte {
	if bin != nil {
		return bin
	}
	return []byte(aws.ToString(str))
}

func (f *Fetcher) getSecret(ctx context.Context, client *secretsmanager.Client, id *auth.Identity, r params.Ref) jobResult {
	in := &secretsmanager.GetSecretValueInput{SecretId: aws.String(r.Name)}
	if r.Version != "" {
		in.VersionId = aws.String(r.Version)
	}
	if r.Label != "" {
		in.VersionStage = aws.String(r.Label)
	}
	out, err := client.GetSecretValue(ctx, in, smCreds(id))
	if err != nil {
		return failAll([]params.Ref{r}, awserr.Wrap("secretsmanager GetSecretValue", what(r), err))
	}
	return jobResult{values: map[params.Ref]Value{r: {Data: secretValue(out.SecretBinary, out.SecretString), Version: aws.ToString(out.VersionId)}}}
}

// matchSecret reports whether a returned secret is the one asked for by
// id, which may be a name, a full ARN or a partial ARN (without the six
// random characters Secrets Manager appends).
func matchSecret(id, name, arn string) bool {
	if id == name || id == arn {
		return true
	}
	return strings.HasPrefix(id, "arn:") && len(arn) == len(id)+7 && strings.HasPrefix(arn, id+"-")
}

func (f *Fetcher) batchSecrets(ctx context.Context, client *secretsmanager.Client, id *auth.Identity, refs []params.Ref) jobResult {
	ids := make([]string, len(refs))
	for i, r := range refs {
		ids[i] = r.Name
	}
	res := jobResult{values: map[params.Ref]Value{}}
	in := &secretsmanager.BatchGetSecretValueInput{SecretIdList: ids}
	var entries []smtypes.SecretValueEntry
	var apiErrs []smtypes.APIErrorType
	for page := 0; ; page++ {
		out, err := client.BatchGetSecretValue(ctx, in, smCreds(id))
		if err != nil {
			err = awserr.Wrap("secretsmanager BatchGetSecretValue", fmt.Sprintf("of %d secrets (%s)", len(refs), strings.Join(ids, ", ")), err)
			if errors.Is(err, plugin.ErrPermissionDenied) {
				// Policies written for the upstream provider grant
				// GetSecretValue only: read one by one, and stop trying
				// the batch call for this identity for a while.
				f.batchDenied.Add(id.Key)
				return f.getSecretsOneByOne(ctx, client, id, refs)
			}
			return failAll(refs, err)
		}
		entries = append(entries, out.SecretValues...)
		apiErrs = append(apiErrs, out.Errors...)
		if out.NextToken == nil || page > len(refs) {
			break
		}
		in.NextToken = out.NextToken
	}
	for _, r := range refs {
		found := false
		for _, e := range entries {
			if matchSecret(r.Name, aws.ToString(e.Name), aws.ToString(e.ARN)) {
				res.values[r] = Value{Data: secretValue(e.SecretBinary, e.SecretString), Version: aws.ToString(e.VersionId)}
				found = true
				break
			}
		}
		if found {
			continue
		}
		var err error
		for _, e := range apiErrs {
			if aws.ToString(e.SecretId) == r.Name {
				code := aws.ToString(e.ErrorCode)
				kind := awserr.CodeKind(code)
				if kind == nil {
					kind = plugin.ErrUnavailable
				}
				err = fmt.Errorf("%w: secretsmanager BatchGetSecretValue %s: %s: %s", kind, what(r), code, awserr.Truncate(aws.ToString(e.Message)))
				break
			}
		}
		if err == nil {
			err = fmt.Errorf("%w: secretsmanager BatchGetSecretValue %s: not in the response", plugin.ErrNotFound, what(r))
		}
		res.errs = append(res.errs, jobError{refs: []params.Ref{r}, err: err})
	}
	return res
}

func (f *Fetcher) getSecretsOneByOne(ctx context.Context, client *secretsmanager.Client, id *auth.Identity, refs []params.Ref) jobResult {
	res := jobResult{values: map[params.Ref]Value{}}
	for _, r := range refs {
		one := f.getSecret(ctx, client, id, r)
		for k, v := range one.values {
			res.values[k] = v
		}
		res.errs = append(res.errs, one.errs...)
	}
	return res
}

// selector is the GetParameters name suffix for a pinned version or label.
func selector(r params.Ref) string {
	switch {
	case r.Version != "":
		return ":" + r.Version
	case r.Label != "":
		return ":" + r.Label
	}
	return ""
}

func (f *Fetcher) getParameters(ctx context.Context, client *ssm.Client, id *auth.Identity, refs []params.Ref) jobResult {
	names := make([]string, len(refs))
	for i, r := range refs {
		names[i] = r.Name + selector(r)
	}
	out, err := client.GetParameters(ctx, &ssm.GetParametersInput{Names: names, WithDecryption: aws.Bool(true)}, ssmCreds(id))
	if err != nil {
		return failAll(refs, awserr.Wrap("ssm GetParameters", fmt.Sprintf("of %d parameters (%s)", len(refs), strings.Join(names, ", ")), err))
	}
	res := jobResult{values: map[params.Ref]Value{}}
	invalid := map[string]bool{}
	for _, n := range out.InvalidParameters {
		invalid[n] = true
	}
	for i, r := range refs {
		p, ok := findParameter(out.Parameters, r.Name)
		if !ok || invalid[names[i]] {
			res.errs = append(res.errs, jobError{refs: []params.Ref{r}, err: fmt.Errorf("%w: ssm GetParameters %s: parameter, version or label does not exist", plugin.ErrNotFound, what(r))})
			continue
		}
		res.values[r] = Value{Data: []byte(aws.ToString(p.Value)), Version: strconv.FormatInt(p.Version, 10)}
	}
	return res
}

func findParameter(ps []ssmtypes.Parameter, name string) (ssmtypes.Parameter, bool) {
	for _, p := range ps {
		if aws.ToString(p.Name) == name || aws.ToString(p.ARN) == name {
			return p, true
		}
	}
	return ssmtypes.Parameter{}, false
}
