//go:build integration

package driver_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	admv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
	"github.com/sscsi/secrets-store/test/driverharness"
	"github.com/sscsi/secrets-store/test/poll"
)

const (
	ns       = "restart"
	spcName  = "app"
	stateKey = "trusted.secrets-store.csi.k8s.io.volume"
)

// TestStatusSurvivesSIGKILL runs the real driver binary, kills it (SIGKILL)
// while status writes are pending, restarts it on the same tmpfs mounts,
// and checks against the real API server that exactly the lost statuses
// are written and the confirmed ones cost no request at all. Rotation is
// off and nothing republishes in between: the restarted driver finds the
// lost writes by itself.
func TestStatusSurvivesSIGKILL(t *testing.T) {
	env := driverharness.Start(t, driverharness.Options{Binary: driverBinary(t)})
	ctx := t.Context()
	cs, err := kubernetes.NewForConfig(env.REST)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := env.CreateSPC(ctx, ns, spcName, "- objectName: user\n  value: alice\n"); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("unix://"+env.Endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority("localhost"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	node := csipb.NewNodeClient(conn)
	k := kube{t: t, env: env, cs: cs}
	var vols []vol
	t.Cleanup(func() {
		for _, v := range vols {
			_, _ = node.NodeUnpublishVolume(context.WithoutCancel(ctx), &csipb.NodeUnpublishVolumeRequest{VolumeId: v.id(), TargetPath: v.target(env)})
			_ = unix.Unmount(v.target(env), 0)
		}
	})
	publish := func(v vol) {
		t.Helper()
		if _, err := node.NodePublishVolume(ctx, v.request(env)); err != nil {
			t.Fatalf("publish %s: %v", v.pod, err)
		}
	}

	// Four volumes whose statuses were written and confirmed.
	for i := range 4 {
		v := vol{pod: fmt.Sprintf("kept-%d", i), uid: fmt.Sprintf("00000000-0000-0000-0000-00000000100%d", i)}
		vols = append(vols, v)
		publish(v)
	}
	for _, v := range vols {
		k.waitStatus(v)
		waitRecord(t, env, v, false)
	}

	// One whose write fails and is being retried when the driver dies
	// (the API server refuses status writes: an admission policy).
	k.holdStatusWrites(true)
	lost := vol{pod: "lost", uid: "00000000-0000-0000-0000-000000002000"}
	vols = append(vols, lost)
	publish(lost)
	waitRecord(t, env, lost, true)
	poll.Until(t, 60*time.Second, func() error {
		if n := k.requests()["POST refused"]; n == 0 {
			return errors.New("no status write refused yet")
		}
		return nil
	})
	env.Kill(t)
	k.holdStatusWrites(false)
	if k.exists(lost) {
		t.Fatal("the lost status exists before the restart")
	}

	before := k.requests()
	env.Restart(t)
	k.waitStatus(lost)
	waitRecord(t, env, lost, false)
	// kubelet's republish (rotation off) adds nothing either.
	for _, v := range vols {
		publish(v)
	}
	got := k.settledSince(before, map[string]int{"POST": 1})
	t.Logf("status requests at a restart with %d confirmed volumes and 1 lost write: %v", len(vols)-1, got)

	// Killed inside the writer's 200 ms window: right after the publish.
	win := vol{pod: "window", uid: "00000000-0000-0000-0000-000000003000"}
	vols = append(vols, win)
	publish(win)
	env.Kill(t)
	inWindow := recordUnconfirmed(t, env, win)
	written := k.exists(win)
	before = k.requests()
	env.Restart(t)
	k.waitStatus(win)
	waitRecord(t, env, win, false)
	switch {
	case inWindow && !written:
		got = k.settledSince(before, map[string]int{"POST": 1})
	case inWindow:
		// Killed with the write in flight: written but not confirmed; the
		// restart finds the object and changes nothing.
		got = k.settledSince(before, map[string]int{"POST": 1, "GET": 1})
	default:
		got = k.settledSince(before, map[string]int{})
	}
	t.Logf("killed right after the publish: record unconfirmed %v, object written before the kill %v; requests at the restart %v", inWindow, written, got)
}

// vol is one inline volume of a pod, as kubelet publishes it.
type vol struct{ pod, uid string }

func (v vol) id() string { return "csi-" + v.uid }

func (v vol) target(env *driverharness.Env) string {
	return filepath.Join(env.Dir, "kubelet", "pods", v.uid, "volumes", "kubernetes.io~csi", "secrets", "mount")
}

func (v vol) request(env *driverharness.Env) *csipb.NodePublishVolumeRequest {
	return &csipb.NodePublishVolumeRequest{
		VolumeId:   v.id(),
		TargetPath: v.target(env),
		Readonly:   true,
		VolumeCapability: &csipb.VolumeCapability{
			AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{}},
			AccessMode: &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY},
		},
		VolumeContext: map[string]string{
			"secretProviderClass":                    spcName,
			"csi.storage.k8s.io/pod.name":            v.pod,
			"csi.storage.k8s.io/pod.namespace":       ns,
			"csi.storage.k8s.io/pod.uid":             v.uid,
			"csi.storage.k8s.io/serviceAccount.name": "default",
			"csi.storage.k8s.io/ephemeral":           "true",
		},
	}
}

