//go:build integration

package secretsync

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"
	sigsyaml "sigs.k8s.io/yaml"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
	"github.com/sscsi/secrets-store/driver/internal/events"
	"github.com/sscsi/secrets-store/driver/internal/kubeclient"
	"github.com/sscsi/secrets-store/driver/internal/metrics"
	"github.com/sscsi/secrets-store/driver/internal/podstatus"
	"github.com/sscsi/secrets-store/driver/internal/publish"
	"github.com/sscsi/secrets-store/driver/internal/rotation"
	"github.com/sscsi/secrets-store/driver/internal/spc"
	"github.com/sscsi/secrets-store/driver/internal/tmpfs"
	"github.com/sscsi/secrets-store/internal/atomicfs"
	"github.com/sscsi/secrets-store/internal/secretdata"
	"github.com/sscsi/secrets-store/manifests"
	"github.com/sscsi/secrets-store/test/cluster/controlplane"
	"github.com/sscsi/secrets-store/test/poll"
	"github.com/sscsi/secrets-store/test/tlschain"
)

const nodeName = "node-a"

// cluster is one etcd + kube-apiserver with the CRDs installed and a
// kube-controller-manager running the garbage collector, shared by the
// subtests of one top-level test (each works in its own namespace).
type cluster struct {
	rc *rest.Config
	cs kubernetes.Interface
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	rc := controlplane.ForTest(t)
	installCRDs(t, rc)
	controlplane.ControllerManagerForTest(t, rc)
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{rc: rc, cs: cs}
}

func installCRDs(t *testing.T, rc *rest.Config) {
	t.Helper()
	ctx := t.Context()
	c, err := apiextclient.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	names, err := fs.Glob(manifests.CRDs, "crds/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		b, err := manifests.CRDs.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		crd := &apiextv1.CustomResourceDefinition{}
		if err := sigsyaml.Unmarshal(b, crd); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if _, err := c.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create CRD %s: %v", crd.Name, err)
		}
		poll.Until(t, 30*time.Second, func() error {
			got, err := c.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, cond := range got.Status.Conditions {
				if cond.Type == apiextv1.Established && cond.Status == apiextv1.ConditionTrue {
					return nil
				}
			}
			return fmt.Errorf("CRD %s not established", crd.Name)
		})
	}
	// The REST mapping of a new CRD reaches every API server handler a moment later.
	kc, err := kubeclient.NewForConfig(rc, kubeclient.Config{QPS: 50, Burst: 100})
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 30*time.Second, func() error {
		return kc.CRD.Get().Namespace("default").Resource("secretproviderclasses").Do(ctx).Error()
	})
}

// applyRBAC creates every object of a manifests/rbac file.
func applyRBAC(t *testing.T, cs kubernetes.Interface, file string) {
	t.Helper()
	ctx := t.Context()
	b, err := manifests.RBAC.ReadFile("rbac/" + file)
	if err != nil {
		t.Fatal(err)
	}
	r := yaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	for {
		doc, err := r.Read()
		if err != nil {
			break
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			_, err = cs.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRole:
			_, err = cs.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("%s: unexpected kind %T", file, obj)
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("%s: %v", file, err)
		}
	}
}

// provider is an in-memory provider whose answer the test changes.
type provider struct {
	mu      sync.Mutex // guards files, version, err
	files   map[string][]byte
	version string
	err     error
}

func (p *provider) set(files map[string][]byte, version string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.files, p.version, p.err = files, version, nil
}

func (p *provider) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = err
}

func (p *provider) Mount(_ context.Context, _ string, _ *v1alpha1.MountRequest) (*v1alpha1.MountResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return nil, p.err
	}
	resp := &v1alpha1.MountResponse{}
	for path, c := range p.files {
		resp.Files = append(resp.Files, &v1alpha1.File{Path: path, Mode: 0o644, Contents: c})
		resp.ObjectVersion = append(resp.ObjectVersion, &v1alpha1.ObjectVersion{Id: path, Version: p.version})
	}
	return resp, nil
}

// dirMounter stands in for tmpfs: a "mount" is a directory it remembers.
type dirMounter struct {
	mu      sync.Mutex // guards mounted, state
	mounted map[string]bool
	state   map[string][]byte
}

func (m *dirMounter) SaveState(target string, b []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state == nil {
		m.state = map[string][]byte{}
	}
	m.state[target] = append([]byte(nil), b...)
	return nil
}

func (m *dirMounter) LoadState(target string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state[target], nil
}

func (m *dirMounter) Mount(target string, _ tmpfs.Limits) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mounted[target] = true
	return os.MkdirAll(target, 0o750)
}

func (m *dirMounter) Unmount(target string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.mounted, target)
	delete(m.state, target)
	return nil
}

