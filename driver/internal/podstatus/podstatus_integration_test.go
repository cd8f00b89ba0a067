//go:build integration

package podstatus_test

import (
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"reflect"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
	"github.com/sscsi/secrets-store/driver/internal/kubeclient"
	"github.com/sscsi/secrets-store/driver/internal/podstatus"
	"github.com/sscsi/secrets-store/driver/internal/publish"
	"github.com/sscsi/secrets-store/driver/internal/spc"
	"github.com/sscsi/secrets-store/manifests"
	"github.com/sscsi/secrets-store/test/cluster/controlplane"
	"github.com/sscsi/secrets-store/test/poll"
)

func installCRDs(t *testing.T, rc *rest.Config, crd rest.Interface) {
	t.Helper()
	c, err := apiextclient.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	names, _ := fs.Glob(manifests.CRDs, "crds/*.yaml")
	for _, n := range names {
		b, _ := manifests.CRDs.ReadFile(n)
		obj := &apiextv1.CustomResourceDefinition{}
		if err := yaml.Unmarshal(b, obj); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ApiextensionsV1().CustomResourceDefinitions().Create(t.Context(), obj, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	poll.Until(t, 30*time.Second, func() error {
		return crd.Get().Namespace("default").Resource("secretproviderclasspodstatuses").Do(t.Context()).Error()
	})
}

type env struct {
	cs  kubernetes.Interface
	crd rest.Interface
}

func (e env) get(t *testing.T, ns, name string) (*ssv1.SecretProviderClassPodStatus, error) {
	t.Helper()
	out := &ssv1.SecretProviderClassPodStatus{}
	err := e.crd.Get().Namespace(ns).Resource("secretproviderclasspodstatuses").Name(name).Do(t.Context()).Into(out)
	return out, err
}

// writer starts a Writer that runs until the subtest ends.
func (e env) writer(t *testing.T) *podstatus.Writer {
	t.Helper()
	w, err := podstatus.New(podstatus.Config{Client: e.crd, NodeName: "node-a", MaxBackoff: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); w.Run(t.Context()) }()
	t.Cleanup(func() { <-done })
	return w
}

func outcome(pod *corev1.Pod, versions ...ssv1.SecretProviderClassObject) publish.Outcome {
	return publish.Outcome{
		Pod:        publish.Pod{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID)},
		SPC:        &spc.Spec{Namespace: pod.Namespace, Name: "app", Provider: "fake"},
		TargetPath: "/var/lib/kubelet/pods/" + string(pod.UID) + "/volumes/kubernetes.io~csi/s/mount",
		Versions:   versions,
	}
}

// counter counts the requests of a client by method, and the most writes
// (POST, PUT) in flight at once.
type counter struct {
	mu           sync.Mutex
	n            map[string]int
	writes, most int
}

func (c *counter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		write := r.Method == http.MethodPost || r.Method == http.MethodPut
		c.mu.Lock()
		c.n[r.Method]++
		if write {
			c.writes++
			c.most = max(c.most, c.writes)
		}
		c.mu.Unlock()
		resp, err := rt.RoundTrip(r)
		if write {
			c.mu.Lock()
			c.writes--
			c.mu.Unlock()
		}
		return resp, err
	})
}

// mostWrites returns the most writes in flight at once since the last call.
func (c *counter) mostWrites() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.most
	c.most = c.writes
	return m
}