func (v vol) statusName() string { return v.pod + "-" + ns + "-" + spcName }

// recordUnconfirmed reads the volume's record (the driver's xattr on its
// tmpfs) and reports whether it marks the status unconfirmed.
func recordUnconfirmed(t *testing.T, env *driverharness.Env, v vol) bool {
	t.Helper()
	buf := make([]byte, 16<<10)
	n, err := unix.Getxattr(v.target(env), stateKey, buf)
	if err != nil {
		t.Fatalf("record of %s: %v", v.pod, err)
	}
	return bytes.Contains(buf[:n], []byte(`"unconfirmedStatus"`))
}

func waitRecord(t *testing.T, env *driverharness.Env, v vol, unconfirmed bool) {
	t.Helper()
	poll.Until(t, 60*time.Second, func() error {
		if got := recordUnconfirmed(t, env, v); got != unconfirmed {
			return fmt.Errorf("record of %s: unconfirmed %v, want %v", v.pod, got, unconfirmed)
		}
		return nil
	})
}

// kube is the test's side of the API server.
type kube struct {
	t   *testing.T
	env *driverharness.Env
	cs  kubernetes.Interface
}

func (k kube) exists(v vol) bool {
	k.t.Helper()
	err := k.env.CRD.Get().Namespace(ns).Resource("secretproviderclasspodstatuses").Name(v.statusName()).Do(k.t.Context()).Error()
	if err != nil && !apierrors.IsNotFound(err) {
		k.t.Fatal(err)
	}
	return err == nil
}

// waitStatus waits for v's status object, by LIST (the driver never lists,
// so the counts of its GETs stay clean).
func (k kube) waitStatus(v vol) {
	k.t.Helper()
	poll.Until(k.t, 60*time.Second, func() error {
		l := &ssv1.SecretProviderClassPodStatusList{}
		if err := k.env.CRD.Get().Namespace(ns).Resource("secretproviderclasspodstatuses").Do(k.t.Context()).Into(l); err != nil {
			return err
		}
		for _, o := range l.Items {
			if o.Name == v.statusName() && o.Status.TargetPath == v.target(k.env) && len(o.Status.Objects) == 1 {
				return nil
			}
		}
		return fmt.Errorf("no status %s", v.statusName())
	})
}

