// Package params parses and validates the SecretProviderClass parameters
// of provider-vault: the connection settings and the objects list, in the
// shape hashicorp/vault-csi-provider v1.7 accepts, plus this provider's
// extensions. It is a leaf (no Vault, network or gRPC code), so sscsi lint
// links it cheaply. Every error is an *Error that names the parameter (and
// object) at fault and never quotes a value that could be secret; the
// backend reports it as InvalidArgument.
package params

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"path"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/sscsi/secrets-store/internal/atomicfs"
	"github.com/sscsi/secrets-store/internal/spcparams"
)

// SecretProviderClass parameter names (spec.parameters), as
// vault-csi-provider spells them.
const (
	ParamRoleName            = "roleName"
	ParamVaultAddress        = "vaultAddress"
	ParamVaultNamespace      = "vaultNamespace"
	ParamKubernetesMountPath = "vaultKubernetesMountPath"
	ParamAuthMountPath       = "vaultAuthMountPath"
	ParamAudience            = "audience"
	ParamCACertPath          = "vaultCACertPath"
	ParamCADirectory         = "vaultCADirectory"
	ParamTLSServerName       = "vaultTLSServerName"
	ParamTLSClientCertPath   = "vaultTLSClientCertPath"
	ParamTLSClientKeyPath    = "vaultTLSClientKeyPath"
	ParamSkipTLSVerify       = "vaultSkipTLSVerify"
	ParamObjects             = "objects"
	DefaultAuthMount         = "kubernetes"
	DefaultAudience          = "vault"
	DefaultAddress           = "https://127.0.0.1:8200"
	// DefaultTLSFileDir is the default of provider flag -spc-tls-dir: the
	// directory where vault-csi-provider's documentation mounts Vault's
	// TLS files, so that its SecretProviderClasses keep working.
	DefaultTLSFileDir         = "/vault/tls"
	versionQuery              = "version"
	maxNameLength             = 512
	maxSecretPathLength       = 1024
	maxArgsBytes              = 64 << 10
	maxAuthMountLength        = 256
	maxVaultNamespaceLength   = 256
	maxRoleNameLength         = 256
	maxAudienceLength         = 256
	maxFilesystemPathLength   = 4096
	defaultMethod             = "GET"
	encodingUTF8              = "utf-8"
	encodingBase64            = "base64"
	encodingHex               = "hex"
	allKeysDirectorySeparator = "/"
)

// Bounds of what one SecretProviderClass may ask for.
const (
	// MaxObjects bounds the objects of one SecretProviderClass.
	MaxObjects = 500
	// MaxObjectsBytes bounds the objects parameter's YAML.
	MaxObjectsBytes = 256 << 10
)

// Encoding is how a secret value is stored in Vault; the file holds the
// decoded bytes.
type Encoding string

// Encodings accepted by the encoding field.
const (
	EncodingUTF8   Encoding = encodingUTF8
	EncodingBase64 Encoding = encodingBase64
	EncodingHex    Encoding = encodingHex
)

// Object is one entry of the objects parameter, as the user wrote it.
type Object struct {
	ObjectName     string         `yaml:"objectName"`
	SecretPath     string         `yaml:"secretPath"`
	SecretKey      string         `yaml:"secretKey"`
	SecretArgs     map[string]any `yaml:"secretArgs"`
	Method         string         `yaml:"method"`
	FilePermission any            `yaml:"filePermission"`
	Encoding       string         `yaml:"encoding"`
	// AllKeys (this provider's extension) writes every key of the secret's
	// data as <objectName>/<key> instead of one file.
	AllKeys bool `yaml:"allKeys"`
}

// ObjectSpec is a validated object.
type ObjectSpec struct {
	// Name is objectName: the file name, or the directory with AllKeys.
	Name string
	// Key is secretKey; empty means the whole response as JSON.
	Key string
	// AllKeys writes every key of the data under Name/.
	AllKeys bool
	// Mode is the file mode; 0 means the mount's default.
	Mode fs.FileMode
	// Encoding of the stored value.
	Encoding Encoding
	// Request is what to send to Vault.
	Request Request
}

// Request is one Vault API call. Objects with equal Requests are served by
// one call within a mount (so that a username and a password come from the
// same database credential, a certificate and its key from the same
// issuance).
type Request struct {
	// Method is GET, PUT or POST.
	Method string
	// Path is the API path below /v1/, without a leading slash.
	Path string
	// Query is the encoded query string (e.g. "version=3"), sorted.
	Query string
	// Body is the JSON of secretArgs, or empty.
	Body string
}

