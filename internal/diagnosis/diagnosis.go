// Package diagnosis explains why a pod's secrets-store volume fails or is
// stale, from what the cluster records: the pod's events, its
// SecretProviderClassPodStatus, the SecretProviderClass, the CSIDriver, the
// CSINode registration of the pod's node and, run on that node, the
// providers' sockets. Each problem becomes one
// Diagnosis whose fix is worded as in docs/troubleshooting.md (a test holds
// them to it). It reads; it never changes the cluster.
package diagnosis

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
	"github.com/sscsi/secrets-store/internal/pluginclient"
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

// rule maps a FailedMount / SecretRotationFailed / FailedToCreateSecret
// message to a diagnosis.
type rule struct {
	id, problem, fix string
	match            *regexp.Regexp
}

// rules are tried in order; the first match names an event's problem.
var rules = []rule{
	{"driver-not-registered", "the driver is not registered with kubelet on the pod's node",
		"`kubectl -n kube-system get pods -o wide -l app=secrets-store-csi-driver`; check the pod's logs for `registered with kubelet`. If `linux.kubeletRootDir` does not match kubelet's `--root-dir`, kubelet never sees the registration socket.",
		regexp.MustCompile(`not found in the list of registered CSI drivers`)},
	{"readonly", "the pod's csi volume lacks readOnly: true",
		"Add `readOnly: true` under `volumes[].csi` (not only on the volumeMount).",
		regexp.MustCompile(`Readonly is not true in request`)},
	{"class-attribute-missing", "the pod's volume names no SecretProviderClass",
		"`volumeAttributes: {secretProviderClass: <name>}`.",
		regexp.MustCompile(`secretProviderClass is not set`)},
	{"pod-info-off", "the CSIDriver does not pass pod info",
		"Reinstall the chart's CSIDriver (`podInfoOnMount: true`).",
		regexp.MustCompile(`podInfoOnMount: true`)},
	{"class-forbidden", "the driver may not read SecretProviderClasses",
		"Install with `rbac.install: true`, or bind `secretproviderclasses-role` to the driver's ServiceAccount in its namespace.",
		regexp.MustCompile(`is forbidden: check the driver's RBAC`)},
	{"class-not-found", "the SecretProviderClass does not exist in the pod's namespace",
		"Create it there (`kubectl -n <ns> get secretproviderclasses`); a class in another namespace is never used.",
		regexp.MustCompile(`SecretProviderClass not found|failed to get secretproviderclass .*not found`)},
	{"api-unavailable", "the driver could not reach the Kubernetes API",
		"Transient: kubelet retries. If it persists, check the node's connectivity to the API server (`kubectl -n kube-system logs` of the driver).",
		regexp.MustCompile(`the Kubernetes API is unavailable`)},
	{"provider-unset", "the SecretProviderClass names no provider",
		"Set `spec.provider`.",
		regexp.MustCompile(`provider not set in|spec\.provider is empty`)},
	{"provider-name-invalid", "the SecretProviderClass's provider name cannot be a socket name",
		"Use the provider's name as its docs give it (`aws`, `azure`, `gcp`, `vault`, `fake`).",
		regexp.MustCompile(`invalid provider name`)},
	{"provider-not-found", "no provider of that name listens on the pod's node",
		"Install the provider (`providers.aws.enabled`, or the third-party provider's chart) and check its DaemonSet runs on this node (tolerations, nodeSelector). Its socket directory must be one of the driver's: `linux.providersDir` or `linux.additionalProvidersDirs`.",
		regexp.MustCompile(`provider not found`)},
	{"provider-unavailable", "the provider's socket exists but nobody answers",
		"`kubectl logs` of the provider pod on this node; restart it. The driver fails fast instead of waiting for kubelet's two-minute timeout.",
		regexp.MustCompile(`provider unavailable`)},
	{"token-audience", "the provider needs a service account token kubelet did not send",
		"Add `{audience: <aud>}` to `tokenRequests` (provider-aws's IRSA audience is added by the chart).",
		regexp.MustCompile(`no service account token for audience`)},
	{"provider-timeout", "the provider took longer than --provider-timeout",
		"Usually a backend that does not answer: check the provider's logs; raise `--provider-timeout` with `linux.driver.extraArgs` only if the backend is legitimately slow.",
		regexp.MustCompile(`context deadline exceeded|DeadlineExceeded`)},
	{"payload-invalid", "the provider's files break the volume's rules",
		"Fix the alias in the class: a plain relative path like `db/password`.",
		regexp.MustCompile(`invalid payload`)},
	{"provider-response-invalid", "the provider's response breaks the provider API",
		"The provider's logs say why; the code is also the metric `error_type`.",
		regexp.MustCompile(`invalid provider response`)},
	{"provider-refused", "the provider refused the mount",
		"Read the provider's message: for provider-aws, [providers/aws.md](providers/aws.md) \"Errors\"",
		regexp.MustCompile(`provider ".*" failed for SecretProviderClass`)},
	{"tmpfs-mount-failed", "the driver could not mount its tmpfs",
		"The driver container must be privileged with `<kubelet-root>/pods` mounted Bidirectional (the chart does both); on nodes where `/var/lib/kubelet` is not a shared mount, kubelet's own setup is broken.",
		regexp.MustCompile(`mount failed: mount tmpfs`)},
	{"sync-forbidden", "the class has secretObjects but the driver may not write Secrets",
		"`syncSecret.enabled: true` (or bind the role from `manifests/rbac/secret-sync.yaml`).",
		regexp.MustCompile(`secretprovidersyncing-role`)},
}

