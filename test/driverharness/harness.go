// Package driverharness runs the real driver in-process for the sanity
// suite and the benchmarks: a real etcd + kube-apiserver with the CRDs
// installed, the fake provider on a unix socket, and driver.Run serving its
// CSI socket. Only tests import it.
package driverharness

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/sscsi/secrets-store/driver"
	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
	"github.com/sscsi/secrets-store/manifests"
	"github.com/sscsi/secrets-store/providers/fake"
	"github.com/sscsi/secrets-store/providers/plugin"
	"github.com/sscsi/secrets-store/test/cluster/controlplane"
)

// Options tune the harness.
type Options struct {
	// Rotation enables --enable-secret-rotation with this interval.
	Rotation time.Duration
	// QPS/Burst of the driver's API client (defaults: driver defaults).
	QPS   float32
	Burst int
	// Binary, when set, runs that driver executable as a child process
	// (benchmarks measure its memory) instead of driver.Run in-process.
	Binary string
}

// Env is a running driver with its dependencies.
type Env struct {
	Dir        string
	Endpoint   string // unix socket path of the CSI driver
	Kubeconfig string
	REST       *rest.Config
	Fake       *fake.Backend
	CRD        rest.Interface
	// PID is the driver's process id when Options.Binary is used.
	PID int

	ctx    context.Context // ends at cleanup
	binary string
	args   []string
	done   chan error // the driver's exit
}

// Start brings everything up; t.Cleanup tears it down.
func Start(t testing.TB, o Options) *Env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the driver mounts real tmpfs filesystems: run as root")
	}
	dir := t.TempDir()
	rc := controlplane.ForTest(t)
	env := &Env{Dir: dir, REST: rc, Endpoint: filepath.Join(dir, "csi.sock"), Kubeconfig: filepath.Join(dir, "kubeconfig")}
	if err := WriteKubeconfig(rc, env.Kubeconfig); err != nil {
		t.Fatal(err)
	}
	if err := InstallCRDs(t.Context(), rc); err != nil {
		t.Fatal(err)
	}
	var err error
	if env.CRD, err = CRDClient(rc); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	provDir := filepath.Join(dir, "providers")
	env.Fake = fake.New()
	psrv, err := plugin.New(plugin.Config{Name: "fake", Backend: env.Fake})
	if err != nil {
		t.Fatal(err)
	}
	pdone := make(chan error, 1)
	go func() { pdone <- psrv.Serve(ctx, filepath.Join(provDir, "fake.sock")) }()

	cfg := driver.Defaults()
	cfg.Endpoint = "unix://" + env.Endpoint
	cfg.NodeID = "harness-node"
	cfg.ProviderVolume = provDir
	cfg.AdditionalProviderPaths = nil
	cfg.MetricsAddr = "127.0.0.1:0"
	cfg.Kubeconfig = env.Kubeconfig
	cfg.KubeletRegistration = false
	// Its own: at start the driver reads the records of the volumes below
	// <kubelet-dir>/pods, which must not be a real node's.
	cfg.KubeletDir = filepath.Join(dir, "kubelet")
	if o.Rotation > 0 {
		cfg.EnableSecretRotation, cfg.RotationPollInterval = true, o.Rotation
	}
	if o.QPS > 0 {
		cfg.KubeAPIQPS, cfg.KubeAPIBurst = o.QPS, o.Burst
	}
	env.ctx, env.binary = ctx, o.Binary
	if o.Binary != "" {
		// SSCSI_DRIVER_ARGS adds flags, e.g. "--enable-pprof --pprof-port=6066" to profile a
		// benchmark's driver.
		env.args = append(argsFor(cfg), strings.Fields(os.Getenv("SSCSI_DRIVER_ARGS"))...)
		env.startBinary(t)
	} else {
		env.done = make(chan error, 1)
		go func() { env.done <- driver.Run(ctx, cfg) }()
	}
	t.Cleanup(func() {
		cancel()
		<-pdone
		if err := <-env.done; err != nil {
			t.Errorf("driver exited with error: %v", err)
		}
	})
	env.waitServing(t, filepath.Join(provDir, "fake.sock"))
	return env
}

// startBinary starts the driver executable; its output is appended to
// <Dir>/driver.log.
func (e *Env) startBinary(t testing.TB) {
	t.Helper()
	cmd := exec.CommandContext(e.ctx, e.binary, e.args...)
	logf, err := os.OpenFile(filepath.Join(e.Dir, "driver.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", e.binary, err)
	}
	e.PID = cmd.Process.Pid
	done := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		_ = logf.Close()
		if e.ctx.Err() != nil {
			err = nil // stopped by us
		}
		done <- err
	}()
	e.done = done
}