// Key identifies the request in caches.
func (r Request) Key() string {
	return r.Method + " " + r.Path + "?" + r.Query + "\x00" + r.Body
}

// Pinned reports whether the request reads a fixed KV version.
func (r Request) Pinned() bool {
	q, _ := url.ParseQuery(r.Query)
	return r.Method == defaultMethod && q.Get(versionQuery) != "" && q.Get(versionQuery) != "0"
}

// Write reports whether the request is a write (PUT or POST): it may
// create something (a certificate, a token) on every call.
func (r Request) Write() bool { return r.Method != defaultMethod }

// File is a file (or directory) on the provider's file system that the
// provider reads for TLS. A path from a provider flag is trusted (Dir
// empty, Name as the operator gave it). A path from a SecretProviderClass
// is confined: Dir is the operator's allow-listed directory and Name is
// relative to it, clean and without "..", to be opened through an
// os.Root on Dir so that no symlink leads out of it.
type File struct {
	Dir  string
	Name string
}

// IsZero reports an unset file.
func (f File) IsZero() bool { return f.Name == "" }

// Confined reports whether the path came from a SecretProviderClass.
func (f File) Confined() bool { return f.Dir != "" }

// String is the path for messages (a path, never file contents).
func (f File) String() string {
	if f.Dir == "" {
		return f.Name
	}
	return path.Join(f.Dir, f.Name)
}

// TLS is the TLS configuration for talking to Vault.
type TLS struct {
	CACert      File
	CADirectory File
	ServerName  string
	ClientCert  File
	ClientKey   File
	SkipVerify  bool
}

// Connection is where and as whom to log in. Equal Connections share a
// Vault HTTP client.
type Connection struct {
	Address string
	// Namespace is the Vault (Enterprise) namespace; empty for none.
	Namespace string
	TLS       TLS
}

// Defaults are the provider-wide settings (environment < flags) that the
// SecretProviderClass overrides.
type Defaults struct {
	Connection Connection
	AuthMount  string
	Audience   string
	// TLSFileDir is the only directory under which a SecretProviderClass
	// may name TLS files (vaultCACertPath, vaultCADirectory,
	// vaultTLSClientCertPath, vaultTLSClientKeyPath); empty: it may name
	// none. Paths from provider flags are not restricted.
	TLSFileDir string
	// AnyAddress lets a SecretProviderClass's vaultAddress name any Vault
	// (vault-csi-provider's behaviour). Otherwise it may name only
	// Connection.Address or one of AllowedAddresses: the provider sends
	// the pod's service account token there to log in, and a host that
	// receives it can replay it against the real Vault.
	AnyAddress bool
	// AllowedAddresses are the Vault addresses besides Connection.Address
	// that vaultAddress may name when AnyAddress is false; they are
	// compared by scheme, host (case-insensitively) and port.
	AllowedAddresses []string
}

// AllowedAddressesFlag is the provider flag that sets Defaults.AnyAddress
// and Defaults.AllowedAddresses, for messages.
const AllowedAddressesFlag = "-allowed-vault-addrs"

// ParseAllowedAddresses reads the value of provider flag
// -allowed-vault-addrs: "*" allows any address, otherwise a
// comma-separated list of Vault base addresses ("" = only -vault-addr).
func ParseAllowedAddresses(v string) (anyAddr bool, addrs []string, err error) {
	for a := range strings.SplitSeq(v, ",") {
		a = strings.TrimSpace(a)
		switch {
		case a == "":
		case a == "*":
			anyAddr = true
		default:
			if checkAddress(a) != nil {
				return false, nil, fmt.Errorf("%s: an entry is not an http(s) base URL like https://vault.example:8200", AllowedAddressesFlag)
			}
			addrs = append(addrs, a)
		}
	}
	if anyAddr && len(addrs) > 0 {
		return false, nil, fmt.Errorf("%s: \"*\" allows every address; give it alone or list addresses", AllowedAddressesFlag)
	}
	return anyAddr, addrs, nil
}

