// Package moto finds and starts a local moto_server (an AWS API emulator)
// for tests, benchmarks and the cluster scripts: Start for a test (a free
// loopback port), StartAt for a fixed address (cmd motoserver, which
// test/cluster/up.sh and hack/demo.sh run). It is the only place that
// knows how to find and start moto.
package moto

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Server is a running moto_server.
type Server struct {
	// URL is the emulator's endpoint, e.g. http://127.0.0.1:41234.
	URL  string
	cmd  *exec.Cmd
	done chan error
}

// Find returns the command line that starts moto_server: $MOTO_SERVER,
// moto_server on PATH, a pyenv installation ($PYENV_ROOT or /root/.pyenv),
// or python3 -m moto.server when the moto module is importable.
func Find() ([]string, error) {
	if p := os.Getenv("MOTO_SERVER"); p != "" {
		return strings.Fields(p), nil
	}
	if p, err := exec.LookPath("moto_server"); err == nil {
		return []string{p}, nil
	}
	roots := []string{os.Getenv("PYENV_ROOT"), filepath.Join(os.Getenv("HOME"), ".pyenv"), "/root/.pyenv"}
	for _, root := range roots {
		if root == "" {
			continue
		}
		matches, _ := filepath.Glob(filepath.Join(root, "versions", "*", "bin", "moto_server"))
		for i := len(matches) - 1; i >= 0; i-- { // newest Python first
			if st, err := os.Stat(matches[i]); err == nil && st.Mode()&0o111 != 0 {
				return []string{matches[i]}, nil
			}
		}
	}
	for _, py := range []string{"python3.11", "python3"} {
		if p, err := exec.LookPath(py); err == nil && exec.Command(p, "-c", "import moto.server").Run() == nil {
			return []string{p, "-m", "moto.server"}, nil
		}
	}
	return nil, errors.New("moto_server not found: install moto[server] (pip install 'moto[server]') or set MOTO_SERVER to its path")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start runs moto_server on a free 127.0.0.1 port and waits until it
// answers. log receives its output (nil: discarded). The server stops
// when ctx is done or Stop is called.
func Start(ctx context.Context, log io.Writer) (*Server, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // the free port can be taken in between
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s, err := StartAt(ctx, "127.0.0.1:"+strconv.Itoa(port), log)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// StartAt runs moto_server on addr (host:port) and waits until it
// answers; see Start. moto_server dies with the process that started it.
func StartAt(ctx context.Context, addr string, log io.Writer) (*Server, error) {
	argv, err := Find()
	if err != nil {
		return nil, err
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("moto address %q: %w", addr, err)
	}
	args := append(argv[1:], "-H", host, "-p", port)
	cmd := exec.CommandContext(ctx, argv[0], args...)
	if log == nil {
		log = io.Discard
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "MOTO_ALLOW_NONEXISTENT_REGION=true")
	// Never outlive the test or script wrapper that started it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	s := &Server{URL: "http://" + addr, cmd: cmd, done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait() }()
	if err := s.waitReady(ctx, 60*time.Second); err != nil {
		s.Stop()
		return nil, fmt.Errorf("moto_server did not start on %s: %w", addr, err)
	}
	return s, nil
}

// Wait returns when the server exits (with its exit error) or ctx ends.
func (s *Server) Wait(ctx context.Context) error {
	select {
	case err := <-s.done:
		s.done <- err
		return fmt.Errorf("moto_server exited: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Server) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-s.done:
			s.done <- err
			return fmt.Errorf("exited: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/moto-api/", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			return nil
		}
	}
	return errors.New("not answering after " + timeout.String())
}

// Reset drops all emulated state.
func (s *Server) Reset(ctx context.Context) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/moto-api/reset", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("reset moto: %w", err)
	}
	resp.Body.Close()
	return nil
}

// Stop kills the server and waits for it.
func (s *Server) Stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
	}
	select {
	case err := <-s.done:
		s.done <- err
	case <-time.After(10 * time.Second):
	}
}
