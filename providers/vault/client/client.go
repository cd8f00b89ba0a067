// Package client talks to the Vault HTTP API with net/http: log in, read
// or write a path, renew a lease or a token. It is small on purpose: the
// provider needs five endpoints, and github.com/hashicorp/vault/api would
// add a retrying HTTP client, HCL and mapstructure for them. Responses are
// size-bounded and errors never carry a response body (only Vault's error
// strings, truncated, and never for requests that carried user data).
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/sscsi/secrets-store/providers/plugin"
	"github.com/sscsi/secrets-store/providers/vault/params"
)

// Defaults of Config.
const (
	DefaultTimeout          = 30 * time.Second
	DefaultMaxResponseBytes = 4 << 20
	// maxErrorText bounds each Vault error string kept in an error.
	maxErrorText = 200
)

// Config configures a Client.
type Config struct {
	// Connection is the Vault address, namespace and TLS settings.
	Connection params.Connection
	// Timeout bounds one HTTP request (default DefaultTimeout).
	Timeout time.Duration
	// MaxResponseBytes bounds a response body (default
	// DefaultMaxResponseBytes); a larger answer is an error.
	MaxResponseBytes int64
	// Observe, if set, is called after every request with the operation
	// name and the HTTP status (0 for a transport failure).
	Observe func(op string, status int)
	// Transport overrides the HTTP transport (tests); TLS settings are
	// then ignored.
	Transport http.RoundTripper
}

// Client is a Vault API client for one address and namespace. Safe for
// concurrent use; it holds no token (every call takes one).
type Client struct {
	base *url.URL
	ns   string
	http *http.Client
	max  int64
	obs  func(string, int)
}