// Params is the validated form of one mount's parameters.
type Params struct {
	Connection Connection
	// Role is roleName.
	Role string
	// AuthMount is the auth method's mount path, e.g. "kubernetes" (login
	// at auth/kubernetes/login).
	AuthMount string
	// Audience is the audience of the service account token to log in with.
	Audience string
	Objects  []ObjectSpec
}

// Error is a mistake in spec.parameters; Param names the key at fault
// (objects, roleName, ...).
type Error = spcparams.Error

// invalid builds an *Error; the parameter is the first word of the
// message that names a known parameter, else objects.
func invalid(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	return spcparams.Errorf(paramOf(msg), "%s", msg)
}

var knownParams = []string{
	ParamRoleName, ParamVaultAddress, ParamVaultNamespace, ParamKubernetesMountPath, ParamAuthMountPath, ParamAudience,
	ParamCACertPath, ParamCADirectory, ParamTLSServerName, ParamTLSClientCertPath, ParamTLSClientKeyPath, ParamSkipTLSVerify,
}

func paramOf(msg string) string {
	if rest, ok := strings.CutPrefix(msg, "parameter "); ok {
		for _, p := range knownParams {
			if strings.HasPrefix(rest, p+" ") || strings.HasPrefix(rest, p+",") {
				return p
			}
		}
	}
	if rest, ok := strings.CutPrefix(msg, "parameters "); ok {
		for _, p := range knownParams {
			if strings.HasPrefix(rest, p+" ") {
				return p
			}
		}
	}
	return ParamObjects
}

// Parse validates the parameters of one mount against the defaults.
func Parse(attrs map[string]string, def Defaults) (*Params, error) {
	p := &Params{Connection: def.Connection, AuthMount: def.AuthMount, Audience: def.Audience}
	if p.AuthMount == "" {
		p.AuthMount = DefaultAuthMount
	}
	if p.Audience == "" {
		p.Audience = DefaultAudience
	}
	if p.Connection.Address == "" {
		p.Connection.Address = DefaultAddress
	}
	p.Role = strings.TrimSpace(attrs[ParamRoleName])
	if p.Role == "" {
		return nil, invalid("parameter %s is empty; set it to the Vault role the pod's service account logs in as", ParamRoleName)
	}
	if len(p.Role) > maxRoleNameLength || strings.ContainsAny(p.Role, "\x00\n\r") {
		return nil, invalid("parameter %s is longer than %d bytes or has control characters", ParamRoleName, maxRoleNameLength)
	}
	if v := strings.TrimSpace(attrs[ParamVaultAddress]); v != "" {
		p.Connection.Address = v
	}
	if err := checkAddress(p.Connection.Address); err != nil {
		return nil, err
	}
	if !def.AnyAddress && !addressAllowed(p.Connection.Address, def) {
		return nil, invalid("parameter %s names a Vault this provider does not send service account tokens to; use the provider's -vault-addr or ask the operator to add the address to %s (chart: providers.vault.allowedAddresses)", ParamVaultAddress, AllowedAddressesFlag)
	}
	if v, ok := attrs[ParamVaultNamespace]; ok && strings.TrimSpace(v) != "" {
		p.Connection.Namespace = strings.Trim(strings.TrimSpace(v), "/")
	}
	if err := checkMountLike(ParamVaultNamespace, p.Connection.Namespace, maxVaultNamespaceLength, true); err != nil {
		return nil, err
	}
	km, am := strings.TrimSpace(attrs[ParamKubernetesMountPath]), strings.TrimSpace(attrs[ParamAuthMountPath])
	switch {
	case km != "" && am != "":
		return nil, invalid("parameters %s and %s are both set; keep %s only", ParamKubernetesMountPath, ParamAuthMountPath, ParamAuthMountPath)
	case am != "":
		p.AuthMount = am
	case km != "":
		p.AuthMount = km
	}
	p.AuthMount = strings.TrimPrefix(strings.Trim(p.AuthMount, "/"), "auth/")
	if err := checkMountLike(ParamAuthMountPath, p.AuthMount, maxAuthMountLength, false); err != nil {
		return nil, err
	}
	if v := strings.TrimSpace(attrs[ParamAudience]); v != "" {
		p.Audience = v
	}
	if len(p.Audience) > maxAudienceLength {
		return nil, invalid("parameter %s is longer than %d bytes", ParamAudience, maxAudienceLength)
	}
	if err := parseTLS(attrs, def.TLSFileDir, &p.Connection.TLS); err != nil {
		return nil, err
	}
	objs, err := ParseObjects(attrs[ParamObjects])
	if err != nil {
		return nil, err
	}
	p.Objects = objs
	return p, nil
}

