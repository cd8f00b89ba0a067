// Package framework is the test library of the end-to-end suite: it talks to the local cluster
// that test/cluster/up.sh brings up (namespaces, SecretProviderClasses, pods, events, logs, exec)
// and, when a test fails, collects every component's logs into an artifacts directory.
package framework

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Defaults of the local cluster (test/cluster/lib.sh).
const (
	DefaultKubeconfig = "/var/lib/sscsi-cluster/admin.kubeconfig"
	DefaultLogsDir    = "/var/lib/sscsi-cluster/logs"
	DriverName        = "secrets-store.csi.k8s.io"
	BusyboxImage      = "localhost/sscsi/busybox:latest"
	FakeAdminURL      = "http://127.0.0.1:8099"
	// FakeAdminTokenFile holds provider-fake's admin token (root-only, on the node).
	FakeAdminTokenFile = "/var/run/secrets-store-csi-providers/fake-admin.token"
	// ProviderDir is the node's provider socket directory (host and chart modes).
	ProviderDir = "/var/run/secrets-store-csi-providers"
	MetricsURL  = "http://127.0.0.1:8095/metrics"
	KubeletDir  = "/var/lib/kubelet"
)

// SPCGroup is the API group of SecretProviderClass.
const SPCGroup = "secrets-store.csi.x-k8s.io"

// Framework is a connection to the local cluster plus where to put artifacts.
type Framework struct {
	Kubeconfig   string
	KubectlPath  string
	LogsDir      string
	ArtifactsDir string
	Client       kubernetes.Interface
	Dynamic      dynamic.Interface
}

// Config selects the cluster; empty fields take the environment ($SSCSI_KUBECONFIG, $SSCSI_KUBECTL,
// $SSCSI_ARTIFACTS) or the local cluster's defaults.
type Config struct {
	Kubeconfig   string
	KubectlPath  string
	LogsDir      string
	ArtifactsDir string
}

func envOr(v, env, def string) string {
	if v != "" {
		return v
	}
	if e := os.Getenv(env); e != "" {
		return e
	}
	return def
}

// New connects to the cluster and checks that the API server answers.
func New(ctx context.Context, cfg Config) (*Framework, error) {
	f := &Framework{
		Kubeconfig:   envOr(cfg.Kubeconfig, "SSCSI_KUBECONFIG", DefaultKubeconfig),
		KubectlPath:  envOr(cfg.KubectlPath, "SSCSI_KUBECTL", "/var/cache/sscsi/k8s/v1.37.2/bin/kubectl"),
		LogsDir:      envOr(cfg.LogsDir, "SSCSI_CLUSTER_LOGS", DefaultLogsDir),
		ArtifactsDir: envOr(cfg.ArtifactsDir, "SSCSI_ARTIFACTS", "_artifacts"),
	}
	rc, err := clientcmd.BuildConfigFromFlags("", f.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %s (is the cluster up? make cluster-up): %w", f.Kubeconfig, err)
	}
	if f.Client, err = kubernetes.NewForConfig(rc); err != nil {
		return nil, fmt.Errorf("creating client: %w", err)
	}
	if f.Dynamic, err = dynamic.NewForConfig(rc); err != nil {
		return nil, fmt.Errorf("creating dynamic client: %w", err)
	}
	if _, err := f.Client.CoreV1().Nodes().Get(ctx, "localhost", metav1.GetOptions{}); err != nil {
		return nil, fmt.Errorf("reading node localhost from %s (is the cluster up? make cluster-up): %w", f.Kubeconfig, err)
	}
	return f, nil
}

// RandomSuffix returns a short random DNS-label-safe suffix.
func RandomSuffix() string {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 6)
	for i := range b {
		b[i] = letters[rand.IntN(len(letters))]
	}
	return string(b)
}

