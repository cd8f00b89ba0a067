// Package params parses and validates the AWS provider's
// SecretProviderClass parameters (spec.parameters): regions, identity
// options and the objects list with its aliases, jmesPath entries,
// templates and failover objects. It is a leaf: no AWS SDK, no gRPC, so
// that offline tools (sscsi lint) link it cheaply. Every error is an
// *Error naming the parameter at fault; the provider maps it to
// InvalidArgument at its boundary.
package params

import (
	"fmt"
	"io/fs"
	"regexp"
	"strconv"
	"strings"

	"github.com/jmespath/go-jmespath"
	"go.yaml.in/yaml/v3"

	"github.com/sscsi/secrets-store/internal/atomicfs"
	"github.com/sscsi/secrets-store/internal/objtemplate"
	"github.com/sscsi/secrets-store/internal/spcparams"
)

// SecretProviderClass parameter names (spec.parameters).
const (
	ParamObjects              = "objects"
	ParamRegion               = "region"
	ParamFailoverRegion       = "failoverRegion"
	ParamPathTranslation      = "pathTranslation"
	ParamUsePodIdentity       = "usePodIdentity"
	ParamPreferredAddressType = "preferredAddressType"
)

// Error is a parameter mistake the SecretProviderClass author must fix;
// Param names the spec.parameters key at fault (objects, region, ...).
type Error = spcparams.Error

func invalid(param, format string, args ...any) error {
	return spcparams.Errorf(param, format, args...)
}

// StageCurrent is the Secrets Manager stage of a secret's latest value.
const StageCurrent = "AWSCURRENT"

// MaxObjects bounds the objects of one SecretProviderClass.
const MaxObjects = 500

// ObjectType is the backend service of an object.
type ObjectType string

// Object types, as spelled in the objects parameter.
const (
	TypeSecretsManager ObjectType = "secretsmanager"
	TypeSSMParameter   ObjectType = "ssmparameter"
)

// Address types for the Pod Identity agent endpoint.
const (
	AddressAuto = "auto"
	AddressIPv4 = "ipv4"
	AddressIPv6 = "ipv6"
)

// JMESPathEntry extracts one value of a JSON object into its own file.
type JMESPathEntry struct {
	Path           string `yaml:"path"`
	ObjectAlias    string `yaml:"objectAlias"`
	FilePermission string `yaml:"filePermission"`
}

// FailoverObject names the object to read in the failover region when it
// differs from the primary one.
type FailoverObject struct {
	ObjectName         string `yaml:"objectName"`
	ObjectVersion      string `yaml:"objectVersion"`
	ObjectVersionLabel string `yaml:"objectVersionLabel"`
}

// Object is one entry of the objects parameter, as the user wrote it.
type Object struct {
	ObjectName         string          `yaml:"objectName"`
	ObjectType         string          `yaml:"objectType"`
	ObjectAlias        string          `yaml:"objectAlias"`
	ObjectVersion      string          `yaml:"objectVersion"`
	ObjectVersionLabel string          `yaml:"objectVersionLabel"`
	FilePermission     string          `yaml:"filePermission"`
	JMESPath           []JMESPathEntry `yaml:"jmesPath"`
	FailoverObject     *FailoverObject `yaml:"failoverObject"`
	ObjectTemplate     string          `yaml:"objectTemplate"`
}

// Params is the validated form of a mount's parameters.
type Params struct {
	Region               string
	FailoverRegion       string
	UsePodIdentity       bool
	PreferredAddressType string
	Objects              []ObjectSpec
}

// ObjectSpec is a validated object with everything derived from it.
type ObjectSpec struct {
	Object
	// Type is the object's service (given or implied by an ARN).
	Type ObjectType
	// FileName is the relative path of the object's own file.
	FileName string
	// Mode is the file mode; 0 means the mount's default.
	Mode fs.FileMode
	// JMESPaths are the compiled extractions.
	JMESPaths []JMESPathSpec
	// Template is the compiled objectTemplate (bounded cost), or nil.
	Template *objtemplate.Template
}

// JMESPathSpec is a compiled jmesPath entry.
type JMESPathSpec struct {
	Expr     string
	Compiled *jmespath.JMESPath
	FileName string
	Mode     fs.FileMode
}

