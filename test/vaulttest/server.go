// Package vaulttest runs a real HashiCorp Vault server (test/vault/server, built and cached by
// test/vault/build.sh) for tests and configures it: KV v1/v2, PKI, the kubernetes and jwt auth
// methods against a real kube-apiserver, and the database secrets engine against a throwaway
// PostgreSQL 15 (StartPostgres). It also injects faults: seal/unseal, Vault down/up, revoked
// leases, and 5xx answers through FaultProxy.
//
// Every helper takes a T (testing.TB satisfies it) and fails it on error; a missing Vault or
// PostgreSQL binary fails the test with instructions, never skips it. Each Server is a fresh,
// initialised and unsealed Vault with in-memory storage, killed in T.Cleanup (and when the test
// process dies).
package vaulttest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/vault/api"
)

// VaultVersion is the Vault version test/vault/build.sh builds and caches.
const VaultVersion = "v1.21.0"

// T is the part of testing.TB the helpers use; testing.TB satisfies it. Programs that run Vault
// outside a test (test/vault/local) implement it themselves.
type T interface {
	Helper()
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	TempDir() string
	Context() context.Context
	Failed() bool
}

// BinaryPath is the vault-server binary: $SSCSI_VAULT_SERVER, else
// ${SSCSI_CACHE:-/var/cache/sscsi}/vault/<VaultVersion>/bin/vault-server.
func BinaryPath() string {
	if p := os.Getenv("SSCSI_VAULT_SERVER"); p != "" {
		return p
	}
	cache := os.Getenv("SSCSI_CACHE")
	if cache == "" {
		cache = "/var/cache/sscsi"
	}
	return filepath.Join(cache, "vault", VaultVersion, "bin", "vault-server")
}

// Options configure Start. The zero value is a plain-HTTP Vault with Vault's default lease TTLs.
type Options struct {
	// TLS serves HTTPS with a certificate for 127.0.0.1 and localhost from a fresh CA
	// (Server.CACertPEM, Server.CACertFile).
	TLS bool
	// DefaultLeaseTTL and MaxLeaseTTL are Vault's system lease TTLs (0: Vault's 768h).
	DefaultLeaseTTL, MaxLeaseTTL time.Duration
	// Listen is the address to listen on. Default 127.0.0.1:0 (a free port).
	Listen string
	// Dir holds the log, the info file and the TLS files. Default: T.TempDir().
	Dir string
	// LogLevel is Vault's log level (default warn). Vault's log never holds the root token.
	LogLevel string
}

// Server is a running Vault.
type Server struct {
	// Addr is the API address, http(s)://127.0.0.1:<port>.
	Addr string
	// RootToken is a root token; UnsealKey is the single unseal key (base64).
	RootToken, UnsealKey string
	// CACertPEM and CACertFile are the CA of the serving certificate (TLS only).
	CACertPEM  []byte
	CACertFile string
	// LogPath is Vault's log (stderr).
	LogPath string

	cmd  *exec.Cmd
	done chan struct{}

	mu sync.Mutex // guards kv
	// kv maps a KV mount path to its version (1 or 2), for PutKV.
	kv map[string]int
}

// Start starts a fresh Vault, waits until it is unsealed and serving, and stops it in t.Cleanup.
// With no Options it serves plain HTTP on a free port of 127.0.0.1.
func Start(t T, opts ...Options) *Server {
	t.Helper()
	var o Options
	if len(opts) > 1 {
		t.Fatalf("vaulttest.Start: at most one Options")
	}
	if len(opts) == 1 {
		o = opts[0]
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	if o.LogLevel == "" {
		o.LogLevel = "warn"
	}
	bin := BinaryPath()
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("Vault server binary missing (%v): run test/vault/build.sh (make vault-server; .ci/run does) to build Vault %s into %s",
			err, VaultVersion, bin)
	}
	s := &Server{LogPath: filepath.Join(o.Dir, "vault.log"), kv: map[string]int{}}
	infoFile := filepath.Join(o.Dir, "vault-info.json")
	_ = os.Remove(infoFile)
	args := []string{"-listen", o.Listen, "-info-file", infoFile, "-log-level", o.LogLevel}
	if o.DefaultLeaseTTL > 0 {
		args = append(args, "-default-lease-ttl", o.DefaultLeaseTTL.String())
	}
	if o.MaxLeaseTTL > 0 {
		args = append(args, "-max-lease-ttl", o.MaxLeaseTTL.String())
	}
	if o.TLS {
		certFile, keyFile, caPEM, err := writeServingCert(o.Dir)
		if err != nil {
			t.Fatalf("vaulttest: serving certificate: %v", err)
		}
		s.CACertPEM, s.CACertFile = caPEM, filepath.Join(o.Dir, "vault-ca.crt")
		args = append(args, "-tls-cert", certFile, "-tls-key", keyFile)
	}
	logf, err := os.Create(s.LogPath)
	if err != nil {
		t.Fatalf("vaulttest: %v", err)
	}
	defer func() { _ = logf.Close() }()
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	// Die with the test process, so a crashed or killed test run leaves nothing behind.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("vaulttest: starting %s: %v", bin, err)
	}
	s.done = make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Vault log tail (%s):\n%s", s.LogPath, logTail(s.LogPath, 40))
		}
		s.stop()
	})

	info, err := s.waitInfo(t.Context(), infoFile, 60*time.Second)
	if err != nil {
		t.Fatalf("vaulttest: %v; log tail:\n%s", err, logTail(s.LogPath, 40))
	}
	s.Addr, s.RootToken, s.UnsealKey = info.Address, info.RootToken, info.UnsealKey
	health, err := s.Client(t).Sys().HealthWithContext(t.Context())
	if err != nil || health.Sealed || !health.Initialized {
		t.Fatalf("vaulttest: Vault at %s not healthy after start: %+v, %v", s.Addr, health, err)
	}
	return s
}