func checkAddress(a string) error {
	u, err := url.Parse(a)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return invalid("parameter %s (or -vault-addr) is not an http(s) URL like https://vault.example:8200 without credentials, query or fragment", ParamVaultAddress)
	}
	if strings.Trim(u.Path, "/") != "" {
		return invalid("parameter %s (or -vault-addr) has a path; give the server's base address only", ParamVaultAddress)
	}
	return nil
}

// addressAllowed reports whether a (a valid address) is def's address or
// one of def.AllowedAddresses.
func addressAllowed(a string, def Defaults) bool {
	want := canonicalAddress(a)
	if def.Connection.Address == "" {
		def.Connection.Address = DefaultAddress
	}
	if canonicalAddress(def.Connection.Address) == want {
		return true
	}
	for _, x := range def.AllowedAddresses {
		if canonicalAddress(x) == want {
			return true
		}
	}
	return false
}

// canonicalAddress is a's scheme://host:port, the host in lower case and
// the scheme's port explicit; "" if a is not a valid address.
func canonicalAddress(a string) string {
	if checkAddress(a) != nil {
		return ""
	}
	u, err := url.Parse(a)
	if err != nil {
		return ""
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return u.Scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// checkMountLike accepts mount paths and namespaces: segments of letters,
// digits, '-', '_' and '.', separated by '/', never "." or "..".
func checkMountLike(param, v string, maxLen int, emptyOK bool) error {
	if v == "" {
		if emptyOK {
			return nil
		}
		return invalid("parameter %s is empty", param)
	}
	if len(v) > maxLen {
		return invalid("parameter %s is longer than %d bytes", param, maxLen)
	}
	for _, seg := range strings.Split(v, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return invalid("parameter %s has an empty, '.' or '..' path segment", param)
		}
		for _, c := range seg {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
				return invalid("parameter %s may only hold letters, digits, '-', '_', '.' and '/'", param)
			}
		}
	}
	return nil
}

func parseTLS(attrs map[string]string, dir string, t *TLS) error {
	for _, f := range []struct {
		param string
		dst   *File
	}{
		{ParamCACertPath, &t.CACert}, {ParamCADirectory, &t.CADirectory},
		{ParamTLSClientCertPath, &t.ClientCert}, {ParamTLSClientKeyPath, &t.ClientKey},
	} {
		v := strings.TrimSpace(attrs[f.param])
		if v == "" {
			continue
		}
		if len(v) > maxFilesystemPathLength || strings.ContainsAny(v, "\x00\n\r") {
			return invalid("parameter %s is longer than %d bytes or has control characters", f.param, maxFilesystemPathLength)
		}
		file, err := confine(f.param, v, dir)
		if err != nil {
			return err
		}
		*f.dst = file
	}
	if v := strings.TrimSpace(attrs[ParamTLSServerName]); v != "" {
		if len(v) > maxFilesystemPathLength || strings.ContainsAny(v, "\x00\n\r") {
			return invalid("parameter %s is longer than %d bytes or has control characters", ParamTLSServerName, maxFilesystemPathLength)
		}
		t.ServerName = v
	}
	if t.ClientCert.IsZero() != t.ClientKey.IsZero() {
		return invalid("parameters %s and %s must be set together", ParamTLSClientCertPath, ParamTLSClientKeyPath)
	}
	if v := strings.TrimSpace(attrs[ParamSkipTLSVerify]); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return invalid("parameter %s is not true or false", ParamSkipTLSVerify)
		}
		t.SkipVerify = b
	}
	return nil
}

// confine checks a TLS file path from a SecretProviderClass: it must be
// an absolute path inside dir, the directory the operator allow-listed
// (provider flag -spc-tls-dir). The result is relative to dir, for an
// os.Root on it. The message names the parameter and the allowed
// directory, not the path.
func confine(param, v, dir string) (File, error) {
	if dir == "" {
		return File{}, invalid("parameter %s names a file, but this provider reads no TLS file a SecretProviderClass names (its -spc-tls-dir is empty); ask the operator to set the provider's TLS flags or allow a directory", param)
	}
	if !path.IsAbs(v) {
		return File{}, invalid("parameter %s is not an absolute path; TLS files must be under %s (provider flag -spc-tls-dir)", param, dir)
	}
	dir = path.Clean(dir)
	clean := path.Clean(v)
	if clean == dir {
		return File{Dir: dir, Name: "."}, nil
	}
	rel, ok := strings.CutPrefix(clean, strings.TrimSuffix(dir, "/")+"/")
	if !ok || rel == "" || rel == ".." || strings.HasPrefix(rel, "../") {
		return File{}, invalid("parameter %s is outside %s, the only directory the provider reads SecretProviderClass TLS files from (provider flag -spc-tls-dir)", param, dir)
	}
	return File{Dir: dir, Name: rel}, nil
}

