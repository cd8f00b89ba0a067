// Command vault-server runs a HashiCorp Vault server for tests and the local demo. It embeds
// Vault's core and HTTP handler (github.com/hashicorp/vault as a library), keeps everything in
// memory, initialises itself with one unseal key and unseals at start, and then prints one JSON
// line (address, root token, unseal key) to stdout or to the file named by -info-file (mode 0600).
// Logs go to stderr and never carry the token or the key.
//
// Only the backends the Vault provider is tested against are built in: the kubernetes and jwt auth
// methods, KV (v1 and v2), PKI, and the database secrets engine with its PostgreSQL plugin.
//
// Signals: SIGTERM/SIGINT stop the server; SIGUSR1 closes the listener (clients see connection
// refused: "Vault down", state kept); SIGUSR2 listens again on the same address.
package main

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	credJWT "github.com/hashicorp/vault-plugin-auth-jwt"
	credKubernetes "github.com/hashicorp/vault-plugin-auth-kubernetes"
	logicalKV "github.com/hashicorp/vault-plugin-secrets-kv"
	logicalDatabase "github.com/hashicorp/vault/builtin/logical/database"
	logicalPKI "github.com/hashicorp/vault/builtin/logical/pki"
	vaulthttp "github.com/hashicorp/vault/http"
	"github.com/hashicorp/vault/internalshared/configutil"
	dbPostgres "github.com/hashicorp/vault/plugins/database/postgresql"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/physical/inmem"
	"github.com/hashicorp/vault/vault"
)

// Info is what the server prints once it is unsealed and serving.
type Info struct {
	Address   string `json:"address"`
	RootToken string `json:"root_token"`
	// UnsealKey is the single unseal key, base64 (what `vault operator unseal` takes).
	UnsealKey string `json:"unseal_key"`
	PID       int    `json:"pid"`
	Version   string `json:"version"`
}

type config struct {
	listen          string
	infoFile        string
	tlsCert         string
	tlsKey          string
	logLevel        string
	defaultLeaseTTL time.Duration
	maxLeaseTTL     time.Duration
}

func main() {
	var cfg config
	flag.StringVar(&cfg.listen, "listen", "127.0.0.1:8200", "TCP address to serve the Vault API on (port 0: a free port)")
	flag.StringVar(&cfg.infoFile, "info-file", "", "write the JSON line (address, root token, unseal key) to this file, mode 0600, instead of stdout")
	flag.StringVar(&cfg.tlsCert, "tls-cert", "", "PEM certificate (chain) to serve HTTPS with; empty: plain HTTP")
	flag.StringVar(&cfg.tlsKey, "tls-key", "", "PEM private key of -tls-cert")
	flag.StringVar(&cfg.logLevel, "log-level", "warn", "Vault log level on stderr: trace, debug, info, warn, error")
	flag.DurationVar(&cfg.defaultLeaseTTL, "default-lease-ttl", 0, "default lease TTL (0: Vault's default, 768h)")
	flag.DurationVar(&cfg.maxLeaseTTL, "max-lease-ttl", 0, "maximum lease TTL (0: Vault's default, 768h)")
	flag.Parse()
	if (cfg.tlsCert == "") != (cfg.tlsKey == "") {
		fmt.Fprintln(os.Stderr, "vault-server: -tls-cert and -tls-key go together")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintf(os.Stderr, "vault-server: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config) error {
	level := hclog.LevelFromString(cfg.logLevel)
	if level == hclog.NoLevel {
		return fmt.Errorf("-log-level %q: want trace, debug, info, warn or error", cfg.logLevel)
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "vault", Level: level, Output: os.Stderr})
	storage, err := inmem.NewInmem(nil, logger.Named("storage"))
	if err != nil {
		return fmt.Errorf("in-memory storage: %w", err)
	}

	var tlsConfig *tls.Config
	scheme := "http"
	if cfg.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.tlsCert, cfg.tlsKey)
		if err != nil {
			return fmt.Errorf("loading -tls-cert/-tls-key: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		scheme = "https"
	}
	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.listen, err)
	}
	addr := ln.Addr().String()
	apiAddr := scheme + "://" + addr

	core, err := vault.NewCore(&vault.CoreConfig{
		Physical:        storage,
		Logger:          logger,
		DisableMlock:    true,
		RedirectAddr:    apiAddr,
		BuiltinRegistry: registry{},
		// The database engine needs the core's plugin catalog, so it is a core backend, as in
		// Vault's own server; every other backend comes from the registry.
		LogicalBackends: map[string]logical.Factory{"database": logicalDatabase.Factory},
		DefaultLeaseTTL: cfg.defaultLeaseTTL,
		MaxLeaseTTL:     cfg.maxLeaseTTL,
	})
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("creating the Vault core: %w", err)
	}
	defer func() { _ = core.Shutdown() }()

	handler := vaulthttp.Handler.Handler(&vault.HandlerProperties{
		Core:           core,
		ListenerConfig: &configutil.Listener{Type: "tcp", Address: addr, TLSDisable: tlsConfig == nil},
	})
	srv := &server{handler: handler, tlsConfig: tlsConfig, addr: addr, logger: logger}
	srv.serve(ln)
	defer srv.close()

	init, err := core.Initialize(ctx, &vault.InitParams{
		BarrierConfig: &vault.SealConfig{SecretShares: 1, SecretThreshold: 1},
	})
	if err != nil {
		return fmt.Errorf("initialising: %w", err)
	}
	key := append([]byte(nil), init.SecretShares[0]...)
	unsealed, err := core.Unseal(key)
	if err != nil {
		return fmt.Errorf("unsealing: %w", err)
	}
	if !unsealed {
		return errors.New("unsealing: still sealed after the only key share")
	}
	if err := waitActive(ctx, core); err != nil {
		return err
	}
	info := Info{
		Address:   apiAddr,
		RootToken: init.RootToken,
		UnsealKey: base64.StdEncoding.EncodeToString(init.SecretShares[0]),
		PID:       os.Getpid(),
		Version:   vaultVersion(),
	}
	if err := writeInfo(cfg.infoFile, info); err != nil {
		return err
	}
	logger.Info("serving", "address", apiAddr)

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2)
	for {
		select {
		case <-ctx.Done():
			logger.Info("stopping")
			return nil
		case s := <-sigs:
			if s == syscall.SIGUSR1 {
				srv.close()
				logger.Info("listener closed (SIGUSR1)")
				continue
			}
			if err := srv.reopen(); err != nil {
				logger.Error("listening again", "error", err)
				continue
			}
			logger.Info("listening again (SIGUSR2)", "address", apiAddr)
		}
	}
}

