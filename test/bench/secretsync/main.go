// Command secretsync measures the SecretSync controller against a real
// etcd + kube-apiserver with the fake provider (make bench-secretsync):
//
//  1. API calls and backend (provider) calls per refresh of -calls
//     SecretSyncs (default 100), counted on the controller's own HTTP
//     transport and in the fake backend, over one poll cycle after every
//     Secret exists;
//  2. resident memory of the controller binary (bin/secrets-store-sync-controller,
//     built first) with -memory SecretSyncs (default 1,000) synced, read
//     from /proc (VmRSS now, VmHWM the peak), against the upstream chart's
//     128 Mi limit.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/sscsi/secrets-store/manifests"
	"github.com/sscsi/secrets-store/providers/fake"
	"github.com/sscsi/secrets-store/providers/plugin"
	"github.com/sscsi/secrets-store/synccontroller"
	"github.com/sscsi/secrets-store/test/cluster/controlplane"
)

var (
	ssGVR  = schema.GroupVersionResource{Group: "secret-sync.x-k8s.io", Version: "v1alpha1", Resource: "secretsyncs"}
	spcGVR = schema.GroupVersionResource{Group: "secrets-store.csi.x-k8s.io", Version: "v1", Resource: "secretproviderclasses"}
)

func main() {
	calls := flag.Int("calls", 100, "SecretSyncs for the calls-per-refresh measurement")
	memory := flag.Int("memory", 1000, "SecretSyncs for the memory measurement")
	bin := flag.String("bin", "bin/secrets-store-sync-controller", "controller binary for the memory measurement")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *calls, *memory, *bin); err != nil {
		fmt.Fprintln(os.Stderr, "bench-secretsync:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, nCalls, nMem int, bin string) error {
	dir, err := os.MkdirTemp("", "sscsi-bench-secretsync-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cp, err := controlplane.Start(ctx, controlplane.Config{Dir: filepath.Join(dir, "cp")})
	if err != nil {
		return fmt.Errorf("control plane: %w", err)
	}
	defer cp.Stop()
	rc := cp.RESTConfig()
	rc.QPS, rc.Burst = 500, 1000
	if err := installCRDs(ctx, rc); err != nil {
		return err
	}
	backend := fake.New()
	srv, err := plugin.New(plugin.Config{Name: "fake", Version: "bench", Backend: backend})
	if err != nil {
		return err
	}
	pdir := filepath.Join(dir, "providers")
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	go func() { _ = srv.Serve(pctx, filepath.Join(pdir, "fake.sock")) }()

	if err := measureCalls(ctx, rc, pdir, backend, nCalls); err != nil {
		return err
	}
	return measureMemory(ctx, rc, dir, pdir, bin, nMem)
}

func installCRDs(ctx context.Context, rc *rest.Config) error {
	cs := apiextclient.NewForConfigOrDie(rc)
	ents, err := manifests.CRDs.ReadDir("crds")
	if err != nil {
		return err
	}
	for _, e := range ents {
		b, _ := manifests.CRDs.ReadFile("crds/" + e.Name())
		crd := &apiextv1.CustomResourceDefinition{}
		if err := yaml.Unmarshal(b, crd); err != nil {
			return err
		}
		if _, err := cs.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil {
			return err
		}
		if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			c, err := cs.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			for _, cond := range c.Status.Conditions {
				if cond.Type == apiextv1.Established && cond.Status == apiextv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		}); err != nil {
			return fmt.Errorf("CRD %s not established", crd.Name)
		}
	}
	return nil
}

// populate creates namespace ns with a SecretProviderClass and n
// SecretSyncs (two keys each) and waits for their Secrets.
func populate(ctx context.Context, rc *rest.Config, ns string, n int) error {
	cs := kubernetes.NewForConfigOrDie(rc)
	dyn := dynamic.NewForConfigOrDie(rc)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	spc := map[string]any{"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass", "metadata": map[string]any{"name": "spc"},
		"spec": map[string]any{"provider": "fake", "parameters": map[string]any{"objects": "- objectName: user\n  value: admin\n- objectName: password\n  value: " + strings.Repeat("p", 64) + "\n"}}}
	if _, err := dyn.Resource(spcGVR).Namespace(ns).Create(ctx, &unstructured.Unstructured{Object: spc}, metav1.CreateOptions{}); err != nil {
		return err
	}
	for i := range n {
		ss := map[string]any{"apiVersion": "secret-sync.x-k8s.io/v1alpha1", "kind": "SecretSync", "metadata": map[string]any{"name": fmt.Sprintf("s%04d", i)},
			"spec": map[string]any{"serviceAccountName": "app", "secretProviderClassName": "spc", "secretObject": map[string]any{
				"data": []any{map[string]any{"sourcePath": "user", "targetKey": "user"}, map[string]any{"sourcePath": "password", "targetKey": "password"}}}}}
		if _, err := dyn.Resource(ssGVR).Namespace(ns).Create(ctx, &unstructured.Unstructured{Object: ss}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	start := time.Now()
	return wait.PollUntilContextTimeout(ctx, time.Second, 15*time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: "secrets-store.csi.k8s.io/managed=true"})
		if err != nil {
			return false, nil
		}
		if len(l.Items) == n {
			fmt.Printf("  %d Secrets in %s\n", n, time.Since(start).Round(time.Second))
		}
		return len(l.Items) == n, nil
	})
}

