// Package params parses and validates the fake provider's
// SecretProviderClass parameters. It is a leaf (no gRPC), so offline tools
// link it cheaply; errors are *Error values that the provider maps to
// InvalidArgument at its boundary.
package params

import (
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/sscsi/secrets-store/internal/atomicfs"
	"github.com/sscsi/secrets-store/internal/spcparams"
)

// ParamObjects is the only parameter the fake provider reads.
const ParamObjects = "objects"

// Error is a parameter mistake the SecretProviderClass author must fix;
// Param names the spec.parameters key at fault (always objects here).
type Error = spcparams.Error

func invalid(format string, args ...any) error {
	return spcparams.Errorf(ParamObjects, format, args...)
}

// Object sources.
const (
	SourceValue          = ""                             // the object's value
	SourceTokenAudiences = "serviceAccountTokenAudiences" // audiences of tokens received, one a line
	SourceNodeSecret     = "nodePublishSecret"            //nolint:gosec // G101: a source name; one key of the nodePublishSecretRef secret
	SourcePodInfo        = "podInfo"                      // namespace/name/serviceAccount/uid of the pod (JSON; plus secretSyncName/UID from a SecretSync controller)
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
	// Delay makes the mount answer this much later (a Go duration up to
	// MaxDelay), to test what happens while a provider call is in flight.
	Delay string `json:"delay,omitempty"`
	// Mode is FilePermission parsed (0: the mount's default).
	Mode fs.FileMode `json:"-"`
	// Wait is Delay parsed.
	Wait time.Duration `json:"-"`
}

// MaxDelay bounds Object.Delay.
const MaxDelay = 30 * time.Second

// File is the object's path in the volume: Path, else ObjectName.
func (o Object) File() string {
	if o.Path != "" {
		return o.Path
	}
	return o.ObjectName
}

// ParseObjects decodes and validates the "objects" parameter.
func ParseObjects(s string) ([]Object, error) {
	var objs []Object
	if strings.TrimSpace(s) == "" {
		return nil, invalid("parameter objects is empty; list at least one {objectName, value}")
	}
	if err := yaml.UnmarshalStrict([]byte(s), &objs); err != nil {
		return nil, invalid("parameter objects is not a YAML list of objects: %v", err)
	}
	seen := map[string]bool{}
	files, dirs := map[string]int{}, map[string]int{} // path -> index of the object that made it
	for i, o := range objs {
		if o.ObjectName == "" {
			return nil, invalid("objects[%d].objectName is empty", i)
		}
		if seen[o.ObjectName] {
			return nil, invalid("objects[%d].objectName %q is listed twice", i, o.ObjectName)
		}
		seen[o.ObjectName] = true
		f := o.File()
		if err := atomicfs.ValidatePath(f); err != nil {
			return nil, invalid("objects[%d] (%s): path %q is not a usable file name: %v", i, o.ObjectName, f, err)
		}
		if err := collides(i, f, files, dirs); err != nil {
			return nil, err
		}
		switch o.Source {
		case SourceValue, SourceTokenAudiences, SourcePodInfo:
		case SourceNodeSecret:
			if o.Key == "" {
				return nil, invalid("objects[%d] (%s): source %s needs key", i, o.ObjectName, o.Source)
			}
		default:
			return nil, invalid("objects[%d] (%s): unknown source %q", i, o.ObjectName, o.Source)
		}
		if o.Delay != "" {
			d, err := time.ParseDuration(o.Delay)
			if err != nil || d < 0 || d > MaxDelay {
				return nil, invalid("objects[%d] (%s): delay %q is not a duration between 0s and %s", i, o.ObjectName, o.Delay, MaxDelay)
			}
			objs[i].Wait = d
		}
		if o.FilePermission != "" {
			m, err := parseMode(o.FilePermission)
			if err != nil {
				return nil, invalid("objects[%d] (%s): filePermission: %v", i, o.ObjectName, err)
			}
			objs[i].Mode = m
		}
	}
	return objs, nil
}

// collides refuses a file of object i that another object already writes,
// that is another's directory, or whose directory is another's file; it
// records f otherwise.
func collides(i int, f string, files, dirs map[string]int) error {
	if j, ok := files[f]; ok {
		return invalid("objects[%d]: file %q is also written by objects[%d]; set a distinct path", i, f, j)
	}
	if j, ok := dirs[f]; ok {
		return invalid("objects[%d]: file %q is a directory of objects[%d]'s path; set a distinct path", i, f, j)
	}
	for d := path.Dir(f); d != "."; d = path.Dir(d) {
		if j, ok := files[d]; ok {
			return invalid("objects[%d]: path %q needs directory %q, which is objects[%d]'s file; set a distinct path", i, f, d, j)
		}
	}
	files[f] = i
	for d := path.Dir(f); d != "."; d = path.Dir(d) {
		dirs[d] = i
	}
	return nil
}

func parseMode(s string) (fs.FileMode, error) {
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("%q is not an octal mode between 0000 and 0777", s)
	}
	return fs.FileMode(m), nil
}