func (c *counter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = map[string]int{}
	return n
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestPodStatusAgainstAPIServer(t *testing.T) {
	rc := controlplane.ForTest(t)
	calls := &counter{n: map[string]int{}}
	counted := rest.CopyConfig(rc)
	counted.Wrap(calls.wrap)
	kc, err := kubeclient.NewForConfig(counted, kubeclient.Config{QPS: 50, Burst: 100})
	if err != nil {
		t.Fatal(err)
	}
	installCRDs(t, rc, kc.CRD)
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	e := env{cs: cs, crd: kc.CRD}
	mkNS := func(t *testing.T, ns string) {
		t.Helper()
		if _, err := e.cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mkPod := func(t *testing.T, ns, name string) *corev1.Pod {
		t.Helper()
		p, err := e.cs.CoreV1().Pods(ns).Create(t.Context(), &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	v1 := []ssv1.SecretProviderClassObject{{ID: "a", Version: "1"}, {ID: "b", Version: "1"}}

	t.Run("created with name, node label, pod owner and status; rewritten only on change", func(t *testing.T) {
		mkNS(t, "created")
		pod := mkPod(t, "created", "web")
		w := e.writer(t)
		w.Record(outcome(pod, v1...))
		name := podstatus.Name("web", "created", "app")
		if name != "web-created-app" {
			t.Fatalf("name = %q", name)
		}
		var got *ssv1.SecretProviderClassPodStatus
		poll.Until(t, 10*time.Second, func() error {
			got, err = e.get(t, "created", name)
			return err
		})
		if got.Labels[ssv1.NodeNameLabel] != "node-a" {
			t.Errorf("labels = %v", got.Labels)
		}
		wantOwner := []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: "web", UID: pod.UID}}
		if !reflect.DeepEqual(got.OwnerReferences, wantOwner) {
			t.Errorf("owners = %+v, want %+v", got.OwnerReferences, wantOwner)
		}
		want := ssv1.SecretProviderClassPodStatusStatus{PodName: "web", SecretProviderClassName: "app", Mounted: true,
			TargetPath: outcome(pod).TargetPath, Objects: v1}
		if !reflect.DeepEqual(got.Status, want) {
			t.Errorf("status = %+v, want %+v", got.Status, want)
		}

		// The same state again: nothing is queued, nothing written.
		w.Record(outcome(pod, v1...))
		if w.Pending() != 0 {
			t.Errorf("an unchanged status was queued")
		}
		// A restarted driver (empty memory) reads and finds nothing to change.
		w2 := e.writer(t)
		w2.Record(outcome(pod, v1...))
		poll.Until(t, 10*time.Second, func() error {
			if w2.Pending() != 0 {
				return fmt.Errorf("pending")
			}
			return nil
		})
		same, err := e.get(t, "created", name)
		if err != nil {
			t.Fatal(err)
		}
		if same.ResourceVersion != got.ResourceVersion {
			t.Errorf("unchanged status rewritten: resourceVersion %s -> %s", got.ResourceVersion, same.ResourceVersion)
		}

		// A rotation changes a version: the object follows, in one update
		// (the writer remembers the resourceVersion of its last write).
		waitObjects := func(t *testing.T, want []ssv1.SecretProviderClassObject) *ssv1.SecretProviderClassPodStatus {
			t.Helper()
			var cur *ssv1.SecretProviderClassPodStatus
			poll.Until(t, 10*time.Second, func() error {
				cur, err = e.get(t, "created", name)
				if err != nil {
					return err
				}
				if !reflect.DeepEqual(cur.Status.Objects, want) {
					return fmt.Errorf("objects = %v, want %v", cur.Status.Objects, want)
				}
				return nil
			})
			return cur
		}
		v2 := []ssv1.SecretProviderClassObject{{ID: "a", Version: "1"}, {ID: "b", Version: "2"}}
		calls.take()
		w.Record(outcome(pod, v2...))
		waitObjects(t, v2)
		poll.Until(t, 5*time.Second, func() error {
			if w.Pending() != 0 {
				return fmt.Errorf("pending")
			}
			return nil
		})
		if got := calls.take(); got[http.MethodPut] != 1 || got[http.MethodPost] != 0 {
			t.Errorf("requests of the writer for one change (plus the test's GETs): %v, want a single PUT", got)
		}

		// Someone else changed the object meanwhile: the update conflicts,
		// the writer reads it again and keeps the other writer's label.
		cur, err := e.get(t, "created", name)
		if err != nil {
			t.Fatal(err)
		}
		cur.Labels["other"] = "kept"
		if err := e.crd.Put().Namespace("created").Resource("secretproviderclasspodstatuses").Name(name).Body(cur).Do(t.Context()).Error(); err != nil {
			t.Fatal(err)
		}
		v3 := []ssv1.SecretProviderClassObject{{ID: "a", Version: "3"}, {ID: "b", Version: "2"}}
		w.Record(outcome(pod, v3...))
		if got := waitObjects(t, v3); got.Labels["other"] != "kept" || got.Labels[ssv1.NodeNameLabel] != "node-a" {
			t.Errorf("labels after a conflicting update = %v, want other's label kept and the node label", got.Labels)
		}
	})

	t.Run("a failed write is retried", func(t *testing.T) {
		w := e.writer(t)
		// The namespace does not exist yet: the create fails until it does.
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "late", Namespace: "retried", UID: "00000000-0000-0000-0000-000000000001"}}
		w.Record(outcome(pod, v1...))
		time.Sleep(time.Second)
		if w.Pending() != 1 {
			t.Fatalf("pending = %d, want the failed object kept", w.Pending())
		}
		mkNS(t, "retried")
		poll.Until(t, 10*time.Second, func() error {
			got, err := e.get(t, "retried", podstatus.Name("late", "retried", "app"))
			if err != nil {
				return err
			}
			if len(got.OwnerReferences) != 1 || got.OwnerReferences[0].UID != pod.UID {
				return fmt.Errorf("owners = %v", got.OwnerReferences)
			}
			return nil
		})
		// The object is visible a moment before the writer has handled
		// the answer (Pending counts a write in flight).
		poll.Until(t, 10*time.Second, func() error {
			if n := w.Pending(); n != 0 {
				return fmt.Errorf("pending = %d after the retry succeeded", n)
			}
			return nil
		})
	})

	t.Run("the records of a burst are written together, concurrently", func(t *testing.T) {
		mkNS(t, "burst")
		w := e.writer(t)
		calls.mostWrites()
		var pods []*corev1.Pod
		for i := range 20 {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%02d", i), Namespace: "burst", UID: types.UID(fmt.Sprintf("00000000-0000-0000-0000-0000000001%02d", i))}}
			pods = append(pods, pod)
			w.Record(outcome(pod, v1...))
		}
		for _, pod := range pods {
			poll.Until(t, 10*time.Second, func() error {
				_, err := e.get(t, "burst", podstatus.Name(pod.Name, "burst", "app"))
				return err
			})
		}
		if most := calls.mostWrites(); most < 2 {
			t.Errorf("at most %d write in flight for a burst of 20 records, want them written concurrently", most)
		}
	})

	t.Run("what is pending is written when the writer stops", func(t *testing.T) {
		mkNS(t, "stopped")
		// A batch delay longer than the test: only the last flush writes
		// (given time enough for a loaded machine).
		w, err := podstatus.New(podstatus.Config{Client: e.crd, NodeName: "node-a", BatchDelay: time.Hour, StopTimeout: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); w.Run(ctx) }()
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "last", Namespace: "stopped", UID: "00000000-0000-0000-0000-000000000003"}}
		w.Record(outcome(pod, v1...))
		time.Sleep(100 * time.Millisecond)
		if _, err := e.get(t, "stopped", podstatus.Name("last", "stopped", "app")); err == nil {
			t.Fatal("written before the batch delay ended")
		}
		cancel()
		<-done
		got, err := e.get(t, "stopped", podstatus.Name("last", "stopped", "app"))
		if err != nil {
			t.Fatalf("pending status not written when the writer stopped: %v", err)
		}
		if !reflect.DeepEqual(got.Status.Objects, v1) {
			t.Errorf("objects = %v, want %v", got.Status.Objects, v1)
		}
	})

	t.Run("forget drops what is pending", func(t *testing.T) {
		w := e.writer(t)
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "gone", Namespace: "never-created", UID: "00000000-0000-0000-0000-000000000002"}}
		o := outcome(pod, v1...)
		w.Record(o)
		time.Sleep(300 * time.Millisecond)
		w.Forget(o.TargetPath)
		// Also when a write was in flight at the time of Forget.
		time.Sleep(1500 * time.Millisecond)
		poll.Until(t, 10*time.Second, func() error {
			if n := w.Pending(); n != 0 {
				return fmt.Errorf("pending = %d after Forget: a volume that is gone is still being written", n)
			}
			return nil
		})
	})

	t.Run("each write is confirmed; forget aborts a write in flight and nothing follows", func(t *testing.T) {
		mkNS(t, "confirmed")
		held := &holder{gate: make(chan struct{}), entered: make(chan struct{}, 16)}
		hc := rest.CopyConfig(rc)
		hc.Wrap(held.wrap)
		hk, err := kubeclient.NewForConfig(hc, kubeclient.Config{QPS: 50, Burst: 100})
		if err != nil {
			t.Fatal(err)
		}
		type confirmation struct {
			target  string
			objects []ssv1.SecretProviderClassObject
		}
		confirmed := make(chan confirmation, 16)
		w, err := podstatus.New(podstatus.Config{Client: hk.CRD, NodeName: "node-a", MaxBackoff: 500 * time.Millisecond,
			Written: func(target string, objects []ssv1.SecretProviderClassObject) {
				confirmed <- confirmation{target, objects}
			}})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { defer close(done); w.Run(t.Context()) }()
		t.Cleanup(func() { <-done })

		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "ok", Namespace: "confirmed", UID: "00000000-0000-0000-0000-000000000004"}}
		o := outcome(pod, v1...)
		w.Record(o)
		select {
		case c := <-confirmed:
			if c.target != o.TargetPath || !reflect.DeepEqual(c.objects, v1) {
				t.Fatalf("confirmed %+v, want %s %v", c, o.TargetPath, v1)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the write was not confirmed in 30s")
		}
		if _, err := e.get(t, "confirmed", podstatus.Name("ok", "confirmed", "app")); err != nil {
			t.Fatalf("confirmed but not written: %v", err)
		}
		// The same status again: confirmed at once, nothing written.
		w.Record(o)
		select {
		case <-confirmed:
		default:
			t.Fatal("a status already written was not confirmed at once")
		}

		// A write held in flight (the API server is slow to answer).
		held.hold(true)
		gone := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "gone", Namespace: "confirmed", UID: "00000000-0000-0000-0000-000000000005"}}
		og := outcome(gone, v1...)
		w.Record(og)
		select {
		case <-held.entered:
		case <-time.After(30 * time.Second):
			t.Fatal("the write did not start in 30s")
		}
		forgotten := make(chan struct{})
		go func() { w.Forget(og.TargetPath); close(forgotten) }()
		// Forget aborts the write rather than wait for the API server.
		select {
		case <-forgotten:
		case <-time.After(30 * time.Second):
			t.Fatal("Forget did not return in 30s with the volume's write held")
		}
		if n := held.abortedCount(); n != 1 {
			t.Fatalf("%d held writes aborted by Forget, want 1", n)
		}
		held.hold(false)
		close(held.gate)
		before := held.posts()
		time.Sleep(1500 * time.Millisecond) // three retry periods of MaxBackoff
		if n := held.posts() - before; n != 0 {
			t.Fatalf("%d writes after Forget returned", n)
		}
		if _, err := e.get(t, "confirmed", podstatus.Name("gone", "confirmed", "app")); err == nil {
			t.Fatal("a forgotten volume's status object was created")
		}
		select {
		case c := <-confirmed:
			t.Fatalf("a forgotten volume's write was confirmed: %+v", c)
		default:
		}
		if n := w.Pending(); n != 0 {
			t.Fatalf("pending = %d after Forget", n)
		}
	})
}