// Connect returns a Server for a Vault that is already running (e.g. test/vault/localvault's on
// the local node): address, root token and, for HTTPS, the CA. It learns the KV mounts' versions
// from Vault, so PutKV works on them. The fault helpers that signal the process (Down, Up) are not
// available on it.
func Connect(t T, addr, rootToken string, caPEM []byte) *Server {
	t.Helper()
	s := &Server{Addr: addr, RootToken: rootToken, CACertPEM: caPEM, kv: map[string]int{}}
	mounts, err := s.Client(t).Sys().ListMountsWithContext(t.Context())
	if err != nil {
		t.Fatalf("vaulttest: Vault at %s: listing mounts: %v", addr, err)
	}
	for path, m := range mounts {
		if m.Type == "kv" {
			v := 1
			if m.Options["version"] == "2" {
				v = 2
			}
			s.kv[strings.Trim(path, "/")] = v
		}
	}
	return s
}

type info struct {
	Address   string `json:"address"`
	RootToken string `json:"root_token"`
	UnsealKey string `json:"unseal_key"`
}

// waitInfo waits for the info file that vault-server writes once it is unsealed and serving.
func (s *Server) waitInfo(ctx context.Context, path string, timeout time.Duration) (info, error) {
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(path)
		if err == nil {
			var i info
			if err := json.Unmarshal(b, &i); err != nil || i.Address == "" || i.RootToken == "" {
				return info{}, fmt.Errorf("unreadable info file %s (%v)", path, err)
			}
			return i, nil
		}
		select {
		case <-s.done:
			return info{}, fmt.Errorf("vault-server exited during start (%v)", s.cmd.ProcessState)
		case <-ctx.Done():
			return info{}, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return info{}, fmt.Errorf("vault-server not serving after %s", timeout)
		}
	}
}