// Namespace creates a fresh namespace for t and deletes it when t ends. If t failed, the
// namespace's state and all component logs are collected first.
func (f *Framework) Namespace(t testing.TB, prefix string) string {
	t.Helper()
	name := prefix + "-" + RandomSuffix()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"sscsi-e2e": "true"}}}
	if _, err := f.Client.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 30*time.Second)
		defer cancel()
		if t.Failed() {
			f.CollectArtifacts(ctx, t, name)
		}
		// Delete pods first with no grace so unmounts happen promptly, then the namespace.
		_ = f.Client.CoreV1().Pods(name).DeleteCollection(ctx, *metav1.NewDeleteOptions(0), metav1.ListOptions{})
		_ = f.Client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	})
	// Pods need the namespace's default service account, which kube-controller-manager creates
	// a moment later (longer while its watches recover from an API server restart).
	err := poll(t.Context(), 2*time.Minute, func(ctx context.Context) (bool, error) {
		_, err := f.Client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("namespace %s has no default service account after 2m (is kube-controller-manager running? see %s): %v", name, f.LogsDir, err)
	}
	return name
}

// SPCResource returns the resource of SecretProviderClass at the given version (v1 or v1alpha1).
func SPCResource(version string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: SPCGroup, Version: version, Resource: "secretproviderclasses"}
}

// SPC describes a SecretProviderClass to create.
type SPC struct {
	Name       string
	Namespace  string
	Version    string // v1 (default) or v1alpha1
	Provider   string
	Parameters map[string]string
}

// CreateSPC creates a SecretProviderClass through the requested API version.
func (f *Framework) CreateSPC(t testing.TB, spc SPC) {
	t.Helper()
	if spc.Version == "" {
		spc.Version = "v1"
	}
	params := map[string]any{}
	for k, v := range spc.Parameters {
		params[k] = v
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": SPCGroup + "/" + spc.Version,
		"kind":       "SecretProviderClass",
		"metadata":   map[string]any{"name": spc.Name, "namespace": spc.Namespace},
		"spec":       map[string]any{"provider": spc.Provider, "parameters": params},
	}}
	if _, err := f.Dynamic.Resource(SPCResource(spc.Version)).Namespace(spc.Namespace).Create(t.Context(), u, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating SecretProviderClass %s/%s (%s): %v", spc.Namespace, spc.Name, spc.Version, err)
	}
}

// CSIVolume is one inline secrets-store volume of a test pod.
type CSIVolume struct {
	Name              string // volume name; also the mount directory /mnt/<Name>
	SPC               string
	NodePublishSecret string // optional nodePublishSecretRef
	ExtraVolumeAttrs  map[string]string
}

// MountPath is where a CSIVolume is mounted in a BusyboxPod.
func (v CSIVolume) MountPath() string { return "/mnt/" + v.Name }

// BusyboxPod returns a pod that sleeps forever with the given volumes mounted read-only.
func BusyboxPod(namespace, name string, vols ...CSIVolume) *corev1.Pod {
	zero := int64(0)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &zero,
			Containers: []corev1.Container{{
				Name: "app", Image: BusyboxImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"},
			}},
		},
	}
	for _, v := range vols {
		ro := true
		attrs := map[string]string{"secretProviderClass": v.SPC}
		for k, val := range v.ExtraVolumeAttrs {
			attrs[k] = val
		}
		src := &corev1.CSIVolumeSource{Driver: DriverName, ReadOnly: &ro, VolumeAttributes: attrs}
		if v.NodePublishSecret != "" {
			src.NodePublishSecretRef = &corev1.LocalObjectReference{Name: v.NodePublishSecret}
		}
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: v.Name, VolumeSource: corev1.VolumeSource{CSI: src}})
		p.Spec.Containers[0].VolumeMounts = append(p.Spec.Containers[0].VolumeMounts,
			corev1.VolumeMount{Name: v.Name, MountPath: v.MountPath(), ReadOnly: true})
	}
	return p
}

