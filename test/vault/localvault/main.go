// Command localvault runs a Vault server (test/vault/server) and a PostgreSQL 15 for the local
// node (test/cluster) or `make demo-vault`, configured through package vaulttest exactly as the
// integration tests configure theirs: the kubernetes auth method against the node's apiserver
// (every login a real TokenReview), KV v2 at secret/, the database engine at database/ with role
// "app" issuing leased PostgreSQL users, a policy "app" and a kubernetes auth role "app" bound to
// one namespace and service account.
//
//	localvault serve -kubeconfig K -dir D [-pg-dir P]  # runs until SIGTERM; D/info.json (0600) when ready
//	localvault put -dir D PATH KEY=VALUE...   # write KV v2 secret/PATH (prints the new version)
//	localvault check-db -dir D -user U        # log in to PostgreSQL as U, password on stdin
//	localvault leases -dir D PREFIX           # how many leases Vault holds under PREFIX
//
// The root token is written only to D/info.json (mode 0600), never to stdout or a log.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sscsi/secrets-store/internal/kubeapi"
	"github.com/sscsi/secrets-store/test/vaulttest"
)

// Info is D/info.json.
type Info struct {
	Address   string `json:"address"`
	RootToken string `json:"root_token"`
	PGHost    string `json:"pg_host"`
	PGPort    int    `json:"pg_port"`
	PID       int    `json:"pid"`
}

type config struct {
	command        string
	args           []string
	dir            string
	pgDir          string
	kubeconfig     string
	listen         string
	pgPort         int
	namespace      string
	serviceAccount string
	dbDefaultTTL   time.Duration
	user           string
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: localvault serve|put|check-db|leases -dir D ...")
		os.Exit(2)
	}
	cfg := config{command: os.Args[1]}
	fs := flag.NewFlagSet("localvault "+cfg.command, flag.ExitOnError)
	fs.StringVar(&cfg.dir, "dir", "", "state directory (Vault log, PostgreSQL data, info.json); required")
	fs.StringVar(&cfg.pgDir, "pg-dir", "", "serve: PostgreSQL's directory (default D/pg); every parent must be traversable by the postgres user")
	fs.StringVar(&cfg.kubeconfig, "kubeconfig", "", "serve: admin kubeconfig of the cluster whose apiserver reviews logins")
	fs.StringVar(&cfg.listen, "listen", "127.0.0.1:8200", "serve: Vault API address")
	fs.IntVar(&cfg.pgPort, "pg-port", 0, "serve: PostgreSQL port on 127.0.0.1 (0: a free one)")
	fs.StringVar(&cfg.namespace, "namespace", "default", "serve: namespace the kubernetes auth role \"app\" accepts")
	fs.StringVar(&cfg.serviceAccount, "service-account", "default", "serve: service account the role \"app\" accepts")
	fs.DurationVar(&cfg.dbDefaultTTL, "db-ttl", time.Hour, "serve: default TTL of database credentials")
	fs.StringVar(&cfg.user, "user", "", "check-db: PostgreSQL user")
	_ = fs.Parse(os.Args[2:])
	cfg.args = fs.Args()
	if cfg.dir == "" {
		log.Fatal("localvault: -dir is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var err error
	switch cfg.command {
	case "serve":
		err = serve(ctx, cfg)
	case "put":
		err = put(ctx, cfg)
	case "check-db":
		err = checkDB(ctx, cfg)
	case "leases":
		err = leases(ctx, cfg)
	default:
		err = fmt.Errorf("unknown command %q: want serve, put, check-db or leases", cfg.command)
	}
	if err != nil {
		log.Fatalf("localvault %s: %v", cfg.command, err)
	}
}

func serve(ctx context.Context, cfg config) (err error) {
	if cfg.kubeconfig == "" {
		return errors.New("-kubeconfig is required")
	}
	rc, err := kubeapi.Load(cfg.kubeconfig)
	if err != nil {
		return fmt.Errorf("-kubeconfig: %w", err)
	}
	// 0711: the postgres user must traverse it to its data directory; every file in it is 0600.
	if err := os.MkdirAll(cfg.dir, 0o711); err != nil {
		return err
	}
	if err := os.Chmod(cfg.dir, 0o711); err != nil {
		return err
	}
	pgDir := cfg.pgDir
	if pgDir == "" {
		pgDir = filepath.Join(cfg.dir, "pg")
	}
	// Each start is a fresh Vault (in-memory) and a fresh database.
	if err := os.RemoveAll(pgDir); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(cfg.dir, "info.json"))
	t := &daemonT{ctx: ctx, dir: cfg.dir}
	defer t.runCleanups()
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(fatal)
			if !ok {
				panic(r)
			}
			t.failed = true
			err = errors.New(string(f))
		}
	}()
	start := time.Now()
	pg := vaulttest.StartPostgres(t, vaulttest.PostgresOptions{Dir: pgDir, Port: cfg.pgPort})
	s := vaulttest.Start(t, vaulttest.Options{Listen: cfg.listen, Dir: cfg.dir, LogLevel: "info"})
	s.EnableKV(t, "secret", 2)
	s.EnableDatabase(t, "database", pg, vaulttest.DBRole{Name: "app", DefaultTTL: cfg.dbDefaultTTL, MaxTTL: 24 * time.Hour})
	s.WritePolicy(t, "app", `
path "secret/data/*" { capabilities = ["read"] }
path "secret/metadata/*" { capabilities = ["read"] }
path "database/creds/app" { capabilities = ["read"] }
path "sys/leases/renew" { capabilities = ["update"] }
`)
	s.EnableKubernetesAuth(t, "kubernetes", rc)
	s.KubernetesRole(t, "kubernetes", "app", vaulttest.Role{
		ServiceAccounts: []string{cfg.serviceAccount}, Namespaces: []string{cfg.namespace},
		Policies: []string{"app"}, TTL: time.Hour,
	})
	b, err := json.Marshal(Info{Address: s.Addr, RootToken: s.RootToken, PGHost: pg.Host, PGPort: pg.Port, PID: os.Getpid()})
	if err != nil {
		return err
	}
	tmp := filepath.Join(cfg.dir, ".info.json")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(cfg.dir, "info.json")); err != nil {
		return err
	}
	log.Printf("localvault: Vault %s at %s and PostgreSQL at %s:%d ready in %s (kubernetes auth role \"app\" for %s/%s); root token in %s",
		vaulttest.VaultVersion, s.Addr, pg.Host, pg.Port, time.Since(start).Round(time.Millisecond),
		cfg.namespace, cfg.serviceAccount, filepath.Join(cfg.dir, "info.json"))
	<-ctx.Done()
	log.Printf("localvault: stopping")
	return nil
}