// Ref identifies what to read for an object in one region.
type Ref struct {
	Type    ObjectType
	Name    string
	Version string
	Label   string
}

// Pinned reports whether the reference names an immutable version.
func (r Ref) Pinned() bool { return r.Version != "" }

// Ref returns what to read in the primary region.
func (o ObjectSpec) Ref() Ref {
	return newRef(o.Type, o.ObjectName, o.ObjectVersion, o.ObjectVersionLabel)
}

// FailoverRef returns what to read in the failover region.
func (o ObjectSpec) FailoverRef() Ref {
	if o.FailoverObject == nil {
		return o.Ref()
	}
	return newRef(o.Type, o.FailoverObject.ObjectName, o.FailoverObject.ObjectVersion, o.FailoverObject.ObjectVersionLabel)
}

// newRef normalizes a reference: a secret's AWSCURRENT stage is its
// latest value, so both spellings read (and cache) one object.
func newRef(t ObjectType, name, version, label string) Ref {
	if t == TypeSecretsManager && version == "" && label == StageCurrent {
		label = ""
	}
	return Ref{Type: t, Name: name, Version: version, Label: label}
}

// ParseParams validates the parameters of one mount. defaultRegion is used
// when the region parameter is empty. Errors are *Error values that
// name the parameter (and object) at fault.
func ParseParams(attrs map[string]string, defaultRegion string) (*Params, error) {
	p := &Params{Region: strings.TrimSpace(attrs[ParamRegion]), FailoverRegion: strings.TrimSpace(attrs[ParamFailoverRegion])}
	if p.Region == "" {
		p.Region = defaultRegion
	}
	if p.Region == "" {
		return nil, invalid(ParamRegion, "parameter region is empty and the provider has no default region; set spec.parameters.region")
	}
	if !ValidRegion(p.Region) {
		return nil, invalid(ParamRegion, "parameter region %q is not a region name like us-east-1", p.Region)
	}
	if p.FailoverRegion != "" {
		if !ValidRegion(p.FailoverRegion) {
			return nil, invalid(ParamFailoverRegion, "parameter failoverRegion %q is not a region name like us-west-2", p.FailoverRegion)
		}
		if p.FailoverRegion == p.Region {
			return nil, invalid(ParamFailoverRegion, "parameter failoverRegion %q is the same as region; remove it or pick another region", p.FailoverRegion)
		}
	}
	if v := strings.TrimSpace(attrs[ParamUsePodIdentity]); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, invalid(ParamUsePodIdentity, "parameter usePodIdentity %q is not true or false", v)
		}
		p.UsePodIdentity = b
	}
	switch v := strings.ToLower(strings.TrimSpace(attrs[ParamPreferredAddressType])); v {
	case "", AddressAuto:
		p.PreferredAddressType = AddressAuto
	case AddressIPv4, AddressIPv6:
		p.PreferredAddressType = v
	default:
		return nil, invalid(ParamPreferredAddressType, "parameter preferredAddressType %q must be ipv4, ipv6 or auto", attrs[ParamPreferredAddressType])
	}
	objs, err := ParseObjects(attrs[ParamObjects], attrs[ParamPathTranslation])
	if err != nil {
		return nil, err
	}
	for i := range objs {
		if err := checkRegions(i, &objs[i], p); err != nil {
			return nil, err
		}
	}
	p.Objects = objs
	return p, nil
}