// CreatePod creates a pod and returns the created object.
func (f *Framework) CreatePod(t testing.TB, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	out, err := f.Client.CoreV1().Pods(p.Namespace).Create(t.Context(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating pod %s/%s: %v", p.Namespace, p.Name, err)
	}
	return out
}

// WaitPodRunning waits until the pod is Running and Ready, failing t with its events if not.
func (f *Framework) WaitPodRunning(t testing.TB, namespace, name string, timeout time.Duration) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	err := poll(t.Context(), timeout, func(ctx context.Context) (bool, error) {
		p, err := f.Client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		pod = p
		if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
			return false, fmt.Errorf("pod ended in phase %s", p.Status.Phase)
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		phase := corev1.PodPhase("unknown")
		if pod != nil {
			phase = pod.Status.Phase
		}
		t.Fatalf("pod %s/%s not running after %s (phase %s): %v\nevents:\n%s", namespace, name, timeout, phase, err,
			FormatEvents(f.Events(t, namespace, name)))
	}
	return pod
}

// WaitPodPhase waits until the pod reaches phase.
func (f *Framework) WaitPodPhase(t testing.TB, namespace, name string, phase corev1.PodPhase, timeout time.Duration) {
	t.Helper()
	err := poll(t.Context(), timeout, func(ctx context.Context) (bool, error) {
		p, err := f.Client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		return err == nil && p.Status.Phase == phase, nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s not %s after %s: %v\nevents:\n%s", namespace, name, phase, timeout, err,
			FormatEvents(f.Events(t, namespace, name)))
	}
}

// DeletePod deletes a pod with no grace period and waits until it is gone.
func (f *Framework) DeletePod(t testing.TB, namespace, name string, timeout time.Duration) {
	t.Helper()
	if err := f.Client.CoreV1().Pods(namespace).Delete(t.Context(), name, *metav1.NewDeleteOptions(0)); err != nil {
		t.Fatalf("deleting pod %s/%s: %v", namespace, name, err)
	}
	err := poll(t.Context(), timeout, func(ctx context.Context) (bool, error) {
		_, err := f.Client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		return err != nil, nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s still present %s after deletion", namespace, name, timeout)
	}
}

// Events returns the events whose involved object is the named object in namespace.
func (f *Framework) Events(t testing.TB, namespace, name string) []corev1.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 10*time.Second)
	defer cancel()
	l, err := f.Client.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		t.Logf("listing events of %s/%s: %v", namespace, name, err)
		return nil
	}
	return l.Items
}

// FormatEvents renders events one a line.
func FormatEvents(evs []corev1.Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "  %s %s %s (x%d): %s\n", e.Type, e.Reason, e.InvolvedObject.Name, e.Count, e.Message)
	}
	return b.String()
}

// WaitEvent waits for an event with the given reason on the named object whose message contains
// every one of substrings, and returns it.
func (f *Framework) WaitEvent(t testing.TB, namespace, name, reason string, timeout time.Duration, substrings ...string) corev1.Event {
	t.Helper()
	var found corev1.Event
	err := poll(t.Context(), timeout, func(context.Context) (bool, error) {
	events:
		for _, e := range f.Events(t, namespace, name) {
			if e.Reason != reason {
				continue
			}
			for _, s := range substrings {
				if !strings.Contains(e.Message, s) {
					continue events
				}
			}
			found = e
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no %s event on %s/%s containing %q within %s; events:\n%s", reason, namespace, name, substrings, timeout,
			FormatEvents(f.Events(t, namespace, name)))
	}
	return found
}

// Kubectl runs kubectl against the cluster and returns its standard output.
func (f *Framework) Kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, f.KubectlPath, append([]string{"--kubeconfig", f.Kubeconfig}, args...)...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out.String(), nil
}

// Exec runs a command in the pod's first container.
func (f *Framework) Exec(ctx context.Context, namespace, pod string, command ...string) (string, error) {
	return f.Kubectl(ctx, append([]string{"exec", "-n", namespace, pod, "--"}, command...)...)
}

// ReadFile returns the contents of a file in the pod, failing t if it cannot be read.
func (f *Framework) ReadFile(t testing.TB, namespace, pod, path string) string {
	t.Helper()
	out, err := f.Exec(t.Context(), namespace, pod, "cat", path)
	if err != nil {
		t.Fatalf("reading %s in pod %s/%s: %v", path, namespace, pod, err)
	}
	return out
}

// WaitFileContent waits until the file in the pod has exactly want, and returns how long it took.
func (f *Framework) WaitFileContent(t testing.TB, namespace, pod, path, want string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	err := poll(t.Context(), timeout, func(ctx context.Context) (bool, error) {
		out, err := f.Exec(ctx, namespace, pod, "cat", path)
		last = out
		return err == nil && out == want, nil
	})
	if err != nil {
		t.Fatalf("%s in pod %s/%s did not become %q within %s (last: %q)", path, namespace, pod, want, timeout, last)
	}
	return time.Since(start)
}