func (m *dirMounter) IsMountPoint(target string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mounted[target], nil
}

// node is the driver of one node, wired as driver.Run wires it, with a
// directory mounter and an in-memory provider.
type node struct {
	pub      *publish.Publisher
	syncer   *Syncer
	status   *podstatus.Writer
	provider *provider
	metrics  *metrics.Recorder
	root     string
}

func newNode(t *testing.T, rc *rest.Config) *node {
	t.Helper()
	ctx := t.Context()
	kc, err := kubeclient.NewForConfig(rc, kubeclient.Config{QPS: 50, Burst: 100, UserAgent: "secretsync-integration"})
	if err != nil {
		t.Fatal(err)
	}
	ev := events.New(kc.CoreREST, "secrets-store-csi-driver", nodeName)
	go ev.Run(ctx)
	st, err := podstatus.New(podstatus.Config{Client: kc.CRD, NodeName: nodeName, MaxBackoff: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	sy, err := New(Config{Core: kc.CoreREST, CRD: kc.CRD, Events: ev, Metrics: m, MaxBackoff: time.Second, RecheckAccess: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); st.Run(ctx) }()
	go func() { defer wg.Done(); sy.Run(ctx) }()
	t.Cleanup(wg.Wait)
	n := &node{syncer: sy, status: st, provider: &provider{}, metrics: m, root: t.TempDir()}
	n.pub, err = publish.New(publish.Config{
		Mounter:   &dirMounter{mounted: map[string]bool{}},
		SPCs:      spc.RESTGetter{Client: kc.CRD},
		Providers: n.provider,
		Rotation:  rotation.Policy{Enabled: true, Interval: time.Nanosecond},
		Limits:    atomicfs.Limits{},
		Status:    st,
		Secrets:   sy,
		Events:    ev,
		Metrics:   m,
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (n *node) target(pod *corev1.Pod) string {
	return filepath.Join(n.root, string(pod.UID), "volumes", "kubernetes.io~csi", "secrets", "mount")
}

// publish is kubelet's NodePublishVolume for pod's inline volume.
func (n *node) publish(t *testing.T, pod *corev1.Pod, spcName string) {
	t.Helper()
	err := n.pub.Publish(t.Context(), publish.Request{
		VolumeID:   "csi-" + string(pod.UID),
		TargetPath: n.target(pod),
		VolumeContext: map[string]string{
			publish.AttrSPC: spcName, publish.AttrPodName: pod.Name, publish.AttrPodNamespace: pod.Namespace,
			publish.AttrPodUID: string(pod.UID), publish.AttrServiceAccount: "default", "csi.storage.k8s.io/ephemeral": "true",
		},
	})
	if err != nil {
		t.Fatalf("publish %s/%s: %v", pod.Namespace, pod.Name, err)
	}
}

func (n *node) syncedTotal(t *testing.T) float64 {
	t.Helper()
	return n.counter(t, "sync_k8s_secret_total")
}

// counter sums a counter's series.
func (n *node) counter(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := n.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func newNamespace(t *testing.T, c *cluster, name string) string {
	t.Helper()
	if _, err := c.cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

func createSPC(t *testing.T, rc *rest.Config, ns, name string, objs ...ssv1.SecretObject) {
	t.Helper()
	kc, err := kubeclient.NewForConfig(rc, kubeclient.Config{QPS: 50, Burst: 100})
	if err != nil {
		t.Fatal(err)
	}
	obj := &ssv1.SecretProviderClass{
		TypeMeta:   metav1.TypeMeta{APIVersion: ssv1.SchemeGroupVersion.String(), Kind: "SecretProviderClass"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       ssv1.SecretProviderClassSpec{Provider: "fake", SecretObjects: objs},
	}
	if err := kc.CRD.Post().Namespace(ns).Resource("secretproviderclasses").Body(obj).Do(t.Context()).Error(); err != nil {
		t.Fatalf("create SecretProviderClass: %v", err)
	}
}

func createPod(t *testing.T, cs kubernetes.Interface, ns, name string, owners ...metav1.OwnerReference) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, OwnerReferences: owners},
		// Unscheduled, so that deleting it (or the garbage collector doing so) needs no kubelet.
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
	got, err := cs.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod: %v", err)
	}
	return got
}

// createReplicaSet creates a ReplicaSet with no replicas. Pods the test
// creates name it as a plain owner and do not match its selector, so the
// controller-manager's ReplicaSet controller neither adopts, releases nor
// deletes them, while the garbage collector still treats it as their owner.
func createReplicaSet(t *testing.T, cs kubernetes.Interface, ns, name string) *appsv1.ReplicaSet {
	t.Helper()
	labels := map[string]string{"rs": name}
	zero := int32(0)
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: &zero,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
			},
		},
	}
	got, err := cs.AppsV1().ReplicaSets(ns).Create(t.Context(), rs, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create ReplicaSet: %v", err)
	}
	return got
}

func ownedBy(rs *appsv1.ReplicaSet) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID}
}