func readInfo(dir string) (Info, error) {
	var i Info
	b, err := os.ReadFile(filepath.Join(dir, "info.json"))
	if err != nil {
		return i, fmt.Errorf("is `localvault serve -dir %s` running? %w", dir, err)
	}
	return i, json.Unmarshal(b, &i)
}

func put(ctx context.Context, cfg config) error {
	if len(cfg.args) < 2 {
		return errors.New("usage: localvault put -dir D PATH KEY=VALUE [KEY=VALUE]")
	}
	info, err := readInfo(cfg.dir)
	if err != nil {
		return err
	}
	data := map[string]any{}
	for _, kv := range cfg.args[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("%q: want KEY=VALUE", kv)
		}
		data[k] = v
	}
	t := &daemonT{ctx: ctx, dir: cfg.dir}
	defer t.runCleanups()
	return catch(func() {
		s := vaulttest.Connect(t, info.Address, info.RootToken, nil)
		fmt.Println(s.PutKV(t, "secret", cfg.args[0], data))
	})
}

// leases prints how many leases Vault holds under a prefix (e.g. database/creds/app), never their IDs.
func leases(ctx context.Context, cfg config) error {
	if len(cfg.args) != 1 {
		return errors.New("usage: localvault leases -dir D PREFIX")
	}
	info, err := readInfo(cfg.dir)
	if err != nil {
		return err
	}
	t := &daemonT{ctx: ctx, dir: cfg.dir}
	defer t.runCleanups()
	return catch(func() {
		s := vaulttest.Connect(t, info.Address, info.RootToken, nil)
		fmt.Println(len(s.Leases(t, cfg.args[0])))
	})
}

func checkDB(ctx context.Context, cfg config) error {
	if cfg.user == "" {
		return errors.New("-user is required (the password is read from stdin)")
	}
	info, err := readInfo(cfg.dir)
	if err != nil {
		return err
	}
	pw, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && pw == "" {
		return fmt.Errorf("reading the password from stdin: %w", err)
	}
	pg := &vaulttest.Postgres{Host: info.PGHost, Port: info.PGPort, Database: "postgres"}
	out, err := pg.Query(ctx, cfg.user, strings.TrimRight(pw, "\r\n"), "SELECT current_user")
	if err != nil {
		return err
	}
	fmt.Printf("logged in to PostgreSQL as %s\n", out)
	return nil
}

// daemonT is the vaulttest.T of a program: Fatalf unwinds to the command (catch), cleanups run
// when the command ends, in reverse order.
type daemonT struct {
	ctx    context.Context
	dir    string
	failed bool

	mu       sync.Mutex // guards cleanups
	cleanups []func()
}

type fatal string

func (*daemonT) Helper() {}

func (t *daemonT) Fatalf(format string, args ...any) { panic(fatal(fmt.Sprintf(format, args...))) }

func (*daemonT) Logf(format string, args ...any) { log.Printf(format, args...) }

func (t *daemonT) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

func (t *daemonT) TempDir() string {
	d, err := os.MkdirTemp(t.dir, "tmp-")
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}

func (t *daemonT) Context() context.Context { return t.ctx }

func (t *daemonT) Failed() bool { return t.failed }

func (t *daemonT) runCleanups() {
	t.mu.Lock()
	cs := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}

// catch runs f and turns a Fatalf inside it into an error.
func catch(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			msg, ok := r.(fatal)
			if !ok {
				panic(r)
			}
			err = errors.New(string(msg))
		}
	}()
	f()
	return nil
}