// Source reads the cluster and, run on the pod's node, asks its providers.
type Source struct {
	Kube    kubernetes.Interface
	Dynamic dynamic.Interface
	// Providers, when set, is asked for each class's provider (a Version
	// call on its socket, as the driver's health check does); nil skips it.
	Providers Providers
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
func (s Source) Pod(ctx context.Context, namespace, name string) ([]Diagnosis, error) {
	pod, err := s.Kube.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get pod %s/%s: %w", namespace, name, err)
	}
	var out []Diagnosis
	add := func(d Diagnosis) {
		for _, o := range out {
			if o.ID == d.ID {
				return
			}
		}
		out = append(out, d)
	}
	var classes []string
	for _, v := range pod.Spec.Volumes {
		if v.CSI == nil || v.CSI.Driver != DriverName {
			continue
		}
		if v.CSI.ReadOnly == nil || !*v.CSI.ReadOnly {
			add(byID("readonly", fmt.Sprintf("volume %q of pod %s/%s is not readOnly", v.Name, namespace, name), "volumes[].csi.readOnly is unset or false"))
		}
		c := v.CSI.VolumeAttributes["secretProviderClass"]
		if c == "" {
			add(byID("class-attribute-missing", fmt.Sprintf("volume %q of pod %s/%s names no SecretProviderClass", v.Name, namespace, name), ""))
			continue
		}
		classes = append(classes, c)
	}
	if len(classes) == 0 && len(out) == 0 {
		return nil, fmt.Errorf("pod %s/%s has no %s volume", namespace, name, DriverName)
	}
	for _, c := range classes {
		ds, err := s.class(ctx, namespace, c)
		if err != nil {
			return nil, err
		}
		for _, d := range ds {
			add(d)
		}
	}
	ds, err := s.registration(ctx, pod.Spec.NodeName)
	if err != nil {
		return nil, err
	}
	for _, d := range ds {
		add(d)
	}
	evs, err := s.Kube.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		return nil, fmt.Errorf("list events of pod %s/%s: %w", namespace, name, err)
	}
	sort.Slice(evs.Items, func(i, j int) bool { return evs.Items[i].LastTimestamp.After(evs.Items[j].LastTimestamp.Time) })
	for _, e := range evs.Items {
		if e.Type != corev1.EventTypeWarning || !relevant(e) {
			continue
		}
		if d, ok := fromMessage(e.Message); ok {
			d.Evidence = e.Reason + ": " + e.Message
			if e.Reason == "SecretRotationFailed" {
				d.Problem += " (rotation: the pod keeps its previous files, which may be stale)"
			}
			add(d)
		}
	}
	if pod.Status.Phase == corev1.PodRunning && len(out) == 0 {
		for _, c := range classes {
			st := ssv1.SecretProviderClassPodStatus{}
			u, err := s.Dynamic.Resource(spcpsResource).Namespace(namespace).Get(ctx, name+"-"+namespace+"-"+c, metav1.GetOptions{})
			if err == nil {
				err = runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &st)
			}
			if apierrors.IsNotFound(err) || (err == nil && !st.Status.Mounted) {
				add(Diagnosis{ID: "status-missing", Problem: fmt.Sprintf("no mounted SecretProviderClassPodStatus %s-%s-%s for a running pod", name, namespace, c),
					Fix: "`kubectl get secretproviderclasspodstatuses -n <ns>` shows which pods mounted which object versions."})
			}
		}
	}
	return out, nil
}