// counter counts the controller's API requests by method and resource.
type counter struct {
	next http.RoundTripper
	mu   sync.Mutex
	n    map[string]int
	on   atomic.Bool
}

func (c *counter) RoundTrip(r *http.Request) (*http.Response, error) {
	if c.on.Load() && r.URL.Query().Get("watch") != "true" {
		key := r.Method + " " + resourceOf(r.URL.Path)
		c.mu.Lock()
		c.n[key]++
		c.mu.Unlock()
	}
	return c.next.RoundTrip(r)
}

// resourceOf names the resource (and subresource) of an API path, whole
// path segments only: /api/v1/namespaces/ns/secrets/x -> "secrets",
// /apis/secret-sync.x-k8s.io/v1alpha1/namespaces/ns/secretsyncs/x/status ->
// "secretsyncs/status". (A prefix match once counted secretsyncs as
// secrets.) Other paths come back whole.
func resourceOf(path string) string {
	seg := strings.Split(strings.Trim(path, "/"), "/")
	var rest []string
	switch {
	case len(seg) >= 3 && seg[0] == "api":
		rest = seg[2:]
	case len(seg) >= 4 && seg[0] == "apis":
		rest = seg[3:]
	default:
		return path
	}
	if len(rest) >= 2 && rest[0] == "namespaces" && len(rest) > 2 {
		rest = rest[2:]
	}
	switch len(rest) {
	case 0:
		return path
	case 1, 2:
		return rest[0]
	default:
		return rest[0] + "/" + rest[2]
	}
}

func measureCalls(ctx context.Context, rc *rest.Config, pdir string, backend *fake.Backend, n int) error {
	const poll = 20 * time.Second
	cnt := &counter{n: map[string]int{}}
	crc := rest.CopyConfig(rc)
	crc.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { cnt.next = rt; return cnt }
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- synccontroller.Run(cctx, synccontroller.Config{RESTConfig: crc, ProviderDirs: []string{pdir}, RotationPollInterval: poll, Workers: 4, QPS: 500, Burst: 1000})
	}()
	defer func() { cancel(); <-done }()
	fmt.Printf("calls per refresh, %d SecretSyncs (poll %s):\n", n, poll)
	if err := populate(ctx, rc, "calls", n); err != nil {
		return err
	}
	// Let every SecretSync refresh once before counting (created at t0, due at t0+poll±10%, seen
	// within a tick of poll/10): the first refresh also writes the Update condition to the status,
	// later ones write nothing when nothing changed. The window then shows the steady state.
	time.Sleep(poll + poll/5 + poll/10)
	b0 := backend.Calls()
	cnt.on.Store(true)
	time.Sleep(poll + poll/5) // every SecretSync refreshes once (±10% jitter)
	cnt.on.Store(false)
	backendCalls := backend.Calls() - b0
	cnt.mu.Lock()
	defer cnt.mu.Unlock()
	keys := make([]string, 0, len(cnt.n))
	total := 0
	for k, v := range cnt.n {
		keys = append(keys, k)
		total += v
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Printf("  %-40s %d\n", k, cnt.n[k])
	}
	fmt.Printf("  refreshes (backend calls): %d; API calls: %d; per refresh: %.2f API, %.2f backend\n",
		backendCalls, total, float64(total)/float64(max(backendCalls, 1)), float64(backendCalls)/float64(n))
	return nil
}

func measureMemory(ctx context.Context, rc *rest.Config, dir, pdir, bin string, n int) error {
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s: %w (make build first)", bin, err)
	}
	kc := filepath.Join(dir, "kubeconfig")
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: rc.Host, CertificateAuthorityData: rc.CAData}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: rc.BearerToken, ClientCertificateData: rc.CertData, ClientKeyData: rc.KeyData}
	cfg.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	cfg.CurrentContext = "c"
	if err := clientcmd.WriteToFile(*cfg, kc); err != nil {
		return err
	}
	fmt.Printf("memory, %d SecretSyncs (limit of the upstream chart: 128 Mi):\n", n)
	cmd := exec.CommandContext(ctx, bin, "--kubeconfig="+kc, "--provider-volume="+pdir, "--leader-elect=false",
		"--controller-server-address=", "--rotation-poll-interval=12h", "--kube-api-qps=200", "--kube-api-burst=400")
	logf, err := os.Create(filepath.Join(dir, "controller.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	time.Sleep(3 * time.Second) // started, caches synced (nothing to list yet)
	idle := procKiB(cmd.Process.Pid, "VmRSS")
	if err := populate(ctx, rc, "memory", n); err != nil {
		return err
	}
	time.Sleep(5 * time.Second)
	rss, hwm := procKiB(cmd.Process.Pid, "VmRSS"), procKiB(cmd.Process.Pid, "VmHWM")
	if rss == 0 {
		return errors.New("controller exited; see its log")
	}
	fmt.Printf("  RSS at start %.1f MiB; with %d SecretSyncs synced: RSS %.1f MiB, peak %.1f MiB (%.0f%% of 128 Mi)\n",
		float64(idle)/1024, n, float64(rss)/1024, float64(hwm)/1024, float64(hwm)/1024/128*100)
	out, _ := json.Marshal(map[string]any{"secretSyncs": n, "rssKiB": rss, "peakKiB": hwm})
	fmt.Println(" ", string(out))
	return nil
}

// procKiB reads a kB field of /proc/<pid>/status (0 if unreadable).
func procKiB(pid int, field string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}