// ValidRegion accepts names like us-east-1, eu-central-2, us-gov-west-1,
// cn-north-1 and emulator names; it rejects anything that could change an
// endpoint's host name in surprising ways.
func ValidRegion(r string) bool {
	if len(r) > 32 {
		return false
	}
	for _, c := range r {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return r != "" && r[0] != '-' && r[len(r)-1] != '-'
}

// translation is the character that replaces '/' in default file
// names; 0 means no translation.
type translation rune

func parsePathTranslation(v string) (translation, error) {
	switch {
	case v == "" || strings.EqualFold(v, "true"):
		return '_', nil
	case strings.EqualFold(v, "false"):
		return 0, nil
	}
	r := []rune(v)
	if len(r) != 1 || r[0] == 0 || r[0] == '.' {
		return 0, invalid(ParamPathTranslation, "parameter pathTranslation %q must be False or a single character other than '.'", v)
	}
	return translation(r[0]), nil
}

func (t translation) apply(name string) string {
	if t == 0 {
		return name
	}
	return strings.ReplaceAll(name, "/", string(rune(t)))
}

// arnInfo is what an ARN says about an object.
type arnInfo struct {
	typ    ObjectType
	region string
}

// parseARN returns ok=false when name is not an ARN.
func parseARN(name string) (arnInfo, bool, error) {
	if !strings.HasPrefix(name, "arn:") {
		return arnInfo{}, false, nil
	}
	parts := strings.SplitN(name, ":", 6)
	if len(parts) != 6 || parts[1] == "" || parts[5] == "" {
		return arnInfo{}, true, fmt.Errorf("is not an ARN of the form arn:partition:service:region:account:resource")
	}
	info := arnInfo{region: parts[3]}
	switch parts[2] {
	case "secretsmanager":
		if !strings.HasPrefix(parts[5], "secret:") {
			return info, true, fmt.Errorf("is a Secrets Manager ARN without a secret: resource")
		}
		info.typ = TypeSecretsManager
	case "ssm":
		if !strings.HasPrefix(parts[5], "parameter/") {
			return info, true, fmt.Errorf("is an SSM ARN without a parameter/ resource")
		}
		info.typ = TypeSSMParameter
	default:
		return info, true, fmt.Errorf("is an ARN of service %q; only secretsmanager and ssm are supported", parts[2])
	}
	return info, true, nil
}

// ParseObjects decodes and validates the objects parameter with the
// pathTranslation parameter. It checks everything that does not depend on
// the regions (see ParseParams).
func ParseObjects(s, pathTranslation string) ([]ObjectSpec, error) {
	tr, err := parsePathTranslation(pathTranslation)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(s) == "" {
		return nil, invalid(ParamObjects, "parameter objects is empty; list at least one {objectName, objectType}")
	}
	var raw []Object
	if err := yaml.Unmarshal([]byte(s), &raw); err != nil {
		return nil, invalid(ParamObjects, "parameter objects is not a YAML list of objects: %s", yamlErrorText(err))
	}
	if len(raw) == 0 {
		return nil, invalid(ParamObjects, "parameter objects lists no object")
	}
	if len(raw) > MaxObjects {
		return nil, invalid(ParamObjects, "parameter objects lists %d objects; at most %d are allowed", len(raw), MaxObjects)
	}
	out := make([]ObjectSpec, 0, len(raw))
	files := map[string]string{} // file name -> what produced it
	claim := func(file, by string) error {
		if prev, ok := files[file]; ok {
			return invalid(ParamObjects, "%s: file name %q is already used by %s; set a distinct objectAlias", by, file, prev)
		}
		files[file] = by
		return nil
	}
	for i, o := range raw {
		spec, err := validateObject(i, o, tr)
		if err != nil {
			return nil, err
		}
		where := objectRef(i, o.ObjectName)
		if err := claim(spec.FileName, where); err != nil {
			return nil, err
		}
		for j, jp := range spec.JMESPaths {
			if err := claim(jp.FileName, fmt.Sprintf("%s jmesPath[%d]", where, j)); err != nil {
				return nil, err
			}
		}
		out = append(out, spec)
	}
	// A file that is also another file's directory cannot be written.
	for f, by := range files {
		for d := dirOf(f); d != ""; d = dirOf(d) {
			if other, ok := files[d]; ok {
				return nil, invalid(ParamObjects, "%s: file name %q is a directory of %q from %s", other, d, f, by)
			}
		}
	}
	return out, nil
}

func dirOf(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ""
	}
	return p[:i]
}

// Where names object i in messages: objects[i] (objectName).
func (o ObjectSpec) Where(i int) string { return objectRef(i, o.ObjectName) }

func objectRef(i int, name string) string {
	if name == "" {
		return fmt.Sprintf("objects[%d]", i)
	}
	return fmt.Sprintf("objects[%d] (%s)", i, name)
}

// backquoted matches the input excerpts yaml errors quote.
var backquoted = regexp.MustCompile("`[^`]*`")