// waitServing waits until the driver's CSI socket (and the others named)
// accept connections; a socket left by a killed driver does not.
func (e *Env) waitServing(t testing.TB, others ...string) {
	t.Helper()
	// Generous: a loaded machine starts a process slowly.
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok := isSocket(e.Endpoint)
		for _, o := range others {
			ok = ok && isSocket(o)
		}
		if ok {
			return
		}
		select {
		case err := <-e.done:
			t.Fatalf("driver exited during start: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("driver or provider socket did not appear in 60s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill ends the driver process with SIGKILL, as a crash or an OOM kill
// does (no shutdown code runs), and waits for it to exit (Options.Binary
// only).
func (e *Env) Kill(t testing.TB) {
	t.Helper()
	if e.binary == "" {
		t.Fatal("driverharness: Kill needs Options.Binary")
	}
	if err := syscall.Kill(e.PID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill driver: %v", err)
	}
	if err := <-e.done; err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("driver exit after SIGKILL: %v", err)
	}
}

// Restart starts the driver binary again with the same flags on the same
// directories (its volumes stay mounted) and waits until it serves.
func (e *Env) Restart(t testing.TB) {
	t.Helper()
	e.startBinary(t)
	e.waitServing(t)
}

// argsFor renders cfg as the driver's command-line flags.
func argsFor(c driver.Config) []string {
	a := []string{
		"--endpoint=" + c.Endpoint, "--nodeid=" + c.NodeID, "--provider-volume=" + c.ProviderVolume,
		"--additional-provider-volume-paths=", "--metrics-addr=" + c.MetricsAddr, "--kubeconfig=" + c.Kubeconfig,
		"--kubelet-registration=false", "--kubelet-dir=" + c.KubeletDir, fmt.Sprintf("--kube-api-qps=%v", c.KubeAPIQPS), fmt.Sprintf("--kube-api-burst=%d", c.KubeAPIBurst),
	}
	if c.EnableSecretRotation {
		a = append(a, "--enable-secret-rotation", "--rotation-poll-interval="+c.RotationPollInterval.String())
	}
	return a
}

func isSocket(p string) bool {
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Type() != fs.ModeSocket {
		return false
	}
	c, err := net.Dial("unix", p)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// CRDClient is a REST client for secrets-store.csi.x-k8s.io/v1 on rc.
func CRDClient(rc *rest.Config) (rest.Interface, error) {
	crdCfg := rest.CopyConfig(rc)
	crdCfg.GroupVersion = &ssv1.SchemeGroupVersion
	crdCfg.APIPath = "/apis"
	crdCfg.QPS, crdCfg.Burst = 1000, 1000
	scheme := runtime.NewScheme()
	_ = ssv1.AddToScheme(scheme)
	crdCfg.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	return rest.RESTClientFor(crdCfg)
}

// CreateSPC creates a SecretProviderClass for the fake provider.
func (e *Env) CreateSPC(ctx context.Context, ns, name, objects string) error {
	spc := &ssv1.SecretProviderClass{
		TypeMeta:   metav1.TypeMeta{APIVersion: ssv1.SchemeGroupVersion.String(), Kind: "SecretProviderClass"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       ssv1.SecretProviderClassSpec{Provider: "fake", Parameters: map[string]string{"objects": objects}},
	}
	return e.CRD.Post().Namespace(ns).Resource("secretproviderclasses").Body(spc).Do(ctx).Error()
}

// WriteKubeconfig serialises rc (certificate or token auth) to path.
func WriteKubeconfig(rc *rest.Config, path string) error {
	c := clientcmdapi.NewConfig()
	c.Clusters["c"] = &clientcmdapi.Cluster{Server: rc.Host, CertificateAuthorityData: rc.CAData, CertificateAuthority: rc.CAFile}
	c.AuthInfos["u"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: rc.CertData, ClientKeyData: rc.KeyData,
		ClientCertificate: rc.CertFile, ClientKey: rc.KeyFile, Token: rc.BearerToken,
	}
	c.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	c.CurrentContext = "c"
	return clientcmd.WriteToFile(*c, path)
}

// InstallCRDs applies manifests/crds and waits until they are served.
func InstallCRDs(ctx context.Context, rc *rest.Config) error {
	cs, err := apiextclient.NewForConfig(rc)
	if err != nil {
		return err
	}
	ents, err := fs.ReadDir(manifests.CRDs, "crds")
	if err != nil {
		return fmt.Errorf("read embedded CRDs: %w", err)
	}
	for _, e := range ents {
		b, err := fs.ReadFile(manifests.CRDs, "crds/"+e.Name())
		if err != nil {
			return err
		}
		for _, doc := range bytes.Split(b, []byte("\n---")) {
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			crd := &apiextv1.CustomResourceDefinition{}
			if err := yaml.UnmarshalStrict(doc, crd); err != nil {
				return fmt.Errorf("parse %s: %w", e.Name(), err)
			}
			if _, err := cs.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("create CRD %s: %w", crd.Name, err)
			}
			err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
				got, err := cs.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
				if err != nil {
					return false, nil
				}
				for _, c := range got.Status.Conditions {
					if c.Type == apiextv1.Established && c.Status == apiextv1.ConditionTrue {
						return true, nil
					}
				}
				return false, nil
			})
			if err != nil {
				return fmt.Errorf("CRD %s not established: %w", crd.Name, err)
			}
		}
	}
	return nil
}