// requests counts the API server's requests on secretproviderclasspodstatuses
// by verb (writes refused by admission also as "<verb> refused"), dry runs and lists
// (only the test makes those) left out; from the server's own metrics.
func (k kube) requests() map[string]int {
	k.t.Helper()
	b, err := k.cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(k.t.Context())
	if err != nil {
		k.t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		k.t.Fatal(err)
	}
	out := map[string]int{}
	for _, m := range fams["apiserver_request_total"].GetMetric() {
		l := map[string]string{}
		for _, p := range m.GetLabel() {
			l[p.GetName()] = p.GetValue()
		}
		if l["resource"] != "secretproviderclasspodstatuses" || l["dry_run"] != "" || l["verb"] == "LIST" || l["verb"] == "WATCH" {
			continue
		}
		n := int(m.GetCounter().GetValue())
		out[l["verb"]] += n
		if l["code"] == "403" || l["code"] == "422" {
			out[l["verb"]+" refused"] += n
		}
	}
	return out
}

// settledSince waits until the requests since before are want (a request
// is counted when it ends, a moment after its effect is visible), then
// checks that they stay so for a second (the status writer batches 200 ms).
func (k kube) settledSince(before, want map[string]int) map[string]int {
	k.t.Helper()
	since := func() map[string]int {
		now := k.requests()
		d := map[string]int{}
		for v, n := range now {
			if n-before[v] != 0 {
				d[v] = n - before[v]
			}
		}
		return d
	}
	poll.Until(k.t, 60*time.Second, func() error {
		if got := since(); !equalCounts(got, want) {
			return fmt.Errorf("status requests since the restart %v, want %v", got, want)
		}
		return nil
	})
	time.Sleep(time.Second)
	got := since()
	if !equalCounts(got, want) {
		k.t.Fatalf("status requests since the restart %v, want %v", got, want)
	}
	return got
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// holdStatusWrites makes the API server refuse (on) or accept (off) every
// create and update of a SecretProviderClassPodStatus, through a
// ValidatingAdmissionPolicy, and waits until it does.
func (k kube) holdStatusWrites(on bool) {
	k.t.Helper()
	ctx := k.t.Context()
	adm := k.cs.AdmissionregistrationV1()
	const name = "hold-status-writes"
	if on {
		fail := admv1.Fail
		_, err := adm.ValidatingAdmissionPolicies().Create(ctx, &admv1.ValidatingAdmissionPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: admv1.ValidatingAdmissionPolicySpec{
				FailurePolicy: &fail,
				MatchConstraints: &admv1.MatchResources{ResourceRules: []admv1.NamedRuleWithOperations{{RuleWithOperations: admv1.RuleWithOperations{
					Operations: []admv1.OperationType{admv1.Create, admv1.Update},
					Rule:       admv1.Rule{APIGroups: []string{ssv1.SchemeGroupVersion.Group}, APIVersions: []string{"v1"}, Resources: []string{"secretproviderclasspodstatuses"}},
				}}}},
				Validations: []admv1.Validation{{Expression: "false", Message: "the test holds status writes"}},
			},
		}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			k.t.Fatal(err)
		}
		_, err = adm.ValidatingAdmissionPolicyBindings().Create(ctx, &admv1.ValidatingAdmissionPolicyBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       admv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: name, ValidationActions: []admv1.ValidationAction{admv1.Deny}},
		}, metav1.CreateOptions{})
		if err != nil {
			k.t.Fatal(err)
		}
	} else if err := adm.ValidatingAdmissionPolicyBindings().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		k.t.Fatal(err)
	}
	// A dry-run create tells when the API server applies the change.
	probe := &ssv1.SecretProviderClassPodStatus{ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: ns}}
	poll.Until(k.t, 60*time.Second, func() error {
		err := k.env.CRD.Post().Namespace(ns).Resource("secretproviderclasspodstatuses").Param("dryRun", "All").Body(probe).Do(ctx).Error()
		if refused := err != nil; refused != on {
			return fmt.Errorf("status writes refused %v, want %v (%v)", refused, on, err)
		}
		return nil
	})
}

// driverBinary builds the driver executable (a cached build when nothing
// changed).
func driverBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "secrets-store-csi-driver")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "github.com/sscsi/secrets-store/cmd/secrets-store-csi-driver")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build the driver: %v\n%s", err, out)
	}
	return bin
}