// yamlErrorText keeps a YAML error's position and reason but drops the
// input it quotes, which may be a secret pasted by mistake.
func yamlErrorText(err error) string {
	msg := backquoted.ReplaceAllString(err.Error(), "`...`")
	msg = strings.ReplaceAll(strings.TrimPrefix(msg, "yaml: "), "\n", " ")
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	return msg
}

// objectError builds errors about one object's field.
type objectError string

func (where objectError) bad(field, format string, args ...any) error {
	return invalid(ParamObjects, "%s: %s %s", string(where), field, fmt.Sprintf(format, args...))
}

// validateObject checks one entry of the objects list and derives its
// type, file name, mode, jmesPath files, template and failover.
func validateObject(i int, o Object, tr translation) (ObjectSpec, error) {
	where := objectError(objectRef(i, o.ObjectName))
	spec := ObjectSpec{Object: o}
	var err error
	if spec.Type, err = objectType(where, o); err != nil {
		return spec, err
	}
	if ferr := checkVersion(spec.Type, o.ObjectVersion, o.ObjectVersionLabel); ferr != nil {
		return spec, where.bad(ferr.field, "%s", ferr.msg)
	}
	if spec.FileName, err = fileName(where, o, tr); err != nil {
		return spec, err
	}
	if spec.Mode, err = parseMode(o.FilePermission); err != nil {
		return spec, where.bad("filePermission", "%v", err)
	}
	if spec.JMESPaths, err = jmesPaths(where, o.JMESPath, spec.Mode); err != nil {
		return spec, err
	}
	if o.ObjectTemplate != "" {
		t, err := objtemplate.Parse(spec.FileName, o.ObjectTemplate)
		if err != nil {
			return spec, where.bad("objectTemplate", "%v", err)
		}
		spec.Template = t
	}
	if err := checkFailover(where, o, spec.Type); err != nil {
		return spec, err
	}
	return spec, nil
}

// objectType checks objectName and returns the object's type, given or
// implied by an ARN.
func objectType(where objectError, o Object) (ObjectType, error) {
	if strings.TrimSpace(o.ObjectName) == "" || o.ObjectName != strings.TrimSpace(o.ObjectName) {
		return "", where.bad("objectName", "is empty or has surrounding spaces")
	}
	if strings.ContainsAny(o.ObjectName, "\x00\n\r") {
		return "", where.bad("objectName", "contains a control character")
	}
	info, isARN, err := parseARN(o.ObjectName)
	if err != nil {
		return "", where.bad("objectName", "%v", err)
	}
	switch t := ObjectType(o.ObjectType); t {
	case TypeSecretsManager, TypeSSMParameter:
		if isARN && info.typ != t {
			return "", where.bad("objectType", "%q does not match the ARN's service (%s)", o.ObjectType, info.typ)
		}
		return t, nil
	case "":
		if !isARN {
			return "", where.bad("objectType", "is empty; use secretsmanager or ssmparameter (only an ARN implies it)")
		}
		return info.typ, nil
	default:
		return "", where.bad("objectType", "%q is not secretsmanager or ssmparameter", o.ObjectType)
	}
}

// fileName is the object's own file: its alias, else its translated name.
func fileName(where objectError, o Object, tr translation) (string, error) {
	if o.ObjectAlias != "" {
		if err := atomicfs.ValidatePath(o.ObjectAlias); err != nil {
			return "", where.bad("objectAlias", "is not a usable file name: %v", err)
		}
		return o.ObjectAlias, nil
	}
	name := tr.apply(o.ObjectName)
	if err := atomicfs.ValidatePath(name); err != nil {
		return "", where.bad("objectName", "does not make a usable file name (set objectAlias or pathTranslation): %v", err)
	}
	return name, nil
}