// waitActive waits until the core has finished post-unseal setup (mounts, auth, expiration).
func waitActive(ctx context.Context, core *vault.Core) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		standby, err := core.Standby()
		if err == nil && !standby && !core.Sealed() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("core not active 30 s after unseal (standby=%v, err=%v)", standby, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func writeInfo(path string, info Info) error {
	b, err := json.Marshal(info)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path == "" {
		_, err := os.Stdout.Write(b)
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".vault-info-*")
	if err != nil {
		return fmt.Errorf("-info-file: %w", err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(b); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("-info-file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("-info-file: %w", err)
	}
	// CreateTemp makes the file 0600; the rename publishes it complete or not at all.
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("-info-file: %w", err)
	}
	return nil
}

func vaultVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/hashicorp/vault" {
				return d.Version
			}
		}
	}
	return "unknown"
}

// server serves the Vault handler on a listener that can be closed and opened again on the same
// address, so tests can take Vault "down" without losing its in-memory state.
type server struct {
	handler   http.Handler
	tlsConfig *tls.Config
	addr      string
	logger    hclog.Logger

	mu  sync.Mutex
	srv *http.Server
}

func (s *server) serve(ln net.Listener) {
	if s.tlsConfig != nil {
		ln = tls.NewListener(ln, s.tlsConfig)
	}
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          s.logger.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	s.mu.Lock()
	s.srv = hs
	s.mu.Unlock()
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("serving", "error", err)
		}
	}()
}

// close stops listening and drops open connections.
func (s *server) close() {
	s.mu.Lock()
	hs := s.srv
	s.srv = nil
	s.mu.Unlock()
	if hs != nil {
		_ = hs.Close()
	}
}

func (s *server) reopen() error {
	s.mu.Lock()
	running := s.srv != nil
	s.mu.Unlock()
	if running {
		return nil
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return err
	}
	s.serve(ln)
	return nil
}

// registry is the plugin catalog's list of built-in plugins: only what the tests use.
type registry struct{}

var (
	credentialPlugins = map[string]logical.Factory{
		"kubernetes": credKubernetes.Factory,
		"jwt":        credJWT.Factory,
		"oidc":       credJWT.Factory,
	}
	secretsPlugins = map[string]logical.Factory{
		"kv":  logicalKV.Factory,
		"pki": logicalPKI.Factory,
	}
	databasePlugins = map[string]func() (interface{}, error){
		"postgresql-database-plugin": dbPostgres.New,
	}
)

func asBuiltin(f logical.Factory) func() (interface{}, error) {
	return func() (interface{}, error) { return f, nil }
}

func (registry) Get(name string, t consts.PluginType) (func() (interface{}, error), bool) {
	switch t {
	case consts.PluginTypeCredential:
		if f, ok := credentialPlugins[name]; ok {
			return asBuiltin(f), true
		}
	case consts.PluginTypeSecrets:
		if f, ok := secretsPlugins[name]; ok {
			return asBuiltin(f), true
		}
	case consts.PluginTypeDatabase:
		if f, ok := databasePlugins[name]; ok {
			return f, true
		}
	}
	return nil, false
}

func (registry) Keys(t consts.PluginType) []string {
	var keys []string
	switch t {
	case consts.PluginTypeCredential:
		for k := range credentialPlugins {
			keys = append(keys, k)
		}
	case consts.PluginTypeSecrets:
		for k := range secretsPlugins {
			keys = append(keys, k)
		}
	case consts.PluginTypeDatabase:
		for k := range databasePlugins {
			keys = append(keys, k)
		}
	}
	return keys
}

func (r registry) Contains(name string, t consts.PluginType) bool {
	_, ok := r.Get(name, t)
	return ok
}

func (r registry) DeprecationStatus(name string, t consts.PluginType) (consts.DeprecationStatus, bool) {
	if r.Contains(name, t) {
		return consts.Supported, true
	}
	return consts.Unknown, false
}

func (registry) IsBuiltinEntPlugin(string, consts.PluginType) bool { return false }