// Class explains SecretProviderClass namespace/name on its own.
func (s Source) Class(ctx context.Context, namespace, name string) ([]Diagnosis, error) {
	ds, err := s.class(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	reg, err := s.registration(ctx, "")
	return append(ds, reg...), err
}

func (s Source) class(ctx context.Context, namespace, name string) ([]Diagnosis, error) {
	u, err := s.Dynamic.Resource(spcResource).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return []Diagnosis{byID("class-not-found", fmt.Sprintf("SecretProviderClass %s/%s does not exist", namespace, name), "")}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get SecretProviderClass %s/%s: %w", namespace, name, err)
	}
	var c ssv1.SecretProviderClass
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &c); err != nil {
		return nil, fmt.Errorf("decode SecretProviderClass %s/%s: %w", namespace, name, err)
	}
	p := string(c.Spec.Provider)
	switch {
	case p == "":
		return []Diagnosis{byID("provider-unset", fmt.Sprintf("SecretProviderClass %s/%s: spec.provider is empty", namespace, name), "")}, nil
	case !regexp.MustCompile(`^[a-zA-Z0-9_-]{1,30}$`).MatchString(p):
		return []Diagnosis{byID("provider-name-invalid", fmt.Sprintf("SecretProviderClass %s/%s: spec.provider %q", namespace, name, p), "")}, nil
	}
	if s.Providers == nil {
		return nil, nil
	}
	vctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = s.Providers.Version(vctx, p)
	switch {
	case err == nil:
		return nil, nil
	case errors.Is(err, pluginclient.ErrProviderNotFound):
		return []Diagnosis{byID("provider-not-found", fmt.Sprintf("provider %q of SecretProviderClass %s/%s has no socket on this node", p, namespace, name), err.Error())}, nil
	default:
		return []Diagnosis{byID("provider-unavailable", fmt.Sprintf("provider %q of SecretProviderClass %s/%s does not answer Version", p, namespace, name), err.Error())}, nil
	}
}

// registration checks the CSIDriver and the node's CSINode ("" = every node).
func (s Source) registration(ctx context.Context, node string) ([]Diagnosis, error) {
	var out []Diagnosis
	d, err := s.Kube.StorageV1().CSIDrivers().Get(ctx, DriverName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		out = append(out, Diagnosis{ID: "csidriver-missing", Problem: "CSIDriver " + DriverName + " does not exist",
			Fix: "Install the chart (it owns it) or `kubectl apply -f manifests/csidriver.yaml`."})
	case err != nil:
		return nil, fmt.Errorf("get CSIDriver %s: %w", DriverName, err)
	case d.Spec.PodInfoOnMount == nil || !*d.Spec.PodInfoOnMount:
		out = append(out, byID("pod-info-off", "CSIDriver "+DriverName+" has podInfoOnMount unset or false", ""))
	}
	if node == "" {
		return out, nil
	}
	n, err := s.Kube.StorageV1().CSINodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("get CSINode %s: %w", node, err)
	}
	registered := false
	if err == nil {
		for _, dr := range n.Spec.Drivers {
			registered = registered || dr.Name == DriverName
		}
	}
	if !registered {
		out = append(out, byID("driver-not-registered", fmt.Sprintf("CSINode %s does not list %s: the driver is not running on that node or has not registered", node, DriverName), ""))
	}
	return out, nil
}

func relevant(e corev1.Event) bool {
	switch e.Reason {
	case "FailedMount", "SecretRotationFailed", "FailedToCreateSecret":
		return strings.Contains(e.Message, DriverName) || e.Reason != "FailedMount" || strings.Contains(e.Message, "secret")
	}
	return false
}

// fromMessage names the problem an event message shows.
func fromMessage(msg string) (Diagnosis, bool) {
	for _, r := range rules {
		if r.match.MatchString(msg) {
			return Diagnosis{ID: r.id, Problem: r.problem, Fix: r.fix}, true
		}
	}
	return Diagnosis{}, false
}

func byID(id, problem, evidence string) Diagnosis {
	for _, r := range rules {
		if r.id == id {
			return Diagnosis{ID: id, Problem: problem, Evidence: evidence, Fix: r.fix}
		}
	}
	return Diagnosis{ID: id, Problem: problem, Evidence: evidence}
}
