package controlplane

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ControllerManagerConfig selects what a kube-controller-manager runs against.
type ControllerManagerConfig struct {
	// Dir holds its kubeconfig and log. Required.
	Dir string
	// REST is the client configuration it uses (certificate or token auth). Required.
	REST *rest.Config
	// Controllers is its --controllers list. Default: garbagecollector only, so that no
	// controller creates pods or tokens behind a test's back.
	Controllers []string
	// BinDir holds kube-controller-manager. Default: DefaultBinDir().
	BinDir string
}

// ControllerManager is a running kube-controller-manager.
type ControllerManager struct {
	cmd     *exec.Cmd
	done    chan struct{}
	LogPath string
}

// StartControllerManager starts kube-controller-manager without serving (--secure-port=0) and
// without leader election. It runs until Stop or until the calling process exits.
func StartControllerManager(cfg ControllerManagerConfig) (*ControllerManager, error) {
	if cfg.Dir == "" || cfg.REST == nil {
		return nil, errors.New("controlplane: ControllerManagerConfig needs Dir and REST")
	}
	if cfg.BinDir == "" {
		cfg.BinDir = DefaultBinDir()
	}
	if len(cfg.Controllers) == 0 {
		cfg.Controllers = []string{"garbagecollector"}
	}
	bin := filepath.Join(cfg.BinDir, "kube-controller-manager")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%w: %s: run test/cluster/build.sh to build Kubernetes %s", ErrBinaryMissing, bin, KubernetesVersion)
	}
	kubeconfig := filepath.Join(cfg.Dir, "kube-controller-manager.kubeconfig")
	if err := writeKubeconfig(kubeconfig, cfg.REST); err != nil {
		return nil, err
	}
	logPath := filepath.Join(cfg.Dir, "kube-controller-manager.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("creating kube-controller-manager log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(bin,
		"--kubeconfig="+kubeconfig,
		"--controllers="+strings.Join(cfg.Controllers, ","),
		"--leader-elect=false", "--secure-port=0", "--bind-address=127.0.0.1",
		"--concurrent-gc-syncs=5", "-v=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting kube-controller-manager: %w", err)
	}
	cm := &ControllerManager{cmd: cmd, done: make(chan struct{}), LogPath: logPath}
	go func() { _ = cmd.Wait(); close(cm.done) }()
	return cm, nil
}

// Exited reports whether the process has exited.
func (cm *ControllerManager) Exited() bool {
	select {
	case <-cm.done:
		return true
	default:
		return false
	}
}

// Stop kills the process and waits for it. It is safe to call more than once.
func (cm *ControllerManager) Stop() {
	_ = cm.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-cm.done:
	case <-time.After(10 * time.Second):
		_ = cm.cmd.Process.Kill()
		<-cm.done
	}
}

// ControllerManagerForTest starts kube-controller-manager against rc (see
// StartControllerManager) and stops it in t.Cleanup, printing its log tail if the test failed.
func ControllerManagerForTest(t testing.TB, rc *rest.Config, controllers ...string) *ControllerManager {
	t.Helper()
	cm, err := StartControllerManager(ControllerManagerConfig{Dir: t.TempDir(), REST: rc, Controllers: controllers})
	if err != nil {
		t.Fatalf("starting kube-controller-manager: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() || cm.Exited() {
			if b, err := os.ReadFile(cm.LogPath); err == nil {
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				if len(lines) > 30 {
					lines = lines[len(lines)-30:]
				}
				t.Logf("kube-controller-manager log tail:\n%s", strings.Join(lines, "\n"))
			}
		}
		cm.Stop()
	})
	return cm
}

// writeKubeconfig writes rc (inline CA, client certificate or bearer token) as a kubeconfig.
func writeKubeconfig(path string, rc *rest.Config) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: rc.Host, CertificateAuthorityData: rc.CAData}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{ClientCertificateData: rc.CertData, ClientKeyData: rc.KeyData, Token: rc.BearerToken}
	cfg.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	cfg.CurrentContext = "c"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