// holder holds the POSTs of a client while hold is on, until gate is
// closed (then it fails them: 503) or the request is aborted.
type holder struct {
	mu      sync.Mutex
	on      bool
	n       int // POSTs made
	aborted int // held POSTs whose context ended
	gate    chan struct{}
	entered chan struct{}
}

func (h *holder) hold(on bool) { h.mu.Lock(); h.on = on; h.mu.Unlock() }

func (h *holder) posts() int { h.mu.Lock(); defer h.mu.Unlock(); return h.n }

func (h *holder) abortedCount() int { h.mu.Lock(); defer h.mu.Unlock(); return h.aborted }

func (h *holder) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		if r.Method != http.MethodPost {
			return rt.RoundTrip(r)
		}
		h.mu.Lock()
		h.n++
		on := h.on
		h.mu.Unlock()
		if !on {
			return rt.RoundTrip(r)
		}
		h.entered <- struct{}{}
		select {
		case <-h.gate:
		case <-r.Context().Done():
			h.mu.Lock()
			h.aborted++
			h.mu.Unlock()
			return nil, r.Context().Err()
		}
		return &http.Response{StatusCode: http.StatusServiceUnavailable, Status: "503 Service Unavailable", Header: http.Header{},
			Body: http.NoBody, Request: r}, nil
	})
}