// ParseObjects decodes and validates the objects parameter.
func ParseObjects(s string) ([]ObjectSpec, error) {
	if len(s) > MaxObjectsBytes {
		return nil, invalid("parameter objects is %d bytes; at most %d are allowed", len(s), MaxObjectsBytes)
	}
	if strings.TrimSpace(s) == "" {
		return nil, invalid("parameter objects is empty; list at least one {objectName, secretPath}")
	}
	var raw []Object
	if err := yaml.Unmarshal([]byte(s), &raw); err != nil {
		return nil, invalid("parameter objects is not a YAML list of {objectName, secretPath, ...}: %s", yamlErrorText(err))
	}
	if len(raw) == 0 {
		return nil, invalid("parameter objects lists no object")
	}
	if len(raw) > MaxObjects {
		return nil, invalid("parameter objects lists %d objects; at most %d are allowed", len(raw), MaxObjects)
	}
	out := make([]ObjectSpec, 0, len(raw))
	names := map[string]int{}
	for i, o := range raw {
		spec, err := validateObject(i, o)
		if err != nil {
			return nil, err
		}
		if j, ok := names[spec.Name]; ok {
			return nil, invalid("%s: objectName is already used by objects[%d]; objectName must be unique", where(i, o.ObjectName), j)
		}
		names[spec.Name] = i
		out = append(out, spec)
	}
	// A file of one object must not be the directory of another's keys.
	for _, o := range out {
		for _, other := range out {
			if other.AllKeys && o.Name != other.Name && strings.HasPrefix(o.Name, other.Name+allKeysDirectorySeparator) {
				return nil, invalid("object %q lies inside the allKeys directory of object %q; rename one", o.Name, other.Name)
			}
		}
	}
	return out, nil
}

// where names an object in error messages: its index, and its name when
// it is short and printable (names are file names, not secrets).
func where(i int, name string) string {
	if name == "" || len(name) > 128 || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Sprintf("objects[%d]", i)
	}
	return fmt.Sprintf("objects[%d] (%s)", i, name)
}

func validateObject(i int, o Object) (ObjectSpec, error) {
	w := where(i, o.ObjectName)
	spec := ObjectSpec{Name: o.ObjectName, Key: o.SecretKey, AllKeys: o.AllKeys}
	if o.ObjectName == "" {
		return spec, invalid("%s: objectName is empty; it names the file", w)
	}
	if len(o.ObjectName) > maxNameLength {
		return spec, invalid("%s: objectName is longer than %d bytes", w, maxNameLength)
	}
	if err := atomicfs.ValidatePath(o.ObjectName); err != nil {
		w = fmt.Sprintf("objects[%d]", i) // do not echo an unsafe name
		return spec, invalid("%s: objectName is not a safe relative file path (no absolute path, '..' or empty segment)", w)
	}
	if o.AllKeys && o.SecretKey != "" {
		return spec, invalid("%s: allKeys and secretKey are both set; allKeys writes every key, secretKey one", w)
	}
	if len(o.SecretKey) > maxNameLength {
		return spec, invalid("%s: secretKey is longer than %d bytes", w, maxNameLength)
	}
	req, err := parseRequest(w, o)
	if err != nil {
		return spec, err
	}
	spec.Request = req
	if spec.Mode, err = parseMode(o.FilePermission); err != nil {
		return spec, invalid("%s: filePermission %v", w, err)
	}
	switch e := strings.ToLower(strings.TrimSpace(o.Encoding)); e {
	case "", encodingUTF8, "utf8":
		spec.Encoding = EncodingUTF8
	case encodingBase64:
		spec.Encoding = EncodingBase64
	case encodingHex:
		spec.Encoding = EncodingHex
	default:
		return spec, invalid("%s: encoding must be utf-8, base64 or hex", w)
	}
	return spec, nil
}

