// Package diagnosis explains why a pod's secrets-store volume fails or is
// stale, from what the cluster records: the pod's events, its
// SecretProviderClassPodStatus, the SecretProviderClass, the CSIDriver, the
// CSINode registration of the pod's node, the readiness of the providers'
// pods on that node and the metrics of the driver there; run on that node,
// also the providers' sockets. Each problem becomes one Diagnosis whose fix
// is worded as in docs/troubleshooting.md (a test holds them to it); each
// source consulted becomes one Check. It reads; it never changes the cluster.
package diagnosis

import (
	"context"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
)

// DriverName is the CSI driver this package explains.
const DriverName = "secrets-store.csi.k8s.io"

// Diagnosis is one problem and its fix.
type Diagnosis struct {
	// ID is stable, for scripts: e.g. "class-not-found".
	ID string `json:"id"`
	// Problem says what is wrong, naming the objects.
	Problem string `json:"problem"`
	// Evidence is what showed it (an event message, an object's field).
	Evidence string `json:"evidence,omitempty"`
	// Fix is the fix from docs/troubleshooting.md.
	Fix string `json:"fix"`
}

// Check is one source consulted beyond the pod's own objects (the driver's
// metrics, a provider's pod or socket) and what it said. A failed check is
// not a problem of the pod by itself: it says what could not be verified.
type Check struct {
	// Name is e.g. "driver-metrics" or "provider/aws".
	Name string `json:"name"`
	// OK is false when the source could not be read, or a provider's pod
	// is not Ready. Counters (failed mounts, rotations) are in Detail: they
	// count since the driver started, so they do not make a check fail.
	OK bool `json:"ok"`
	// Detail says what was read and from where.
	Detail string `json:"detail"`
}

// Report is what explain found for one object.
type Report struct {
	Diagnoses []Diagnosis `json:"diagnoses"`
	Checks    []Check     `json:"checks"`
}

// add appends d unless a diagnosis with its ID is already there.
func (r *Report) add(ds ...Diagnosis) {
	for _, d := range ds {
		dup := false
		for _, o := range r.Diagnoses {
			dup = dup || o.ID == d.ID
		}
		if !dup {
			r.Diagnoses = append(r.Diagnoses, d)
		}
	}
}

func (r *Report) check(name string, ok bool, format string, args ...any) {
	r.Checks = append(r.Checks, Check{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
}

// Source reads the cluster and, run on the pod's node, asks its providers.
type Source struct {
	Kube    kubernetes.Interface
	Dynamic dynamic.Interface
	// Providers, when set, is asked for each class's provider (a Version
	// call on its socket, as the driver's health check does); nil skips it.
	Providers Providers
	// Metrics, when set, reads the metrics of the driver on a node; nil
	// skips them.
	Metrics MetricsReader
}

// Providers answers Version on a provider's socket (internal/pluginclient).
type Providers interface {
	Version(ctx context.Context, provider string) (*v1alpha1.VersionResponse, error)
}

// Resources of the CRDs.
var (
	spcResource   = ssv1.SchemeGroupVersion.WithResource("secretproviderclasses")
	spcpsResource = ssv1.SchemeGroupVersion.WithResource("secretproviderclasspodstatuses")
)

// Pod explains the secrets-store volumes of pod namespace/name.
func (s Source) Pod(ctx context.Context, namespace, name string) (Report, error) {
	var r Report
	pod, err := s.Kube.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return r, fmt.Errorf("get pod %s/%s: %w", namespace, name, err)
	}
	classes := volumes(pod, &r)
	if len(classes) == 0 && len(r.Diagnoses) == 0 {
		return r, fmt.Errorf("pod %s/%s has no %s volume", namespace, name, DriverName)
	}
	providers := map[string]bool{}
	for _, c := range classes {
		p, err := s.class(ctx, namespace, c, &r)
		if err != nil {
			return r, err
		}
		if p != "" {
			providers[p] = true
		}
	}
	if err := s.registration(ctx, pod.Spec.NodeName, &r); err != nil {
		return r, err
	}
	if err := s.events(ctx, pod, &r); err != nil {
		return r, err
	}
	if pod.Spec.NodeName != "" {
		if err := s.providerPods(ctx, pod.Spec.NodeName, sortedKeys(providers), &r); err != nil {
			return r, err
		}
		s.driverMetrics(ctx, pod, sortedKeys(providers), &r)
	}
	if pod.Status.Phase == corev1.PodRunning && len(r.Diagnoses) == 0 {
		if err := s.statuses(ctx, pod, classes, &r); err != nil {
			return r, err
		}
	}
	return r, nil
}

// Class explains SecretProviderClass namespace/name on its own.
func (s Source) Class(ctx context.Context, namespace, name string) (Report, error) {
	var r Report
	if _, err := s.class(ctx, namespace, name, &r); err != nil {
		return r, err
	}
	return r, s.registration(ctx, "", &r)
}

// volumes diagnoses the pod's secrets-store volumes and returns the classes
// they name.
func volumes(pod *corev1.Pod, r *Report) []string {
	var classes []string
	for _, v := range pod.Spec.Volumes {
		if v.CSI == nil || v.CSI.Driver != DriverName {
			continue
		}
		if v.CSI.ReadOnly == nil || !*v.CSI.ReadOnly {
			r.add(byID("readonly", fmt.Sprintf("volume %q of pod %s/%s is not readOnly", v.Name, pod.Namespace, pod.Name), "volumes[].csi.readOnly is unset or false"))
		}
		c := v.CSI.VolumeAttributes["secretProviderClass"]
		if c == "" {
			r.add(byID("class-attribute-missing", fmt.Sprintf("volume %q of pod %s/%s names no SecretProviderClass", v.Name, pod.Namespace, pod.Name), ""))
			continue
		}
		classes = append(classes, c)
	}
	return classes
}

// events diagnoses the pod's Warning events, newest first.
func (s Source) events(ctx context.Context, pod *corev1.Pod, r *Report) error {
	evs, err := s.Kube.CoreV1().Events(pod.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod.Name})
	if err != nil {
		return fmt.Errorf("list events of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	sort.Slice(evs.Items, func(i, j int) bool { return evs.Items[i].LastTimestamp.After(evs.Items[j].LastTimestamp.Time) })
	for _, e := range evs.Items {
		if d, ok := fromEvent(e); ok {
			r.add(d)
		}
	}
	return nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
