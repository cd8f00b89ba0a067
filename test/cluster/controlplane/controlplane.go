// Package controlplane starts a real etcd and kube-apiserver for integration tests (build tag
// `integration`), from the binaries test/cluster/build.sh caches, and hands back a *rest.Config
// with cluster-admin rights. Both processes are bound to 127.0.0.1 on free ports, keep all their
// state in one directory, and are killed when the test process exits, even if it crashes.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/sscsi/secrets-store/test/cluster/pki"
)

// KubernetesVersion is the version test/cluster/build.sh builds and caches.
const KubernetesVersion = "v1.37.2"

// ErrBinaryMissing means a required binary is not installed; the message says how to get it.
var ErrBinaryMissing = errors.New("control plane binary missing")

// Config selects the binaries and the state directory of a control plane.
type Config struct {
	// Dir holds certificates, etcd data and the two logs. Required; a test passes t.TempDir().
	Dir string
	// BinDir holds kube-apiserver. Default: $SSCSI_K8S_BIN, else
	// ${SSCSI_CACHE:-/var/cache/sscsi}/k8s/<KubernetesVersion>/bin.
	BinDir string
	// Etcd is the etcd binary. Default: $SSCSI_ETCD, else etcd from PATH (Debian etcd-server).
	Etcd string
	// StartTimeout bounds how long Start waits for the API server to become ready. Default 90 s.
	StartTimeout time.Duration
}

// DefaultBinDir is where test/cluster/build.sh puts the Kubernetes binaries.
func DefaultBinDir() string {
	if d := os.Getenv("SSCSI_K8S_BIN"); d != "" {
		return d
	}
	cache := os.Getenv("SSCSI_CACHE")
	if cache == "" {
		cache = "/var/cache/sscsi"
	}
	return filepath.Join(cache, "k8s", KubernetesVersion, "bin")
}

func (c *Config) complete() error {
	if c.Dir == "" {
		return errors.New("controlplane: Config.Dir is empty: pass a directory for certificates and etcd data")
	}
	if c.BinDir == "" {
		c.BinDir = DefaultBinDir()
	}
	if c.Etcd == "" {
		c.Etcd = os.Getenv("SSCSI_ETCD")
	}
	if c.Etcd == "" {
		p, err := exec.LookPath("etcd")
		if err != nil {
			return fmt.Errorf("%w: etcd not in PATH: apt-get install etcd-server (test/cluster/build.sh does)", ErrBinaryMissing)
		}
		c.Etcd = p
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 90 * time.Second
	}
	api := filepath.Join(c.BinDir, "kube-apiserver")
	if _, err := os.Stat(api); err != nil {
		return fmt.Errorf("%w: %s: run test/cluster/build.sh (make test-integration does) to build Kubernetes %s",
			ErrBinaryMissing, api, KubernetesVersion)
	}
	return nil
}

// ControlPlane is a running etcd + kube-apiserver pair.
type ControlPlane struct {
	cfg     Config
	etcd    *proc
	api     *proc
	rest    *rest.Config
	APIURL  string
	EtcdURL string
}

// Start starts etcd and kube-apiserver and waits until the API server is ready. ctx bounds the
// start only; the processes run until Stop (or until the calling process exits).
func Start(ctx context.Context, cfg Config) (*ControlPlane, error) {
	if err := cfg.complete(); err != nil {
		return nil, err
	}
	certs, err := pki.Write(filepath.Join(cfg.Dir, "pki"), pki.ControlPlane(net.IPv4(10, 96, 78, 1)))
	if err != nil {
		return nil, err
	}
	servingCert, servingKey := certs.Cert("apiserver")
	caPEM, adminCert, adminKey, err := readFiles(certs.CACert, filepath.Join(certs.Dir, "admin.crt"), filepath.Join(certs.Dir, "admin.key"))
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	cp := &ControlPlane{
		cfg:     cfg,
		EtcdURL: "http://127.0.0.1:" + strconv.Itoa(ports[0]),
		APIURL:  "https://127.0.0.1:" + strconv.Itoa(ports[2]),
	}
	peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	cp.etcd, err = cp.spawn("etcd", cfg.Etcd,
		"--name", "integration", "--data-dir", filepath.Join(cfg.Dir, "etcd"),
		"--listen-client-urls", cp.EtcdURL, "--advertise-client-urls", cp.EtcdURL,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "integration="+peer, "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	cp.api, err = cp.spawn("kube-apiserver", filepath.Join(cfg.BinDir, "kube-apiserver"),
		"--etcd-servers="+cp.EtcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+strconv.Itoa(ports[2]),
		"--tls-cert-file="+servingCert, "--tls-private-key-file="+servingKey,
		"--client-ca-file="+certs.CACert,
		"--service-cluster-ip-range=10.96.78.0/24",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+certs.SAPub, "--service-account-signing-key-file="+certs.SAKey,
		"--authorization-mode=RBAC", "--endpoint-reconciler-type=none", "--allow-privileged=true",
		// No controller-manager creates default service accounts here, so pods could not be created.
		"--disable-admission-plugins=ServiceAccount",
		"--profiling=false")
	if err != nil {
		cp.Stop()
		return nil, err
	}
	cp.rest = &rest.Config{
		Host: cp.APIURL,
		TLSClientConfig: rest.TLSClientConfig{
			CAData: caPEM, CertData: adminCert, KeyData: adminKey,
		},
		QPS: 100, Burst: 200,
	}
	if err := cp.waitReady(ctx); err != nil {
		cp.Stop()
		return nil, err
	}
	return cp, nil
}

// RESTConfig returns a copy of the cluster-admin client configuration.
func (cp *ControlPlane) RESTConfig() *rest.Config { return rest.CopyConfig(cp.rest) }

// LogPath returns the path of a component's log ("etcd" or "kube-apiserver").
func (cp *ControlPlane) LogPath(component string) string {
	return filepath.Join(cp.cfg.Dir, component+".log")
}

// Stop kills both processes and waits for them to exit. It is safe to call more than once.
func (cp *ControlPlane) Stop() {
	for _, p := range []*proc{cp.api, cp.etcd} {
		if p == nil {
			continue
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// proc is a started child process; done is closed once it has exited and been reaped.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

func (cp *ControlPlane) spawn(name, bin string, args ...string) (*proc, error) {
	logf, err := os.Create(cp.LogPath(name))
	if err != nil {
		return nil, fmt.Errorf("creating %s log: %w", name, err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Die with the test process, so a crashed or killed test run leaves nothing behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s (%s): %w", name, bin, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

func (cp *ControlPlane) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, cp.cfg.StartTimeout)
	defer cancel()
	cs, err := kubernetes.NewForConfig(cp.rest)
	if err != nil {
		return fmt.Errorf("creating client: %w", err)
	}
	var last error
	for {
		for _, p := range []*proc{cp.etcd, cp.api} {
			select {
			case <-p.done:
				return fmt.Errorf("%s exited during start; see %s", p.name, cp.LogPath(p.name))
			default:
			}
		}
		_, last = cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver not ready after %s (last error: %v); see %s",
				cp.cfg.StartTimeout, last, cp.LogPath("kube-apiserver"))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// freePorts reserves n distinct free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// readFiles reads three files (the CA certificate and the admin client certificate and key).
func readFiles(a, b, c string) (ab, bb, cb []byte, err error) {
	out := make([][]byte, 3)
	for i, p := range []string{a, b, c} {
		if out[i], err = os.ReadFile(p); err != nil {
			return nil, nil, nil, fmt.Errorf("reading %s: %w", p, err)
		}
	}
	return out[0], out[1], out[2], nil
}