// jmesPaths compiles the jmesPath entries; an entry without a mode gets
// the object's.
func jmesPaths(where objectError, entries []JMESPathEntry, objectMode fs.FileMode) ([]JMESPathSpec, error) {
	var out []JMESPathSpec
	for j, e := range entries {
		jw := fmt.Sprintf("jmesPath[%d]", j)
		if strings.TrimSpace(e.Path) == "" {
			return nil, where.bad(jw+".path", "is empty")
		}
		c, err := CompileJMESPath(e.Path)
		if err != nil {
			return nil, where.bad(jw+".path", "%v", err)
		}
		if e.ObjectAlias == "" {
			return nil, where.bad(jw+".objectAlias", "is empty; every jmesPath entry needs the file name to write")
		}
		if err := atomicfs.ValidatePath(e.ObjectAlias); err != nil {
			return nil, where.bad(jw+".objectAlias", "is not a usable file name: %v", err)
		}
		m, err := parseMode(e.FilePermission)
		if err != nil {
			return nil, where.bad(jw+".filePermission", "%v", err)
		}
		if m == 0 {
			m = objectMode
		}
		out = append(out, JMESPathSpec{Expr: e.Path, Compiled: c, FileName: e.ObjectAlias, Mode: m})
	}
	return out, nil
}

// checkFailover checks failoverObject against the object (the regions are
// checked by ParseParams).
func checkFailover(where objectError, o Object, t ObjectType) error {
	f := o.FailoverObject
	if f == nil {
		return nil
	}
	if strings.TrimSpace(f.ObjectName) == "" {
		return where.bad("failoverObject.objectName", "is empty")
	}
	if o.ObjectAlias == "" {
		return where.bad("objectAlias", "is required when failoverObject is set (the names differ per region)")
	}
	fi, fARN, err := parseARN(f.ObjectName)
	if err != nil {
		return where.bad("failoverObject.objectName", "%v", err)
	}
	if fARN && fi.typ != t {
		return where.bad("failoverObject.objectName", "is an ARN of type %s but the object is %s", fi.typ, t)
	}
	if f.ObjectVersion != "" && f.ObjectVersion != o.ObjectVersion {
		return where.bad("failoverObject.objectVersion", "must equal objectVersion when set")
	}
	if ferr := checkVersion(t, f.ObjectVersion, f.ObjectVersionLabel); ferr != nil {
		return where.bad("failoverObject."+ferr.field, "%s", ferr.msg)
	}
	return nil
}

type fieldError struct{ field, msg string }

func checkVersion(t ObjectType, version, label string) *fieldError {
	if strings.ContainsAny(version+label, ":\x00\n") && t == TypeSSMParameter {
		return &fieldError{"objectVersion", "and objectVersionLabel must not contain ':'"}
	}
	if t == TypeSSMParameter {
		if version != "" && label != "" {
			return &fieldError{"objectVersionLabel", "cannot be combined with objectVersion for an SSM parameter; set one of them"}
		}
		if version != "" {
			if n, err := strconv.ParseUint(version, 10, 63); err != nil || n == 0 {
				return &fieldError{"objectVersion", fmt.Sprintf("%q is not an SSM parameter version number (1, 2, ...)", version)}
			}
		}
	}
	if len(version) > 256 || len(label) > 256 {
		return &fieldError{"objectVersion", "or objectVersionLabel is longer than 256 characters"}
	}
	return nil
}

// parseMode parses an octal file mode such as "0600"; "" gives 0.
func parseMode(s string) (fs.FileMode, error) {
	if s == "" {
		return 0, nil
	}
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("%q is not an octal mode between 0000 and 0777", s)
	}
	return fs.FileMode(m), nil
}

// checkRegions verifies ARN regions against the mount's regions.
func checkRegions(i int, o *ObjectSpec, p *Params) error {
	where := objectRef(i, o.ObjectName)
	if info, ok, _ := parseARN(o.ObjectName); ok && info.region != "" && info.region != p.Region {
		return invalid(ParamObjects, "%s: objectName is an ARN in region %s but parameter region is %s", where, info.region, p.Region)
	}
	if f := o.FailoverObject; f != nil {
		if p.FailoverRegion == "" {
			return invalid(ParamFailoverRegion, "%s: failoverObject is set but parameter failoverRegion is empty", where)
		}
		if info, ok, _ := parseARN(f.ObjectName); ok && info.region != "" && info.region != p.FailoverRegion {
			return invalid(ParamObjects, "%s: failoverObject.objectName is an ARN in region %s but parameter failoverRegion is %s", where, info.region, p.FailoverRegion)
		}
	}
	return nil
}
