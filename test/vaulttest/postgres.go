package vaulttest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// PostgresVersion is the PostgreSQL major version the helpers expect (Debian postgresql-15).
const PostgresVersion = "15"

// PostgresBinDir holds initdb, postgres and psql: $SSCSI_PG_BIN, else
// /usr/lib/postgresql/<PostgresVersion>/bin.
func PostgresBinDir() string {
	if d := os.Getenv("SSCSI_PG_BIN"); d != "" {
		return d
	}
	return "/usr/lib/postgresql/" + PostgresVersion + "/bin"
}

// PostgresOptions configure StartPostgres. The zero value is a throwaway server on a free port.
type PostgresOptions struct {
	// Dir holds the data directory, the socket and the log; it must not exist yet or be empty.
	// Default: a new directory under os.TempDir(), removed in T.Cleanup.
	Dir string
	// Port on 127.0.0.1 (0: a free one).
	Port int
}

// Postgres is a running PostgreSQL server on 127.0.0.1 with a superuser whose password only this
// struct knows.
type Postgres struct {
	Host     string
	Port     int
	User     string
	Password string
	Database string
	// Dir holds data/, the unix socket and postgres.log.
	Dir string

	cmd  *exec.Cmd
	done chan struct{}
}

// StartPostgres initialises a fresh PostgreSQL cluster and starts it, as the unprivileged
// "postgres" user when run as root (PostgreSQL refuses to run as root). It is stopped in
// T.Cleanup, and killed if the test process dies.
func StartPostgres(t T, opts ...PostgresOptions) *Postgres {
	t.Helper()
	var o PostgresOptions
	if len(opts) == 1 {
		o = opts[0]
	}
	bin := PostgresBinDir()
	for _, b := range []string{"initdb", "postgres", "psql"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			t.Fatalf("PostgreSQL %s missing (%v): apt-get install postgresql-%s (or set SSCSI_PG_BIN)", b, err, PostgresVersion)
		}
	}
	var cred *syscall.Credential
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, PostgreSQL needs an unprivileged user: no user \"postgres\" (%v); apt-get install postgresql-%s creates it", err, PostgresVersion)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	dir := o.Dir
	if dir == "" {
		// Not T.TempDir(): its parents are 0700 root, which the postgres user cannot traverse.
		d, err := os.MkdirTemp("", "vaulttest-pg-")
		if err != nil {
			t.Fatalf("vaulttest: %v", err)
		}
		dir = d
		t.Cleanup(func() { _ = os.RemoveAll(d) })
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatalf("vaulttest: %v", err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatalf("vaulttest: %v", err)
	}
	port := o.Port
	if port == 0 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("vaulttest: finding a free port: %v", err)
		}
		port = l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
	}
	pw := make([]byte, 16)
	_, _ = rand.Read(pw)
	p := &Postgres{
		Host: "127.0.0.1", Port: port, User: "postgres", Password: hex.EncodeToString(pw),
		Database: "postgres", Dir: dir,
	}
	pwFile := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pwFile, []byte(p.Password+"\n"), 0o600); err != nil {
		t.Fatalf("vaulttest: %v", err)
	}
	_ = os.Chown(pwFile, uid, gid)
	initdb := exec.CommandContext(t.Context(), filepath.Join(bin, "initdb"),
		"-D", filepath.Join(dir, "data"), "-U", p.User, "--pwfile", pwFile,
		"--auth", "scram-sha-256", "-E", "UTF8", "--locale", "C", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("vaulttest: initdb: %v\n%s", err, out)
	}
	_ = os.Remove(pwFile)

	logf, err := os.Create(filepath.Join(dir, "postgres.log"))
	if err != nil {
		t.Fatalf("vaulttest: %v", err)
	}
	defer func() { _ = logf.Close() }()
	p.cmd = exec.Command(filepath.Join(bin, "postgres"), "-D", filepath.Join(dir, "data"),
		"-p", strconv.Itoa(port), "-k", dir, "-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off", "-c", "shared_buffers=16MB", "-c", "max_connections=50")
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("vaulttest: starting postgres: %v", err)
	}
	p.done = make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("PostgreSQL log tail:\n%s", logTail(filepath.Join(dir, "postgres.log"), 20))
		}
		p.stop()
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := p.Query(t.Context(), p.User, p.Password, "SELECT 1")
		if err == nil {
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("vaulttest: postgres exited during start; log:\n%s", logTail(filepath.Join(dir, "postgres.log"), 20))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("vaulttest: PostgreSQL not accepting connections after 60 s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *Postgres) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	// SIGINT is PostgreSQL's "fast" shutdown.
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// ConnectionURL is the connection_url for Vault's postgresql-database-plugin: Vault substitutes
// {{username}} and {{password}}.
func (p *Postgres) ConnectionURL() string {
	return fmt.Sprintf("postgresql://{{username}}:{{password}}@%s:%d/%s?sslmode=disable", p.Host, p.Port, p.Database)
}

// Query runs sql as user (with password) through psql over TCP and returns its unaligned,
// tuples-only output. It proves a credential works against the real server. The password goes
// to psql through its environment, never its arguments.
func (p *Postgres) Query(ctx context.Context, user, password, sql string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(PostgresBinDir(), "psql"),
		"-h", p.Host, "-p", strconv.Itoa(p.Port), "-U", user, "-d", p.Database,
		"-w", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+password, "PGCONNECT_TIMEOUT=5")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("psql as %s: %w: %s", user, err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}
