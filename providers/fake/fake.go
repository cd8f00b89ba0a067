// Package fake is an in-memory provider backend for demos and tests. Objects
// come from the SecretProviderClass parameter "objects"; their values can be
// changed at run time through an HTTP admin API to exercise rotation.
package fake

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"sync"

	"sigs.k8s.io/yaml"

	"github.com/sscsi/secrets-store/providers/plugin"
)

// Object sources.
const (
	SourceValue          = ""                             // the object's value
	SourceTokenAudiences = "serviceAccountTokenAudiences" // audiences of tokens received, one a line
	SourceNodeSecret     = "nodePublishSecret"            // one key of the nodePublishSecretRef secret
	SourcePodInfo        = "podInfo"                      // namespace/name/serviceAccount of the pod
)

// Object is one entry of the "objects" parameter.
type Object struct {
	ObjectName     string `json:"objectName"`
	Value          string `json:"value,omitempty"`
	Version        string `json:"version,omitempty"`
	FilePermission string `json:"filePermission,omitempty"`
	Source         string `json:"source,omitempty"`
	Key            string `json:"key,omitempty"`
	// Path places the file at a nested relative path (default objectName).
	Path string `json:"path,omitempty"`
}

// ParseObjects decodes and validates the "objects" parameter.
func ParseObjects(s string) ([]Object, error) {
	var objs []Object
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("%w: parameter objects is empty; list at least one {objectName, value}", plugin.ErrInvalidParameters)
	}
	if err := yaml.UnmarshalStrict([]byte(s), &objs); err != nil {
		return nil, fmt.Errorf("%w: parameter objects is not a YAML list of objects: %v", plugin.ErrInvalidParameters, err)
	}
	seen := map[string]bool{}
	for i, o := range objs {
		if o.ObjectName == "" {
			return nil, fmt.Errorf("%w: objects[%d].objectName is empty", plugin.ErrInvalidParameters, i)
		}
		if seen[o.ObjectName] {
			return nil, fmt.Errorf("%w: objects[%d].objectName %q is listed twice", plugin.ErrInvalidParameters, i, o.ObjectName)
		}
		seen[o.ObjectName] = true
		switch o.Source {
		case SourceValue, SourceTokenAudiences, SourcePodInfo:
		case SourceNodeSecret:
			if o.Key == "" {
				return nil, fmt.Errorf("%w: objects[%d] (%s): source %s needs key", plugin.ErrInvalidParameters, i, o.ObjectName, o.Source)
			}
		default:
			return nil, fmt.Errorf("%w: objects[%d] (%s): unknown source %q", plugin.ErrInvalidParameters, i, o.ObjectName, o.Source)
		}
		if o.FilePermission != "" {
			if _, err := parseMode(o.FilePermission); err != nil {
				return nil, fmt.Errorf("%w: objects[%d] (%s): filePermission: %v", plugin.ErrInvalidParameters, i, o.ObjectName, err)
			}
		}
	}
	return objs, nil
}

func parseMode(s string) (fs.FileMode, error) {
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("%q is not an octal mode between 0000 and 0777", s)
	}
	return fs.FileMode(m), nil
}

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
	objs, err := ParseObjects(req.Attributes["objects"])
	if err != nil {
		return nil, err
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
		if o.FilePermission != "" {
			mode, _ = parseMode(o.FilePermission)
		}
		version := o.Version
		if version == "" {
			version = "1"
		}
		var contents []byte
		switch o.Source {
		case SourceValue:
			contents = []byte(o.Value)
			if e, ok := store[o.ObjectName]; ok {
				contents = e.value
				version = version + "+" + strconv.Itoa(e.version)
			}
		case SourceTokenAudiences:
			auds := make([]string, 0, len(req.Tokens))
			for a := range req.Tokens {
				auds = append(auds, a)
			}
			sort.Strings(auds)
			contents = []byte(strings.Join(auds, "\n"))
		case SourceNodeSecret:
			v, ok := req.Secrets[o.Key]
			if !ok {
				return nil, fmt.Errorf("%w: objects %s: key %q is not in the nodePublishSecretRef secret", plugin.ErrNotFound, o.ObjectName, o.Key)
			}
			contents = []byte(v)
		case SourcePodInfo:
			pi, _ := json.Marshal(map[string]string{"namespace": req.Pod.Namespace, "name": req.Pod.Name, "serviceAccount": req.Pod.ServiceAccount, "uid": req.Pod.UID})
			contents = pi
		}
		p := o.Path
		if p == "" {
			p = o.ObjectName
		}
		resp.Files = append(resp.Files, plugin.File{Path: p, Mode: mode, Contents: contents})
		resp.Versions = append(resp.Versions, plugin.ObjectVersion{ID: o.ObjectName, Version: version})
	}
	return resp, nil
}