func parseRequest(w string, o Object) (Request, error) {
	r := Request{Method: strings.ToUpper(strings.TrimSpace(o.Method))}
	switch r.Method {
	case "":
		r.Method = defaultMethod
	case "GET", "PUT", "POST":
	default:
		return r, invalid("%s: method must be GET, PUT or POST", w)
	}
	sp := strings.TrimSpace(o.SecretPath)
	if sp == "" {
		return r, invalid("%s: secretPath is empty", w)
	}
	if len(sp) > maxSecretPathLength {
		return r, invalid("%s: secretPath is longer than %d bytes", w, maxSecretPathLength)
	}
	pathPart, query, hasQuery := strings.Cut(sp, "?")
	pathPart = strings.TrimPrefix(strings.TrimPrefix(pathPart, "/"), "v1/")
	if pathPart == "" {
		return r, invalid("%s: secretPath has no path", w)
	}
	for _, seg := range strings.Split(strings.TrimSuffix(pathPart, "/"), "/") {
		if seg == "" || seg == "." || seg == ".." {
			return r, invalid("%s: secretPath has an empty, '.' or '..' segment", w)
		}
		if strings.ContainsFunc(seg, func(c rune) bool { return c < 0x20 || c == 0x7f || c == '#' || c == '%' || c == '\\' }) {
			return r, invalid("%s: secretPath has control characters, '#', '%%' or '\\'", w)
		}
	}
	r.Path = pathPart
	if hasQuery {
		q, err := url.ParseQuery(query)
		if err != nil {
			return r, invalid("%s: secretPath has a malformed query string", w)
		}
		if vs, ok := q[versionQuery]; ok {
			if len(vs) != 1 {
				return r, invalid("%s: secretPath gives version more than once", w)
			}
			if n, err := strconv.ParseUint(vs[0], 10, 31); err != nil || n > 1<<30 {
				return r, invalid("%s: secretPath ?version= must be a non-negative integer", w)
			}
		}
		r.Query = q.Encode()
	}
	if len(o.SecretArgs) > 0 {
		b, err := json.Marshal(jsonable(o.SecretArgs))
		if err != nil {
			return r, invalid("%s: secretArgs cannot be sent as JSON", w)
		}
		if len(b) > maxArgsBytes {
			return r, invalid("%s: secretArgs is %d bytes as JSON; at most %d are allowed", w, len(b), maxArgsBytes)
		}
		r.Body = string(b)
	}
	return r, nil
}

// jsonable turns YAML-decoded values into values encoding/json accepts
// (maps with non-string keys become maps with string keys).
func jsonable(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[k] = jsonable(e)
		}
		return m
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[fmt.Sprint(k)] = jsonable(e)
		}
		return m
	case []any:
		s := make([]any, len(t))
		for i, e := range t {
			s[i] = jsonable(e)
		}
		return s
	default:
		return v
	}
}

// parseMode accepts a YAML integer (0600 is octal in YAML, as upstream
// reads it) or an octal string.
func parseMode(v any) (fs.FileMode, error) {
	var n uint64
	switch t := v.(type) {
	case nil:
		return 0, nil
	case int:
		if t < 0 {
			return 0, fmt.Errorf("is negative")
		}
		n = uint64(t)
	case uint64:
		n = t
	case string:
		s := strings.TrimPrefix(strings.TrimSpace(t), "0o")
		if s == "" {
			return 0, nil
		}
		p, err := strconv.ParseUint(s, 8, 32)
		if err != nil {
			return 0, fmt.Errorf("is not an octal mode like 0640")
		}
		n = p
	default:
		return 0, fmt.Errorf("is not an octal mode like 0640")
	}
	if n > 0o777 {
		return 0, fmt.Errorf("has bits beyond 0777")
	}
	return fs.FileMode(n), nil
}

// yamlErrorText keeps the YAML decoder's message short: it may quote
// input.
func yamlErrorText(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "\n"); i > 0 {
		msg = msg[:i]
	}
	// Line numbers help; quoted input does not.
	if i := strings.IndexAny(msg, "`'\""); i > 0 {
		msg = strings.TrimSpace(msg[:i]) + " ..."
	}
	if len(msg) > 160 {
		msg = msg[:160] + "..."
	}
	return msg
}