func waitSecret(t *testing.T, cs kubernetes.Interface, ns, name string, ok func(*corev1.Secret) error) *corev1.Secret {
	t.Helper()
	var got *corev1.Secret
	poll.Until(t, 20*time.Second, func() error {
		s, err := cs.CoreV1().Secrets(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if ok != nil {
			if err := ok(s); err != nil {
				return fmt.Errorf("Secret %s/%s: %w", ns, name, err)
			}
		}
		got = s
		return nil
	})
	return got
}

func waitGone(t *testing.T, timeout time.Duration, get func() error) {
	t.Helper()
	poll.Until(t, timeout, func() error {
		err := get()
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("still exists")
	})
}

// waitEvent waits for an event on the pod with reason whose message
// contains every string of want, and returns its message.
func waitEvent(t *testing.T, cs kubernetes.Interface, pod *corev1.Pod, reason string, want ...string) string {
	t.Helper()
	var msg string
	poll.Until(t, 20*time.Second, func() error {
		l, err := cs.CoreV1().Events(pod.Namespace).List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod.Name + ",reason=" + reason})
		if err != nil {
			return err
		}
		var seen []string
	next:
		for _, e := range l.Items {
			for _, w := range want {
				if !strings.Contains(e.Message, w) {
					seen = append(seen, e.Message)
					continue next
				}
			}
			msg = e.Message
			return nil
		}
		return fmt.Errorf("no %s event on pod %s containing %q; seen %q", reason, pod.Name, want, seen)
	})
	return msg
}

func hasOwners(want ...metav1.OwnerReference) func(*corev1.Secret) error {
	return func(s *corev1.Secret) error {
		for _, w := range want {
			found := false
			for _, o := range s.OwnerReferences {
				found = found || (o.UID == w.UID && o.Kind == w.Kind && o.Name == w.Name && o.APIVersion == w.APIVersion)
			}
			if !found {
				return fmt.Errorf("owners %v lack %s %s", s.OwnerReferences, w.Kind, w.Name)
			}
		}
		if len(s.OwnerReferences) != len(want) {
			return fmt.Errorf("owners %v, want %d", s.OwnerReferences, len(want))
		}
		return nil
	}
}

func hasData(key, value string) func(*corev1.Secret) error {
	return func(s *corev1.Secret) error {
		if string(s.Data[key]) != value {
			return fmt.Errorf("data[%s] is not the expected value", key)
		}
		return nil
	}
}

// logBuffer collects klog output (klog's output is process-wide: the
// subtests that use it do not run in parallel).
type logBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// b64 is the base64 form of v as it appears inside a Secret's JSON,
// without the padding that depends on what follows.
func b64(v string) string {
	full := base64.StdEncoding.EncodeToString([]byte(v))
	return full[:4*(len(v)/3)]
}

// captureKlog sends klog's output, at verbosity 10 (client-go logs every
// request and response body from 8 on, unless internal/kubeapi's filter
// drops them), to a buffer until the test ends.
func captureKlog(t *testing.T) *logBuffer {
	t.Helper()
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	_ = fs.Set("v", "10")
	_ = fs.Set("logtostderr", "false")
	b := &logBuffer{}
	klog.SetOutput(b)
	t.Cleanup(func() {
		klog.Flush()
		_ = fs.Set("v", "0")
		_ = fs.Set("logtostderr", "true")
		klog.SetOutput(os.Stderr)
	})
	return b
}