func (s *Server) stop() {
	if s.cmd == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// Client returns an API client for Addr authenticated with the root token.
func (s *Server) Client(t T) *api.Client {
	t.Helper()
	return s.ClientWithToken(t, s.RootToken)
}

// ClientWithToken returns an API client for Addr that sends token (none if empty). It ignores
// the VAULT_* environment variables.
func (s *Server) ClientWithToken(t T, token string) *api.Client {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = s.Addr
	cfg.MaxRetries = 0
	if s.CACertPEM != nil {
		if err := cfg.ConfigureTLS(&api.TLSConfig{CACertBytes: s.CACertPEM}); err != nil {
			t.Fatalf("vaulttest: client TLS: %v", err)
		}
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatalf("vaulttest: client: %v", err)
	}
	c.ClearNamespace()
	c.SetToken(token)
	return c
}

// Write writes data to path with the root token and returns the response (nil for 204).
func (s *Server) Write(t T, path string, data map[string]any) *api.Secret {
	t.Helper()
	sec, err := s.Client(t).Logical().WriteWithContext(t.Context(), path, data)
	if err != nil {
		t.Fatalf("vaulttest: writing %s: %v", path, err)
	}
	return sec
}

// Read reads path with the root token (nil if there is nothing there).
func (s *Server) Read(t T, path string) *api.Secret {
	t.Helper()
	sec, err := s.Client(t).Logical().ReadWithContext(t.Context(), path)
	if err != nil {
		t.Fatalf("vaulttest: reading %s: %v", path, err)
	}
	return sec
}

// WritePolicy writes an ACL policy (HCL).
func (s *Server) WritePolicy(t T, name, rules string) {
	t.Helper()
	if err := s.Client(t).Sys().PutPolicyWithContext(t.Context(), name, rules); err != nil {
		t.Fatalf("vaulttest: policy %s: %v", name, err)
	}
}

// Seal seals Vault: every request then fails with 503 until Unseal.
func (s *Server) Seal(t T) {
	t.Helper()
	if err := s.Client(t).Sys().SealWithContext(t.Context()); err != nil {
		t.Fatalf("vaulttest: sealing: %v", err)
	}
}

// Unseal unseals Vault with its unseal key and waits until it serves requests again.
func (s *Server) Unseal(t T) {
	t.Helper()
	c := s.Client(t)
	st, err := c.Sys().UnsealWithContext(t.Context(), s.UnsealKey)
	if err != nil || st.Sealed {
		t.Fatalf("vaulttest: unsealing: %+v, %v", st, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		h, err := c.Sys().HealthWithContext(t.Context())
		if err == nil && !h.Sealed && !h.Standby {
			// Mounts are loaded once the core is active; a token lookup proves requests work.
			if _, err := c.Auth().Token().LookupSelfWithContext(t.Context()); err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("vaulttest: Vault not active 30 s after unseal: %+v, %v", h, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Down closes Vault's listener: clients get "connection refused" while Vault keeps its state.
// Up listens again on the same address.
func (s *Server) Down(t T) {
	t.Helper()
	s.signal(t, syscall.SIGUSR1, false)
}

// Up undoes Down and waits until Vault answers again.
func (s *Server) Up(t T) {
	t.Helper()
	s.signal(t, syscall.SIGUSR2, true)
}

func (s *Server) signal(t T, sig syscall.Signal, wantUp bool) {
	t.Helper()
	if s.cmd == nil {
		t.Fatalf("vaulttest: Down/Up need a Server from Start, not Connect")
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("vaulttest: signalling Vault: %v", err)
	}
	u, err := url.Parse(s.Addr)
	if err != nil {
		t.Fatalf("vaulttest: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", u.Host, time.Second)
		if c != nil {
			_ = c.Close()
		}
		if (err == nil) == wantUp {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("vaulttest: Vault listener still %v 10 s after %v", map[bool]string{true: "down", false: "up"}[wantUp], sig)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RevokeLease revokes one lease now, as an operator would.
func (s *Server) RevokeLease(t T, leaseID string) {
	t.Helper()
	if err := s.Client(t).Sys().RevokeWithContext(t.Context(), leaseID); err != nil {
		t.Fatalf("vaulttest: revoking a lease: %v", err)
	}
}

// RevokePrefix revokes every lease under prefix (e.g. "database/creds/app").
func (s *Server) RevokePrefix(t T, prefix string) {
	t.Helper()
	if err := s.Client(t).Sys().RevokePrefixWithContext(t.Context(), prefix); err != nil {
		t.Fatalf("vaulttest: revoking leases under %s: %v", prefix, err)
	}
}

// Leases lists the IDs of the live leases under prefix (e.g. "database/creds/app/").
func (s *Server) Leases(t T, prefix string) []string {
	t.Helper()
	prefix = strings.TrimSuffix(prefix, "/") + "/"
	sec, err := s.Client(t).Logical().ListWithContext(t.Context(), "sys/leases/lookup/"+prefix)
	if err != nil {
		t.Fatalf("vaulttest: listing leases under %s: %v", prefix, err)
	}
	if sec == nil || sec.Data == nil {
		return nil
	}
	keys, _ := sec.Data["keys"].([]any)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if ks, ok := k.(string); ok && !strings.HasSuffix(ks, "/") {
			out = append(out, prefix+ks)
		}
	}
	return out
}

func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// writeServingCert writes a fresh CA (vault-ca.crt) and a serving certificate for 127.0.0.1 and
// localhost signed by it (vault.crt, vault.key) into dir.
func writeServingCert(dir string) (certFile, keyFile string, caPEM []byte, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vaulttest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(30 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return "", "", nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return "", "", nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "vault"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(30 * 24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return "", "", nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", nil, err
	}
	caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	certFile, keyFile = filepath.Join(dir, "vault.crt"), filepath.Join(dir, "vault.key")
	for _, f := range []struct {
		path string
		data []byte
	}{{filepath.Join(dir, "vault-ca.crt"), caPEM}, {certFile, certPEM}, {keyFile, keyPEM}} {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			return "", "", nil, err
		}
	}
	return certFile, keyFile, caPEM, nil
}
