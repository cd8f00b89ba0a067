// Package fake is an in-memory provider backend for demos and tests. Objects
// come from the SecretProviderClass parameter "objects"; their values can be
// changed at run time through an HTTP admin API to exercise rotation.
package fake

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/sscsi/secrets-store/internal/ttlcache"
	"github.com/sscsi/secrets-store/providers/fake/params"
	"github.com/sscsi/secrets-store/providers/plugin"
)

// entry is a value set through the admin API.
type entry struct {
	value   []byte
	version int
}

// Backend is the fake provider. The zero value is not usable; use New.
type Backend struct {
	mu sync.Mutex // guards store and calls
	// store holds values set at run time, keyed by objectName; they
	// override the values in the parameters.
	store map[string]entry
	calls int
	// served counts mounts per object name (tests observe re-fetches);
	// bounded by maxServed names.
	served map[string]*Served
	// parsed keeps the parsed objects of recent "objects" parameters: the
	// pods of one SecretProviderClass send the same string, and parsing
	// its YAML is most of the provider's work per mount (1.2 ms for 100
	// objects). Read-only once stored. See parsedEntries.
	parsed *ttlcache.TTL[string, []params.Object]
}

// Bounds of Backend.parsed: at most parsedEntries parameters of at most
// parsedMaxBytes each (a few MiB in all), kept parsedTTL.
const (
	parsedEntries  = 16
	parsedMaxBytes = 64 << 10
	parsedTTL      = 10 * time.Minute
)

// Served is how often an object was served, and how often the request
// carried a current version for it (a rotation, as opposed to a first mount).
type Served struct {
	Mounts             int `json:"mounts"`
	WithCurrentVersion int `json:"withCurrentVersion"`
}

// maxServed bounds the per-object counters.
const maxServed = 10000

// New returns an empty Backend.
func New() *Backend {
	return &Backend{store: map[string]entry{}, served: map[string]*Served{}, parsed: ttlcache.NewTTL[string, []params.Object](clock.RealClock{}, parsedEntries)}
}

// objects parses the "objects" parameter s, or returns its parse from an
// earlier mount. The slice returned is shared: callers must not change it.
func (b *Backend) objects(s string) ([]params.Object, error) {
	if objs, ok := b.parsed.Get(s); ok {
		return objs, nil
	}
	objs, err := params.ParseObjects(s)
	if err == nil && len(s) <= parsedMaxBytes {
		b.parsed.Put(s, objs, parsedTTL)
	}
	return objs, err
}

var _ plugin.Backend = (*Backend)(nil)

// Set changes an object's value for every pod and bumps its version.
func (b *Backend) Set(name string, value []byte) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.store[name]
	e.value = append([]byte(nil), value...)
	e.version++
	b.store[name] = e
	return e.version
}

// Versions returns the run-time versions by object name.
func (b *Backend) Versions() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]int, len(b.store))
	for k, e := range b.store {
		out[k] = e.version
	}
	return out
}

// ServedCounts returns the per-object counters.
func (b *Backend) ServedCounts() map[string]Served {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]Served, len(b.served))
	for k, v := range b.served {
		out[k] = *v
	}
	return out
}

// Calls returns how many mounts were served.
func (b *Backend) Calls() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls
}

// Mount implements plugin.Backend.
func (b *Backend) Mount(ctx context.Context, req *plugin.Request) (*plugin.Response, error) {
	objs, err := b.objects(req.Attributes[params.ParamObjects])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", plugin.ErrInvalidParameters, err)
	}
	b.mu.Lock()
	b.calls++
	var delay time.Duration
	for _, o := range objs {
		delay = max(delay, o.Wait)
		c, ok := b.served[o.ObjectName]
		if !ok && len(b.served) < maxServed {
			c = &Served{}
			b.served[o.ObjectName] = c
		}
		if c != nil {
			c.Mounts++
			if _, cur := req.CurrentVersions[o.ObjectName]; cur {
				c.WithCurrentVersion++
			}
		}
	}
	store := make(map[string]entry, len(objs))
	for _, o := range objs {
		if e, ok := b.store[o.ObjectName]; ok {
			store[o.ObjectName] = e
		}
	}
	b.mu.Unlock()

	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	resp := &plugin.Response{}
	for _, o := range objs {
		mode := req.Permission
		if o.Mode != 0 {
			mode = o.Mode
		}
		version := o.Version
		if version == "" {
			version = "1"
		}
		var contents []byte
		switch o.Source {
		case params.SourceValue:
			contents = []byte(o.Value)
			if e, ok := store[o.ObjectName]; ok {
				contents = e.value
				version = version + "+" + strconv.Itoa(e.version)
			}
		case params.SourceTokenAudiences:
			auds := make([]string, 0, len(req.Tokens))
			for a := range req.Tokens {
				auds = append(auds, a)
			}
			sort.Strings(auds)
			contents = []byte(strings.Join(auds, "\n"))
		case params.SourceNodeSecret:
			v, ok := req.Secrets[o.Key]
			if !ok {
				return nil, fmt.Errorf("%w: objects %s: key %q is not in the nodePublishSecretRef secret", plugin.ErrNotFound, o.ObjectName, o.Key)
			}
			contents = []byte(v)
		case params.SourcePodInfo:
			info := map[string]string{"namespace": req.Pod.Namespace, "name": req.Pod.Name, "serviceAccount": req.Pod.ServiceAccount, "uid": req.Pod.UID}
			if req.SecretSync.Name != "" || req.SecretSync.UID != "" {
				info["secretSyncName"], info["secretSyncUID"] = req.SecretSync.Name, req.SecretSync.UID
			}
			pi, _ := json.Marshal(info)
			contents = pi
		}
		resp.Files = append(resp.Files, plugin.File{Path: o.File(), Mode: mode, Contents: contents})
		resp.Versions = append(resp.Versions, plugin.ObjectVersion{ID: o.ObjectName, Version: version})
	}
	return resp, nil
}
