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
}

// New returns an empty Backend.
func New() *Backend { return &Backend{store: map[string]entry{}} }

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

// Calls returns how many mounts were served.
func (b *Backend) Calls() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls
}

// Mount implements plugin.Backend.
func (b *Backend) Mount(ctx context.Context, req *plugin.Request) (*plugin.Response, error) {
	objs, err := params.ParseObjects(req.Attributes[params.ParamObjects])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", plugin.ErrInvalidParameters, err)
	}
	b.mu.Lock()
	b.calls++
	store := make(map[string]entry, len(objs))
	for _, o := range objs {
		if e, ok := b.store[o.ObjectName]; ok {
			store[o.ObjectName] = e
		}
	}
	b.mu.Unlock()

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
			pi, _ := json.Marshal(map[string]string{"namespace": req.Pod.Namespace, "name": req.Pod.Name, "serviceAccount": req.Pod.ServiceAccount, "uid": req.Pod.UID})
			contents = pi
		}
		resp.Files = append(resp.Files, plugin.File{Path: o.File(), Mode: mode, Contents: contents})
		resp.Versions = append(resp.Versions, plugin.ObjectVersion{ID: o.ObjectName, Version: version})
	}
	return resp, nil
}