func TestSecretSyncAgainstAPIServer(t *testing.T) {
	c := startCluster(t)
	logs := captureKlog(t)
	t.Cleanup(func() {
		klog.Flush()
		out := logs.String()
		if out == "" {
			t.Errorf("log capture saw nothing")
		}
		if !strings.Contains(out, "Response Body") {
			t.Errorf("the log was not captured at -v=10 (no client-go body line)")
		}
		// Every value the subtests sync, as written and as the API's JSON
		// carries it (base64); none may reach a log line.
		for _, v := range []string{"hunter2", "t0k3n-shared-value", "v4lu3-present-value", "dXNlcjpwYXNz", "-----BEGIN PRIVATE KEY", "first-rotation-value", "second-rotation-value", "attacker-value", "n0t-the-driver's"} {
			for _, form := range []string{v, b64(v)} {
				if strings.Contains(out, form) {
					t.Errorf("a secret value (%q, as %q) appears in the driver's log", v, form)
				}
			}
		}
	})

	t.Run("opaque, tls from pem and pfx, dockerconfigjson; bare pod owned through its pod status", func(t *testing.T) {
		ns := newNamespace(t, c, "sync-types")
		n := newNode(t, c.rc)
		chain := tlschain.New(t, true)
		pemBundle := append(tlschain.CertPEM(chain.Leaf, chain.Inter), tlschain.KeyPEM(t, chain.LeafKey, "pkcs8")...)
		docker := `{"auths":{"registry.example":{"auth":"dXNlcjpwYXNz"}}}`
		n.provider.set(map[string][]byte{
			"db/password": []byte("hunter2"), "username": []byte("admin"),
			"cert.pem": pemBundle, "cert.pfx": chain.PFXBase64(t), "docker.json": []byte(docker),
		}, "v1")
		createSPC(t, c.rc, ns, "app",
			ssv1.SecretObject{SecretName: "db", Type: "Opaque", Labels: map[string]string{"app": "db"}, Annotations: map[string]string{"note": "synced"},
				Data: []ssv1.SecretObjectData{{ObjectName: "db/password", Key: "password"}, {ObjectName: "username", Key: "username"}}},
			ssv1.SecretObject{SecretName: "tls-pem", Type: "kubernetes.io/tls", Data: []ssv1.SecretObjectData{{ObjectName: "cert.pem", Key: "tls.crt"}, {ObjectName: "cert.pem", Key: "tls.key"}}},
			ssv1.SecretObject{SecretName: "tls-pfx", Type: "kubernetes.io/tls", Data: []ssv1.SecretObjectData{{ObjectName: "cert.pfx", Key: "tls.crt"}, {ObjectName: "cert.pfx", Key: "tls.key"}}},
			ssv1.SecretObject{SecretName: "pull", Type: "kubernetes.io/dockerconfigjson", Data: []ssv1.SecretObjectData{{ObjectName: "docker.json", Key: ".dockerconfigjson"}}},
		)
		pod := createPod(t, c.cs, ns, "bare")
		n.publish(t, pod, "app")

		stName := podstatus.Name(pod.Name, ns, "app")
		kc, _ := kubeclient.NewForConfig(c.rc, kubeclient.Config{QPS: 50, Burst: 100})
		st := &ssv1.SecretProviderClassPodStatus{}
		poll.Until(t, 20*time.Second, func() error {
			return kc.CRD.Get().Namespace(ns).Resource("secretproviderclasspodstatuses").Name(stName).Do(t.Context()).Into(st)
		})
		owner := metav1.OwnerReference{APIVersion: ssv1.SchemeGroupVersion.String(), Kind: "SecretProviderClassPodStatus", Name: stName, UID: st.UID}

		db := waitSecret(t, c.cs, ns, "db", hasOwners(owner))
		if db.Type != corev1.SecretTypeOpaque || string(db.Data["password"]) != "hunter2" || string(db.Data["username"]) != "admin" {
			t.Errorf("db Secret: type %s, keys %d", db.Type, len(db.Data))
		}
		if db.Labels[secretdata.ManagedLabel] != "true" || db.Labels["app"] != "db" || db.Annotations["note"] != "synced" {
			t.Errorf("db Secret metadata: labels %v annotations %v", db.Labels, db.Annotations)
		}
		for _, name := range []string{"tls-pem", "tls-pfx"} {
			s := waitSecret(t, c.cs, ns, name, hasOwners(owner))
			if s.Type != corev1.SecretTypeTLS {
				t.Errorf("%s: type %s", name, s.Type)
			}
			if !bytes.Equal(s.Data["tls.crt"], tlschain.CertPEM(chain.Leaf, chain.Inter)) {
				t.Errorf("%s: tls.crt is not leaf + intermediate in order", name)
			}
			if err := secretdata.CheckKeyPair(s.Data["tls.crt"], s.Data["tls.key"]); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
		pull := waitSecret(t, c.cs, ns, "pull", hasOwners(owner))
		if pull.Type != corev1.SecretTypeDockerConfigJson || string(pull.Data[".dockerconfigjson"]) != docker {
			t.Errorf("pull Secret: type %s", pull.Type)
		}
		poll.Until(t, 5*time.Second, func() error {
			if got := n.syncedTotal(t); got != 4 {
				return fmt.Errorf("sync_k8s_secret_total = %v, want 4", got)
			}
			return nil
		})

		// The pod goes: the garbage collector removes its status, then the Secrets.
		if err := c.cs.CoreV1().Pods(ns).Delete(t.Context(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"db", "tls-pem", "tls-pfx", "pull"} {
			waitGone(t, 90*time.Second, func() error {
				_, err := c.cs.CoreV1().Secrets(ns).Get(t.Context(), name, metav1.GetOptions{})
				return err
			})
		}
	})

	t.Run("two ReplicaSets share a SecretProviderClass: two owners, gone with the last", func(t *testing.T) {
		ns := newNamespace(t, c, "sync-shared")
		n := newNode(t, c.rc)
		n.provider.set(map[string][]byte{"token": []byte("t0k3n-shared-value")}, "v1")
		createSPC(t, c.rc, ns, "shared", ssv1.SecretObject{SecretName: "shared", Type: "Opaque", Data: []ssv1.SecretObjectData{{ObjectName: "token", Key: "token"}}})
		rs1, rs2 := createReplicaSet(t, c.cs, ns, "web"), createReplicaSet(t, c.cs, ns, "worker")
		p1 := createPod(t, c.cs, ns, "web-1", ownedBy(rs1))
		p2 := createPod(t, c.cs, ns, "worker-1", ownedBy(rs2))
		n.publish(t, p1, "shared")
		n.publish(t, p2, "shared")
		o1 := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs1.Name, UID: rs1.UID}
		o2 := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs2.Name, UID: rs2.UID}
		waitSecret(t, c.cs, ns, "shared", hasOwners(o1, o2))

		bg := metav1.DeletePropagationBackground
		if err := c.cs.AppsV1().ReplicaSets(ns).Delete(t.Context(), rs1.Name, metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil {
			t.Fatal(err)
		}
		// The collector has acted on rs1 once its pod is gone; the Secret still has an owner.
		waitGone(t, 90*time.Second, func() error {
			_, err := c.cs.CoreV1().Pods(ns).Get(t.Context(), p1.Name, metav1.GetOptions{})
			return err
		})
		time.Sleep(2 * time.Second)
		if _, err := c.cs.CoreV1().Secrets(ns).Get(t.Context(), "shared", metav1.GetOptions{}); err != nil {
			t.Fatalf("Secret gone while ReplicaSet %s still owns it: %v", rs2.Name, err)
		}
		if err := c.cs.AppsV1().ReplicaSets(ns).Delete(t.Context(), rs2.Name, metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil {
			t.Fatal(err)
		}
		waitGone(t, 90*time.Second, func() error {
			_, err := c.cs.CoreV1().Secrets(ns).Get(t.Context(), "shared", metav1.GetOptions{})
			return err
		})
	})

	t.Run("two nodes add owners to one Secret at once: conflicts retried, every owner kept", func(t *testing.T) {
		ns := newNamespace(t, c, "sync-conflicts")
		nodes := []*node{newNode(t, c.rc), newNode(t, c.rc)}
		for _, n := range nodes {
			n.provider.set(map[string][]byte{"token": []byte("t0k3n-shared-value")}, "v1")
		}
		createSPC(t, c.rc, ns, "shared", ssv1.SecretObject{SecretName: "busy", Type: "Opaque", Data: []ssv1.SecretObjectData{{ObjectName: "token", Key: "token"}}})
		const pods = 8
		var owners []metav1.OwnerReference
		var ps []*corev1.Pod
		for i := range pods {
			rs := createReplicaSet(t, c.cs, ns, fmt.Sprintf("rs-%d", i))
			owners = append(owners, ownedBy(rs))
			ps = append(ps, createPod(t, c.cs, ns, fmt.Sprintf("pod-%d", i), ownedBy(rs)))
		}
		var wg sync.WaitGroup
		errs := make(chan error, pods)
		for i, p := range ps {
			n := nodes[i%2]
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- n.pub.Publish(t.Context(), publish.Request{
					VolumeID: "v-" + p.Name, TargetPath: n.target(p),
					VolumeContext: map[string]string{publish.AttrSPC: "shared", publish.AttrPodName: p.Name, publish.AttrPodNamespace: ns, publish.AttrPodUID: string(p.UID)},
				})
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		waitSecret(t, c.cs, ns, "busy", hasOwners(owners...))
		t.Logf("write conflicts retried: %d", strings.Count(logs.String(), "Secret changed under the driver; retrying"))
	})

	t.Run("rotation updates the Secret, keeps others' metadata, writes nothing when equal", func(t *testing.T) {
		ns := newNamespace(t, c, "sync-rotation")
		n := newNode(t, c.rc)
		n.provider.set(map[string][]byte{"pw": []byte("first-rotation-value")}, "v1")
		createSPC(t, c.rc, ns, "rot", ssv1.SecretObject{SecretName: "rot", Type: "Opaque", Labels: map[string]string{"app": "rot"}, Data: []ssv1.SecretObjectData{{ObjectName: "pw", Key: "pw"}}})
		rs := createReplicaSet(t, c.cs, ns, "rot")
		pod := createPod(t, c.cs, ns, "rot-1", ownedBy(rs))
		n.publish(t, pod, "rot")
		s := waitSecret(t, c.cs, ns, "rot", hasData("pw", "first-rotation-value"))

		// Someone else labels, annotates and co-owns the Secret.
		other := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "other-owner", Namespace: ns}}
		other, err := c.cs.CoreV1().ConfigMaps(ns).Create(t.Context(), other, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s.Labels["team"] = "payments"
		s.Annotations["reloader.example/watch"] = "true" // beside the driver's created-by mark
		s.OwnerReferences = append(s.OwnerReferences, metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: other.Name, UID: other.UID})
		if s, err = c.cs.CoreV1().Secrets(ns).Update(t.Context(), s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}

		// Same content on a later mount: the syncer reads and writes nothing.
		if err := n.pub.Unpublish(t.Context(), n.target(pod)); err != nil {
			t.Fatal(err)
		}
		n.publish(t, pod, "rot")
		poll.Until(t, 10*time.Second, func() error {
			if n.syncer.Pending() != 0 {
				return fmt.Errorf("sync pending")
			}
			return nil
		})
		time.Sleep(500 * time.Millisecond)
		same, err := c.cs.CoreV1().Secrets(ns).Get(t.Context(), "rot", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if same.ResourceVersion != s.ResourceVersion {
			t.Errorf("Secret rewritten although nothing differed (resourceVersion %s -> %s)", s.ResourceVersion, same.ResourceVersion)
		}

		// Rotation: new content reaches the Secret; foreign metadata stays.
		n.provider.set(map[string][]byte{"pw": []byte("second-rotation-value")}, "v2")
		n.publish(t, pod, "rot")
		waitEvent(t, c.cs, pod, "SecretRotationComplete", "rot")
		got := waitSecret(t, c.cs, ns, "rot", hasData("pw", "second-rotation-value"))
		if got.Labels["team"] != "payments" || got.Labels["app"] != "rot" || got.Labels[secretdata.ManagedLabel] != "true" {
			t.Errorf("labels after rotation: %v", got.Labels)
		}
		if got.Annotations["reloader.example/watch"] != "true" || got.Annotations[secretdata.CreatedByAnnotation] != "SecretProviderClass/rot" {
			t.Errorf("annotations after rotation: %v", got.Annotations)
		}
		if err := hasOwners(metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID},
			metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: other.Name, UID: other.UID})(got); err != nil {
			t.Error(err)
		}

		// A failed rotation keeps the Secret as it is and says so on the pod.
		n.provider.fail(fmt.Errorf("backend unavailable"))
		n.publish(t, pod, "rot")
		waitEvent(t, c.cs, pod, "SecretRotationFailed", "backend unavailable")
		after, err := c.cs.CoreV1().Secrets(ns).Get(t.Context(), "rot", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if string(after.Data["pw"]) != "second-rotation-value" {
			t.Errorf("failed rotation changed the Secret")
		}
	})

	t.Run("foreign Secrets are never taken over: Opaque and TLS survive byte for byte; opt-in adoption", func(t *testing.T) {
		ns := newNamespace(t, c, "sync-foreign")
		n := newNode(t, c.rc)
		chain := tlschain.New(t, true)
		foreignTLS := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "ingress-tls", Namespace: ns, Labels: map[string]string{"team": "edge"}, Annotations: map[string]string{"cert-manager.io/issuer": "le"}},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{"tls.crt": tlschain.CertPEM(chain.Leaf), "tls.key": tlschain.KeyPEM(t, chain.LeafKey, "pkcs8")},
		}
		foreignOpaque := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "db-admin", Namespace: ns},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{"password": []byte("n0t-the-driver's"), "extra": {0, 1, 2, 255}},
		}
		// Another class's Secret carries the marks, for that class.
		otherClass := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "other-class", Namespace: ns, Labels: map[string]string{secretdata.ManagedLabel: "true"}, Annotations: map[string]string{secretdata.CreatedByAnnotation: "SecretProviderClass/other"}},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{"k": []byte("other")},
		}
		before := map[string]*corev1.Secret{}
		for _, sec := range []*corev1.Secret{foreignTLS, foreignOpaque, otherClass} {
			got, err := c.cs.CoreV1().Secrets(ns).Create(t.Context(), sec, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			before[got.Name] = got
		}
		bundle := append(tlschain.CertPEM(chain.Leaf, chain.Inter), tlschain.KeyPEM(t, chain.LeafKey, "pkcs8")...)
		n.provider.set(map[string][]byte{"pw": []byte("attacker-value"), "cert.pem": bundle}, "v1")
		createSPC(t, c.rc, ns, "takeover",
			ssv1.SecretObject{SecretName: "db-admin", Type: "Opaque", Data: []ssv1.SecretObjectData{{ObjectName: "pw", Key: "password"}}},
			ssv1.SecretObject{SecretName: "ingress-tls", Type: "kubernetes.io/tls", Data: []ssv1.SecretObjectData{{ObjectName: "cert.pem", Key: "tls.crt"}, {ObjectName: "cert.pem", Key: "tls.key"}}},
			ssv1.SecretObject{SecretName: "other-class", Type: "Opaque", Data: []ssv1.SecretObjectData{{ObjectName: "pw", Key: "k"}}},
			ssv1.SecretObject{SecretName: "fresh", Type: "Opaque", Data: []ssv1.SecretObjectData{{ObjectName: "pw", Key: "pw"}}},
		)
		rs := createReplicaSet(t, c.cs, ns, "attacker")
		pod := createPod(t, c.cs, ns, "attacker-1", ownedBy(rs))
		n.publish(t, pod, "takeover")

		// The Secret the class may create is created, with the marks.
		fresh := waitSecret(t, c.cs, ns, "fresh", hasData("pw", "attacker-value"))
		if fresh.Labels[secretdata.ManagedLabel] != "true" || fresh.Annotations[secretdata.CreatedByAnnotation] != "SecretProviderClass/takeover" {
			t.Errorf("fresh Secret marks: labels %v annotations %v", fresh.Labels, fresh.Annotations)
		}
		for _, name := range []string{"db-admin", "ingress-tls", "other-class"} {
			waitEvent(t, c.cs, pod, NotOwnedReason, `"`+name+`"`, secretdata.AllowAdoptionAnnotation)
		}
		poll.Until(t, 5*time.Second, func() error {
			if got := n.counter(t, "sync_k8s_secret_not_owned_total"); got != 3 {
				return fmt.Errorf("sync_k8s_secret_not_owned_total = %v, want 3", got)
			}
			return nil
		})
		unchanged := func() {
			t.Helper()
			for name, b := range before {
				got, err := c.cs.CoreV1().Secrets(ns).Get(t.Context(), name, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if got.ResourceVersion != b.ResourceVersion || !equality.Semantic.DeepEqual(got.Data, b.Data) ||
					!equality.Semantic.DeepEqual(got.Labels, b.Labels) || !equality.Semantic.DeepEqual(got.Annotations, b.Annotations) ||
					len(got.OwnerReferences) != 0 || got.Type != b.Type {
					t.Errorf("foreign Secret %s changed (resourceVersion %s -> %s, owners %v)", name, b.ResourceVersion, got.ResourceVersion, got.OwnerReferences)
				}
			}
		}
		unchanged()

		// A rotation tries again and still leaves them alone.
		n.provider.set(map[string][]byte{"pw": []byte("attacker-value-2"), "cert.pem": bundle}, "v2")
		n.publish(t, pod, "takeover")
		waitSecret(t, c.cs, ns, "fresh", hasData("pw", "attacker-value-2"))
		poll.Until(t, 10*time.Second, func() error {
			if n.syncer.Pending() != 0 {
				return fmt.Errorf("sync pending")
			}
			return nil
		})
		unchanged()

		// The owner of db-admin opts in: the next sync adopts it.
		cur, err := c.cs.CoreV1().Secrets(ns).Get(t.Context(), "db-admin", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Annotations = map[string]string{secretdata.AllowAdoptionAnnotation: "true"}
		if _, err := c.cs.CoreV1().Secrets(ns).Update(t.Context(), cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		n.provider.set(map[string][]byte{"pw": []byte("attacker-value-3"), "cert.pem": bundle}, "v3")
		n.publish(t, pod, "takeover")
		adopted := waitSecret(t, c.cs, ns, "db-admin", hasData("password", "attacker-value-3"))
		if _, open := adopted.Annotations[secretdata.AllowAdoptionAnnotation]; open || adopted.Labels[secretdata.ManagedLabel] != "true" || adopted.Annotations[secretdata.CreatedByAnnotation] != "SecretProviderClass/takeover" {
			t.Errorf("adopted Secret marks: labels %v annotations %v (the opt-in must be consumed)", adopted.Labels, adopted.Annotations)
		}
		// Adopted once: a second class cannot take it over in turn.
		createSPC(t, c.rc, ns, "second", ssv1.SecretObject{SecretName: "db-admin", Type: "Opaque", Data: []ssv1.SecretObjectData{{ObjectName: "pw", Key: "password"}}})
		pod2 := createPod(t, c.cs, ns, "attacker-2", ownedBy(rs))
		n.publish(t, pod2, "second")
		waitEvent(t, c.cs, pod2, NotOwnedReason, `"db-admin"`, "SecretProviderClass/takeover")
		if got, err := c.cs.CoreV1().Secrets(ns).Get(t.Context(), "db-admin", metav1.GetOptions{}); err != nil || got.ResourceVersion != adopted.ResourceVersion {
			t.Errorf("adopted Secret changed by a second class (err %v)", err)
		}
		delete(before, "db-admin")
		unchanged()
	})

	t.Run("bad entries give FailedToCreateSecret and the mount still succeeds", func(t *testing.T) {
		ns := newNamespace(t, c, "sync-bad")
		n := newNode(t, c.rc)
		n.provider.set(map[string][]byte{"present": []byte("v4lu3-present-value"), "bad.json": []byte(`{"auths": v4lu3-present-value`)}, "v1")
		createSPC(t, c.rc, ns, "bad",
			ssv1.SecretObject{SecretName: "missing", Type: "Opaque", Data: []ssv1.SecretObjectData{{ObjectName: "absent", Key: "k"}}},
			ssv1.SecretObject{SecretName: "badjson", Type: "kubernetes.io/dockerconfigjson", Data: []ssv1.SecretObjectData{{ObjectName: "bad.json", Key: ".dockerconfigjson"}}},
			ssv1.SecretObject{SecretName: "good", Type: "Opaque", Data: []ssv1.SecretObjectData{{ObjectName: "present", Key: "k"}}},
		)
		pod := createPod(t, c.cs, ns, "p")
		n.publish(t, pod, "bad")
		m1 := waitEvent(t, c.cs, pod, EventReason, "secretObjects[0]", `"missing"`, `"absent"`)
		m2 := waitEvent(t, c.cs, pod, EventReason, "secretObjects[1]", "not valid JSON")
		for _, m := range []string{m1, m2} {
			if strings.Contains(m, "v4lu3-present-value") {
				t.Errorf("event carries a secret value: %q", m)
			}
		}
		waitSecret(t, c.cs, ns, "good", hasData("k", "v4lu3-present-value"))
		for _, name := range []string{"missing", "badjson"} {
			if _, err := c.cs.CoreV1().Secrets(ns).Get(t.Context(), name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("Secret %s: err = %v, want NotFound", name, err)
			}
		}
	})

	t.Run("without the Secret role: clear event, no crash; binding it enables sync", func(t *testing.T) {
		ns := newNamespace(t, c, "sync-rbac")
		applyRBAC(t, c.cs, "serviceaccount.yaml")
		applyRBAC(t, c.cs, "base.yaml")
		limited := rest.CopyConfig(c.rc)
		limited.Impersonate = rest.ImpersonationConfig{
			UserName: "system:serviceaccount:kube-system:secrets-store-csi-driver",
			Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"},
		}
		n := newNode(t, limited)
		n.provider.set(map[string][]byte{"k": []byte("v")}, "v1")
		createSPC(t, c.rc, ns, "rbac", ssv1.SecretObject{SecretName: "rbac", Type: "Opaque", Data: []ssv1.SecretObjectData{{ObjectName: "k", Key: "k"}}})
		pod := createPod(t, c.cs, ns, "p1")
		n.publish(t, pod, "rbac")
		// Decided by the access review, before any write was tried.
		waitEvent(t, c.cs, pod, EventReason, "secret sync is disabled", "missing verbs create, get, update on secrets", SecretSyncRole)
		if _, err := c.cs.CoreV1().Secrets(ns).Get(t.Context(), "rbac", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("Secret written without the role: %v", err)
		}
		// The base role is enough for the pod status.
		kc, _ := kubeclient.NewForConfig(c.rc, kubeclient.Config{QPS: 50, Burst: 100})
		poll.Until(t, 20*time.Second, func() error {
			return kc.CRD.Get().Namespace(ns).Resource("secretproviderclasspodstatuses").Name(podstatus.Name(pod.Name, ns, "rbac")).Do(t.Context()).Error()
		})

		applyRBAC(t, c.cs, "secret-sync.yaml")
		pod2 := createPod(t, c.cs, ns, "p2")
		time.Sleep(time.Second) // RBAC reaches the authorizer's cache, and the access re-check is due
		n.publish(t, pod2, "rbac")
		waitSecret(t, c.cs, ns, "rbac", hasData("k", "v"))
		klog.Flush()
		out := logs.String()
		if n := strings.Count(out, "Secret sync is DISABLED"); n != 1 {
			t.Errorf("the driver said %d times that Secret sync is disabled, want once", n)
		}
		if !strings.Contains(out, "Secret sync is enabled again") {
			t.Errorf("the driver did not say that Secret sync works again")
		}
	})
}
