package controlplane

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ControllerManager is a running kube-controller-manager (garbage collector, service accounts,
// namespace deletion, ...) attached to a control plane.
type ControllerManager struct {
	cp *ControlPlane // owns the process and its log
}

// StartControllerManager starts kube-controller-manager with the default controllers against the
// API server of rc, keeping its kubeconfig and log in cfg.Dir, and waits until its service account
// controller has created the "default" service account. Stop it with Stop.
func StartControllerManager(ctx context.Context, cfg Config, rc *rest.Config) (*ControllerManager, error) {
	if err := cfg.complete(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", cfg.Dir, err)
	}
	kubeconfig := filepath.Join(cfg.Dir, "controller-manager.kubeconfig")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: rc.Host, CertificateAuthorityData: rc.CAData}
	kc.AuthInfos["u"] = &clientcmdapi.AuthInfo{ClientCertificateData: rc.CertData, ClientKeyData: rc.KeyData, Token: rc.BearerToken}
	kc.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	kc.CurrentContext = "c"
	if err := clientcmd.WriteToFile(*kc, kubeconfig); err != nil {
		return nil, fmt.Errorf("writing controller-manager kubeconfig: %w", err)
	}
	cm := &ControllerManager{cp: &ControlPlane{cfg: cfg}}
	p, err := cm.cp.spawn("kube-controller-manager", filepath.Join(cfg.BinDir, "kube-controller-manager"),
		"--kubeconfig="+kubeconfig, "--leader-elect=false", "--bind-address=127.0.0.1",
		"--secure-port=0", "--controllers=*", "--profiling=false")
	if err != nil {
		return nil, err
	}
	cm.cp.api = p
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		cm.Stop()
		return nil, fmt.Errorf("creating client: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	for {
		select {
		case <-p.done:
			return nil, fmt.Errorf("kube-controller-manager exited during start; see %s", cm.LogPath())
		default:
		}
		if _, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err == nil {
			return cm, nil
		}
		select {
		case <-ctx.Done():
			cm.Stop()
			return nil, fmt.Errorf("kube-controller-manager not working after %s (no default service account); see %s",
				cfg.StartTimeout, cm.LogPath())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// LogPath returns the path of the controller manager's log.
func (cm *ControllerManager) LogPath() string { return cm.cp.LogPath("kube-controller-manager") }

// Stop stops the controller manager and waits for it to exit.
func (cm *ControllerManager) Stop() { cm.cp.Stop() }

// ControllerManagerForTest starts kube-controller-manager against rc (from ForTest) for the rest of
// the test, e.g. so that the garbage collector deletes objects whose owners are gone.
func ControllerManagerForTest(t testing.TB, rc *rest.Config) {
	t.Helper()
	cm, err := StartControllerManager(t.Context(), Config{Dir: t.TempDir()}, rc)
	if err != nil {
		t.Fatalf("starting kube-controller-manager: %v", err)
	}
	t.Cleanup(cm.Stop)
}