// New validates cfg and returns a Client. TLS files are read now.
func New(cfg Config) (*Client, error) {
	base, err := url.Parse(cfg.Connection.Address)
	if err != nil || base.Host == "" || (base.Scheme != "http" && base.Scheme != "https") {
		return nil, fmt.Errorf("%w: Vault address is not an http(s) URL", plugin.ErrInvalidParameters)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	rt := cfg.Transport
	if rt == nil {
		tc, err := tlsConfig(cfg.Connection.TLS)
		if err != nil {
			return nil, err
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tc
		tr.MaxIdleConnsPerHost = 16
		// Never the node's proxy settings for a secrets backend by surprise:
		// honour them, as Vault's own client does, but only from the
		// environment.
		tr.Proxy = http.ProxyFromEnvironment
		rt = tr
	}
	obs := cfg.Observe
	if obs == nil {
		obs = func(string, int) {}
	}
	return &Client{
		base: base,
		ns:   cfg.Connection.Namespace,
		http: &http.Client{Transport: rt, Timeout: cfg.Timeout, CheckRedirect: sameHostRedirect},
		max:  cfg.MaxResponseBytes,
		obs:  obs,
	}, nil
}

// sameHostRedirect follows Vault's standby redirects only to the same
// scheme and host: a token must not be sent elsewhere.
func sameHostRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 3 {
		return errors.New("too many redirects")
	}
	if req.URL.Host != via[0].URL.Host || req.URL.Scheme != via[0].URL.Scheme {
		return errors.New("redirect to another host refused")
	}
	return nil
}

// Bounds of the TLS files read for one connection.
const (
	maxTLSFileBytes = 1 << 20
	maxCAFiles      = 256
	maxCATotalBytes = 8 << 20
)

func tlsConfig(t params.TLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.SkipVerify} //nolint:gosec // vaultSkipTLSVerify is an explicit, documented opt-in as upstream has it
	switch {
	case !t.CACert.IsZero():
		b, err := readTLSFile(t.CACert, maxTLSFileBytes)
		if err != nil {
			return nil, tlsFileError(params.ParamCACertPath, "-vault-tls-ca-cert", t.CACert, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("%w: %s: the CA certificate file %s holds no PEM certificate", plugin.ErrInvalidParameters, paramName(params.ParamCACertPath, "-vault-tls-ca-cert", t.CACert), t.CACert)
		}
		tc.RootCAs = pool
	case !t.CADirectory.IsZero():
		pool, err := readCADirectory(t.CADirectory)
		if err != nil {
			return nil, tlsFileError(params.ParamCADirectory, "-vault-tls-ca-directory", t.CADirectory, err)
		}
		tc.RootCAs = pool
	}
	if !t.ClientCert.IsZero() {
		cert, err := readTLSFile(t.ClientCert, maxTLSFileBytes)
		if err != nil {
			return nil, tlsFileError(params.ParamTLSClientCertPath, "-vault-tls-client-cert", t.ClientCert, err)
		}
		key, err := readTLSFile(t.ClientKey, maxTLSFileBytes)
		if err != nil {
			return nil, tlsFileError(params.ParamTLSClientKeyPath, "-vault-tls-client-key", t.ClientKey, err)
		}
		// tls.X509KeyPair's errors say nothing of the key material, but
		// keep to a fixed message all the same.
		pair, err := tls.X509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("%w: %s and %s: the client certificate and key files do not form a PEM key pair", plugin.ErrInvalidParameters,
				paramName(params.ParamTLSClientCertPath, "-vault-tls-client-cert", t.ClientCert), paramName(params.ParamTLSClientKeyPath, "-vault-tls-client-key", t.ClientKey))
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}

// paramName names where a file setting came from: the
// SecretProviderClass parameter for a confined path, else the flag.
func paramName(param, flag string, f params.File) string {
	if f.Confined() {
		return "parameter " + param
	}
	return "provider flag " + flag
}

// tlsFileError reports an unreadable TLS file without any of its
// contents: the parameter (or flag), the path and the kind of failure.
func tlsFileError(param, flag string, f params.File, err error) error {
	why := "cannot be read"
	switch {
	case errors.Is(err, errNotRegular):
		why = "is not a regular file"
	case errors.Is(err, errTooLarge):
		why = "is too large"
	case errors.Is(err, fs.ErrNotExist):
		why = "does not exist"
	case errors.Is(err, fs.ErrPermission):
		why = "is not readable by the provider"
	case f.Confined() && strings.Contains(err.Error(), "path escapes from parent"):
		why = "leads out of the allowed directory (a symlink or ..)"
	}
	return fmt.Errorf("%w: %s: %s %s", plugin.ErrInvalidParameters, paramName(param, flag, f), f, why)
}

var (
	errNotRegular = errors.New("not a regular file")
	errTooLarge   = errors.New("file too large")
)

// openTLS opens f: a confined path through an os.Root on its directory
// (no symlink or ".." leads out of it), a trusted one as given. It opens
// without blocking (a FIFO or device would otherwise hang the mount).
func openTLS(f params.File) (*os.File, error) {
	const flags = os.O_RDONLY | syscall.O_NONBLOCK | syscall.O_NOCTTY
	if !f.Confined() {
		return os.OpenFile(f.Name, flags, 0)
	}
	root, err := os.OpenRoot(f.Dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return root.OpenFile(f.Name, flags, 0)
}

// readTLSFile reads a regular file of at most limit bytes.
func readTLSFile(f params.File, limit int64) ([]byte, error) {
	fh, err := openTLS(f)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	return readRegular(fh, limit)
}

func readRegular(fh *os.File, limit int64) ([]byte, error) {
	st, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, errNotRegular
	}
	if st.Size() > limit {
		return nil, errTooLarge
	}
	b, err := io.ReadAll(io.LimitReader(fh, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, errTooLarge
	}
	return b, nil
}

// readCADirectory reads the PEM certificates of a directory's regular
// files (at most maxCAFiles, maxCATotalBytes in all; subdirectories and
// other file types are skipped, as are files without a certificate).
func readCADirectory(f params.File) (*x509.CertPool, error) {
	var root *os.Root
	var err error
	if f.Confined() {
		var parent *os.Root
		if parent, err = os.OpenRoot(f.Dir); err != nil {
			return nil, err
		}
		defer parent.Close()
		root, err = parent.OpenRoot(f.Name)
	} else {
		root, err = os.OpenRoot(f.Name)
	}
	if err != nil {
		return nil, err
	}
	defer root.Close()
	d, err := root.Open(".")
	if err != nil {
		return nil, err
	}
	entries, err := d.ReadDir(maxCAFiles)
	d.Close()
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	pool := x509.NewCertPool()
	var total int64
	for _, e := range entries {
		if !e.Type().IsRegular() && e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		fh, err := root.OpenFile(e.Name(), os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
		if err != nil {
			continue // a symlink out of the directory or a vanished file
		}
		b, err := readRegular(fh, maxTLSFileBytes)
		fh.Close()
		if err != nil {
			continue // not a regular file, or larger than a CA file can be
		}
		if total += int64(len(b)); total > maxCATotalBytes {
			return nil, errTooLarge
		}
		pool.AppendCertsFromPEM(b)
	}
	return pool, nil
}

// Secret is a Vault API response. Its JSON form (field order and names) is
// the one vault-csi-provider writes for an object without secretKey.
type Secret struct {
	RequestID     string          `json:"request_id"`
	LeaseID       string          `json:"lease_id"`
	LeaseDuration int             `json:"lease_duration"`
	Renewable     bool            `json:"renewable"`
	Data          map[string]any  `json:"data"`
	Warnings      []string        `json:"warnings"`
	Auth          *Auth           `json:"auth,omitempty"`
	WrapInfo      json.RawMessage `json:"wrap_info,omitempty"`
	MountType     string          `json:"mount_type,omitempty"`
}

// Auth is the auth block of a login or token renewal.
type Auth struct {
	ClientToken   string            `json:"client_token"`
	Accessor      string            `json:"accessor"`
	Policies      []string          `json:"policies"`
	TokenPolicies []string          `json:"token_policies"`
	Metadata      map[string]string `json:"metadata"`
	LeaseDuration int               `json:"lease_duration"`
	Renewable     bool              `json:"renewable"`
	EntityID      string            `json:"entity_id"`
	TokenType     string            `json:"token_type"`
	Orphan        bool              `json:"orphan"`
}

// TTL returns the lease duration as a time.Duration.
func (a *Auth) TTL() time.Duration { return time.Duration(a.LeaseDuration) * time.Second }

// LeaseTTL returns the secret's lease duration.
func (s *Secret) LeaseTTL() time.Duration { return time.Duration(s.LeaseDuration) * time.Second }

// Error is a Vault API error response.
type Error struct {
	// Op names the operation, e.g. "read database/creds/app".
	Op string
	// Status is the HTTP status (0: no response).
	Status int
	// Errors are Vault's error strings (truncated; empty when withheld).
	Errors []string
	// Kind is the plugin error kind.
	Kind error
	// cause is the transport error, if any.
	cause error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	switch {
	case e.Status == 0:
		b.WriteString(": Vault unreachable")
		if e.cause != nil {
			b.WriteString(": ")
			b.WriteString(transportText(e.cause))
		}
	default:
		fmt.Fprintf(&b, ": Vault answered HTTP %d", e.Status)
		if len(e.Errors) > 0 {
			b.WriteString(": ")
			b.WriteString(strings.Join(e.Errors, "; "))
		}
	}
	return b.String()
}

// Unwrap lets errors.Is see the kind (and a context error).
func (e *Error) Unwrap() []error {
	out := []error{e.Kind}
	if e.cause != nil && (errors.Is(e.cause, context.Canceled) || errors.Is(e.cause, context.DeadlineExceeded)) {
		out = append(out, e.cause)
	}
	return out
}

// IsStatus reports whether err is a Vault answer with HTTP status code.
func IsStatus(err error, code int) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == code
}

func transportText(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline exceeded"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		// The URL is ours (address + path); the inner error has no body.
		return ue.Err.Error()
	}
	return err.Error()
}

// kindOf maps an HTTP status to the plugin error kind.
func kindOf(status int) error {
	switch {
	case status == 0:
		return plugin.ErrUnavailable
	case status == http.StatusBadRequest:
		return plugin.ErrInvalidParameters
	case status == http.StatusUnauthorized:
		return plugin.ErrUnauthenticated
	case status == http.StatusForbidden:
		return plugin.ErrPermissionDenied
	case status == http.StatusNotFound:
		return plugin.ErrNotFound
	case status == http.StatusTooManyRequests:
		return plugin.ErrThrottled
	default:
		return plugin.ErrUnavailable
	}
}

// Request is one call to the API.
type Request struct {
	// Op names the call in errors and metrics ("read", "login", ...).
	Op string
	// Method is the HTTP method.
	Method string
	// Path is below /v1/.
	Path string
	// Query is an encoded query string.
	Query string
	// Body is a JSON body, or nil.
	Body []byte
	// Token is the Vault token ("" for logins).
	Token string
	// UserData marks requests whose body or path came from the
	// SecretProviderClass: Vault's error strings may echo them, so they
	// are withheld from errors for 400 answers.
	UserData bool
}

// Do sends r and decodes the response. A 204 answer is an empty Secret.
func (c *Client) Do(ctx context.Context, r Request) (*Secret, error) {
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/" + r.Path
	u.RawQuery = r.Query
	var body io.Reader
	if r.Body != nil {
		body = bytes.NewReader(r.Body)
	}
	hreq, err := http.NewRequestWithContext(ctx, r.Method, u.String(), body)
	if err != nil {
		return nil, &Error{Op: r.Op, Kind: plugin.ErrInvalidParameters, cause: err}
	}
	if r.Body != nil {
		hreq.Header.Set("Content-Type", "application/json")
	}
	if r.Token != "" {
		hreq.Header.Set("X-Vault-Token", r.Token)
	}
	if c.ns != "" {
		hreq.Header.Set("X-Vault-Namespace", c.ns)
	}
	hreq.Header.Set("X-Vault-Request", "true")
	resp, err := c.http.Do(hreq)
	if err != nil {
		c.obs(r.Op, 0)
		return nil, &Error{Op: r.Op, Kind: plugin.ErrUnavailable, cause: err}
	}
	defer resp.Body.Close()
	c.obs(r.Op, resp.StatusCode)
	raw, err := io.ReadAll(io.LimitReader(resp.Body, c.max+1))
	if err != nil {
		return nil, &Error{Op: r.Op, Kind: plugin.ErrUnavailable, cause: err}
	}
	if int64(len(raw)) > c.max {
		return nil, &Error{Op: r.Op, Status: resp.StatusCode, Kind: plugin.ErrInvalidParameters,
			Errors: []string{fmt.Sprintf("response larger than %d bytes", c.max)}}
	}
	if resp.StatusCode >= 300 {
		e := &Error{Op: r.Op, Status: resp.StatusCode, Kind: kindOf(resp.StatusCode)}
		if !(r.UserData && resp.StatusCode == http.StatusBadRequest) {
			e.Errors = errorStrings(raw)
		}
		return nil, e
	}
	if resp.StatusCode == http.StatusNoContent || len(bytes.TrimSpace(raw)) == 0 {
		return &Secret{}, nil
	}
	var s Secret
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&s); err != nil {
		return nil, &Error{Op: r.Op, Status: resp.StatusCode, Kind: plugin.ErrUnavailable, Errors: []string{"response is not a Vault JSON document"}}
	}
	return &s, nil
}

func errorStrings(raw []byte) []string {
	var doc struct {
		Errors []string `json:"errors"`
	}
	if json.Unmarshal(raw, &doc) != nil {
		return nil
	}
	out := make([]string, 0, min(len(doc.Errors), 3))
	for _, e := range doc.Errors {
		if len(out) == 3 {
			break
		}
		e = strings.Join(strings.Fields(e), " ")
		if len(e) > maxErrorText {
			e = e[:maxErrorText] + "..."
		}
		out = append(out, e)
	}
	return out
}

// Login logs in at auth/<mount>/login with a role and a JWT (kubernetes
// and jwt auth methods take the same body).
func (c *Client) Login(ctx context.Context, mount, role, jwt string) (*Auth, error) {
	body, _ := json.Marshal(map[string]string{"role": role, "jwt": jwt})
	s, err := c.Do(ctx, Request{Op: "login " + mount, Method: http.MethodPost, Path: "auth/" + mount + "/login", Body: body})
	if err != nil {
		var e *Error
		if errors.As(err, &e) && (e.Status == http.StatusBadRequest || e.Status == http.StatusForbidden || e.Status == http.StatusUnauthorized) {
			// Vault answers a rejected token or an unknown role with 400
			// or 403: the pod has no Vault identity.
			e.Kind = plugin.ErrUnauthenticated
		}
		return nil, err
	}
	if s.Auth == nil || s.Auth.ClientToken == "" {
		return nil, &Error{Op: "login " + mount, Status: http.StatusOK, Kind: plugin.ErrUnavailable, Errors: []string{"no client token in the answer"}}
	}
	return s.Auth, nil
}

// RenewSelf renews token by increment.
func (c *Client) RenewSelf(ctx context.Context, token string, increment time.Duration) (*Auth, error) {
	body, _ := json.Marshal(map[string]any{"increment": int(increment.Seconds())})
	s, err := c.Do(ctx, Request{Op: "renew-token", Method: http.MethodPut, Path: "auth/token/renew-self", Body: body, Token: token})
	if err != nil {
		return nil, err
	}
	if s.Auth == nil || s.Auth.ClientToken == "" {
		return nil, &Error{Op: "renew-token", Status: http.StatusOK, Kind: plugin.ErrUnavailable, Errors: []string{"no auth block in the answer"}}
	}
	return s.Auth, nil
}

// RenewLease renews a lease by increment; the answer's lease duration is
// what Vault granted (capped by the lease's max TTL).
func (c *Client) RenewLease(ctx context.Context, token, leaseID string, increment time.Duration) (*Secret, error) {
	body, _ := json.Marshal(map[string]any{"lease_id": leaseID, "increment": int(increment.Seconds())})
	return c.Do(ctx, Request{Op: "renew-lease", Method: http.MethodPut, Path: "sys/leases/renew", Body: body, Token: token})
}
