package aws

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
	// awsCurrent is the stage BatchGetSecretValue returns.
	awsCurrent = "AWSCURRENT"
)

// job is one backend call: a batch of refs of one type, or one pinned
// Secrets Manager read.
type job struct {
	api  string
	refs []Ref
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
	refs []Ref
	err  error
}

// jobResult is what one job produced.
type jobResult struct {
	values map[Ref]fetchResult
	errs   []jobError
}

// batchable reports whether a Secrets Manager ref can go into
// BatchGetSecretValue, which returns the AWSCURRENT version only (refs
// name that stage with an empty label, see newRef).
func batchable(r Ref) bool {
	return r.Version == "" && r.Label == ""
}

// planJobs groups refs into calls: Secrets Manager current values in
// batches of 20, pinned ones one by one, SSM parameters in batches of 10
// with never two selectors of one name in the same batch (the response
// is matched back by name).
func planJobs(refs []Ref, batchSecrets bool) []job {
	var jobs []job
	var sm []Ref
	var ssmBatches [][]Ref
	for _, r := range refs {
		switch {
		case r.Type == TypeSecretsManager && batchable(r) && batchSecrets:
			sm = append(sm, r)
		case r.Type == TypeSecretsManager:
			jobs = append(jobs, job{api: "GetSecretValue", refs: []Ref{r}})
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
				ssmBatches = append(ssmBatches, []Ref{r})
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

func hasName(refs []Ref, name string) bool {
	for _, r := range refs {
		if r.Name == name {
			return true
		}
	}
	return false
}

// fetchAll reads every object of p with identity id. Results are aligned
// with p.Objects. Any failure fails the whole mount: a partial file set is
// never returned.
func (b *Backend) fetchAll(ctx context.Context, id *identity, p *Params) ([]fetchResult, error) {
	byRef := map[Ref][]int{}
	var refs []Ref
	for i, o := range p.Objects {
		r := o.Ref()
		if _, ok := byRef[r]; !ok {
			refs = append(refs, r)
		}
		byRef[r] = append(byRef[r], i)
	}
	out := make([]fetchResult, len(p.Objects))
	got, failed := b.fetchRegion(ctx, id, p.Region, refs)
	for r, v := range got {
		for _, i := range byRef[r] {
			out[i] = v
		}
	}
	var fatal, primaryErr error
	var failover []int
	for _, je := range failed {
		if p.FailoverRegion == "" || !failoverEligible(je.err) {
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
	fByRef := map[Ref][]int{}
	var frefs []Ref
	for _, i := range failover {
		r := p.Objects[i].FailoverRef()
		if _, ok := fByRef[r]; !ok {
			frefs = append(frefs, r)
		}
		fByRef[r] = append(fByRef[r], i)
	}
	fgot, ffailed := b.fetchRegion(ctx, id, p.FailoverRegion, frefs)
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
func (b *Backend) fetchRegion(ctx context.Context, id *identity, region string, refs []Ref) (map[Ref]fetchResult, []jobError) {
	got := map[Ref]fetchResult{}
	var miss []Ref
	for _, r := range refs {
		if v, ok := b.values.get(valueKey{identity: id.key, region: region, ref: r}); ok {
			got[r] = v
			continue
		}
		miss = append(miss, r)
	}
	if len(miss) == 0 {
		return got, nil
	}
	jobs := planJobs(miss, !b.batchDenied.has(id.key))
	results := make([]jobResult, len(jobs))
	sem := make(chan struct{}, maxConcurrentCalls)
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			ch := b.flights.DoChan(id.key+"\x01"+region+"\x01"+j.key(), func() (any, error) {
				// The call is shared: one caller giving up must not fail
				// the others, so it runs on its own deadline.
				sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sharedCallTimeout)
				defer cancel()
				res := b.runJob(sctx, id, region, j)
				for r, v := range res.values {
					b.values.put(valueKey{identity: id.key, region: region, ref: r}, v)
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
		if errors.Is(je.err, plugin.ErrUnauthenticated) {
			// The credentials were rejected: get new ones next time.
			b.creds.forget(id.key)
			b.values.forgetIdentity(id.key)
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

func (b *Backend) runJob(ctx context.Context, id *identity, region string, j job) jobResult {
	c := b.clientsFor(region)
	switch j.api {
	case "BatchGetSecretValue":
		return b.batchSecrets(ctx, c.sm, id, j.refs)
	case "GetSecretValue":
		return b.getSecret(ctx, c.sm, id, j.refs[0])
	default:
		return b.getParameters(ctx, c.ssm, id, j.refs)
	}
}

func smCreds(id *identity) func(*secretsmanager.Options) {
	return func(o *secretsmanager.Options) { o.Credentials = id.creds }
}

func ssmCreds(id *identity) func(*ssm.Options) {
	return func(o *ssm.Options) { o.Credentials = id.creds }
}

func failAll(refs []Ref, err error) jobResult {
	return jobResult{errs: []jobError{{refs: refs, err: err}}}
}

func what(r Ref) string {
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

func (b *Backend) getSecret(ctx context.Context, client *secretsmanager.Client, id *identity, r Ref) jobResult {
	in := &secretsmanager.GetSecretValueInput{SecretId: aws.String(r.Name)}
	if r.Version != "" {
		in.VersionId = aws.String(r.Version)
	}
	if r.Label != "" {
		in.VersionStage = aws.String(r.Label)
	}
	out, err := client.GetSecretValue(ctx, in, smCreds(id))
	if err != nil {
		return failAll([]Ref{r}, apiError("secretsmanager GetSecretValue", what(r), err))
	}
	return jobResult{values: map[Ref]fetchResult{r: {value: secretValue(out.SecretBinary, out.SecretString), version: aws.ToString(out.VersionId)}}}
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

func (b *Backend) batchSecrets(ctx context.Context, client *secretsmanager.Client, id *identity, refs []Ref) jobResult {
	ids := make([]string, len(refs))
	for i, r := range refs {
		ids[i] = r.Name
	}
	res := jobResult{values: map[Ref]fetchResult{}}
	in := &secretsmanager.BatchGetSecretValueInput{SecretIdList: ids}
	var entries []smtypes.SecretValueEntry
	var apiErrs []smtypes.APIErrorType
	for page := 0; ; page++ {
		out, err := client.BatchGetSecretValue(ctx, in, smCreds(id))
		if err != nil {
			err = apiError("secretsmanager BatchGetSecretValue", fmt.Sprintf("of %d secrets (%s)", len(refs), strings.Join(ids, ", ")), err)
			if errors.Is(err, plugin.ErrPermissionDenied) {
				// Policies written for the upstream provider grant
				// GetSecretValue only: read one by one, and stop trying
				// the batch call for this identity for a while.
				b.batchDenied.add(id.key)
				return b.getSecretsOneByOne(ctx, client, id, refs)
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
				res.values[r] = fetchResult{value: secretValue(e.SecretBinary, e.SecretString), version: aws.ToString(e.VersionId)}
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
				kind := codeKind(code)
				if kind == nil {
					kind = plugin.ErrUnavailable
				}
				err = fmt.Errorf("%w: secretsmanager BatchGetSecretValue %s: %s: %s", kind, what(r), code, truncate(aws.ToString(e.Message)))
				break
			}
		}
		if err == nil {
			err = fmt.Errorf("%w: secretsmanager BatchGetSecretValue %s: not in the response", plugin.ErrNotFound, what(r))
		}
		res.errs = append(res.errs, jobError{refs: []Ref{r}, err: err})
	}
	return res
}

func (b *Backend) getSecretsOneByOne(ctx context.Context, client *secretsmanager.Client, id *identity, refs []Ref) jobResult {
	res := jobResult{values: map[Ref]fetchResult{}}
	for _, r := range refs {
		one := b.getSecret(ctx, client, id, r)
		for k, v := range one.values {
			res.values[k] = v
		}
		res.errs = append(res.errs, one.errs...)
	}
	return res
}

func truncate(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// selector is the GetParameters name suffix for a pinned version or label.
func selector(r Ref) string {
	switch {
	case r.Version != "":
		return ":" + r.Version
	case r.Label != "":
		return ":" + r.Label
	}
	return ""
}

func (b *Backend) getParameters(ctx context.Context, client *ssm.Client, id *identity, refs []Ref) jobResult {
	names := make([]string, len(refs))
	for i, r := range refs {
		names[i] = r.Name + selector(r)
	}
	out, err := client.GetParameters(ctx, &ssm.GetParametersInput{Names: names, WithDecryption: aws.Bool(true)}, ssmCreds(id))
	if err != nil {
		return failAll(refs, apiError("ssm GetParameters", fmt.Sprintf("of %d parameters (%s)", len(refs), strings.Join(names, ", ")), err))
	}
	res := jobResult{values: map[Ref]fetchResult{}}
	invalid := map[string]bool{}
	for _, n := range out.InvalidParameters {
		invalid[n] = true
	}
	for i, r := range refs {
		p, ok := findParameter(out.Parameters, r.Name)
		if !ok || invalid[names[i]] {
			res.errs = append(res.errs, jobError{refs: []Ref{r}, err: fmt.Errorf("%w: ssm GetParameters %s: parameter, version or label does not exist", plugin.ErrNotFound, what(r))})
			continue
		}
		res.values[r] = fetchResult{value: []byte(aws.ToString(p.Value)), version: strconv.FormatInt(p.Version, 10)}
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