// Logs returns a container's log.
func (f *Framework) Logs(ctx context.Context, namespace, pod string) (string, error) {
	b, err := f.Client.CoreV1().Pods(namespace).GetLogs(pod, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("logs of %s/%s: %w", namespace, pod, err)
	}
	return string(b), nil
}

// CollectArtifacts writes the namespace's pods, events and SecretProviderClasses and a copy of every
// component log into <ArtifactsDir>/<test name>/.
func (f *Framework) CollectArtifacts(ctx context.Context, t testing.TB, namespace string) {
	dir := filepath.Join(f.ArtifactsDir, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("creating artifacts dir: %v", err)
		return
	}
	for file, args := range map[string][]string{
		"pods.txt":    {"describe", "pods", "-n", namespace},
		"events.txt":  {"get", "events", "-n", namespace, "-o", "wide"},
		"spc.yaml":    {"get", "secretproviderclasses.v1." + SPCGroup, "-n", namespace, "-o", "yaml"},
		"spcps.yaml":  {"get", "secretproviderclasspodstatuses." + SPCGroup, "-n", namespace, "-o", "yaml"},
		"nodes.txt":   {"describe", "node", "localhost"},
		"csinode.txt": {"get", "csinode", "-o", "yaml"},
	} {
		out, err := f.Kubectl(ctx, args...)
		if err != nil {
			out += "\n" + err.Error()
		}
		_ = os.WriteFile(filepath.Join(dir, file), []byte(out), 0o644)
	}
	if err := copyDir(f.LogsDir, filepath.Join(dir, "logs")); err != nil {
		t.Logf("copying component logs: %v", err)
	}
	t.Logf("artifacts collected in %s", dir)
}

// copyDir copies the regular files below src into dst, keeping the tree.
func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("reading %s: %w", path, err)
		}
		return os.WriteFile(target, b, 0o644)
	})
}

// poll calls cond every 500 ms until it returns true, returns an error, or timeout passes.
func poll(ctx context.Context, timeout time.Duration, cond func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		ok, err := cond(ctx)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out after %s", timeout)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// SPCPodStatusResource is the resource of SecretProviderClassPodStatus (v1).
var SPCPodStatusResource = schema.GroupVersionResource{Group: SPCGroup, Version: "v1", Resource: "secretproviderclasspodstatuses"}

// SPCPodStatusName is the name the driver gives the status of a pod's mount of an SPC.
func SPCPodStatusName(pod, namespace, spc string) string { return pod + "-" + namespace + "-" + spc }

// WaitSPCPodStatus waits until the SecretProviderClassPodStatus of the pod's mount of spc reports
// mounted, and returns it.
func (f *Framework) WaitSPCPodStatus(t testing.TB, namespace, pod, spc string, timeout time.Duration) *unstructured.Unstructured {
	t.Helper()
	name := SPCPodStatusName(pod, namespace, spc)
	var got *unstructured.Unstructured
	err := poll(t.Context(), timeout, func(ctx context.Context) (bool, error) {
		u, err := f.Dynamic.Resource(SPCPodStatusResource).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		got = u
		mounted, _, _ := unstructured.NestedBool(u.Object, "status", "mounted")
		return mounted, nil
	})
	if err != nil {
		t.Fatalf("SecretProviderClassPodStatus %s/%s not mounted within %s (last: %v)", namespace, name, timeout, got)
	}
	return got
}

// WaitSPCPodStatusGone waits until the SecretProviderClassPodStatus is deleted (garbage collected
// with its pod).
func (f *Framework) WaitSPCPodStatusGone(t testing.TB, namespace, pod, spc string, timeout time.Duration) {
	t.Helper()
	name := SPCPodStatusName(pod, namespace, spc)
	err := poll(t.Context(), timeout, func(ctx context.Context) (bool, error) {
		_, err := f.Dynamic.Resource(SPCPodStatusResource).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
		return err != nil, nil
	})
	if err != nil {
		t.Fatalf("SecretProviderClassPodStatus %s/%s still present %s after its pod was deleted", namespace, name, timeout)
	}
}
