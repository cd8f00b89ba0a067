//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/sscsi/secrets-store/test/e2e/framework"
)

// sscsi runs bin/sscsi (built by up.sh's make build) against the local
// cluster and returns its stdout and exit code.
func sscsi(t *testing.T, args ...string) (string, int) {
	t.Helper()
	return runSSCSI(t, false, args...)
}

// kubectlSSCSI runs `kubectl sscsi ARGS` with bin/ on PATH, where make build
// links kubectl-sscsi: kubectl finds the plugin and passes its exit code on.
func kubectlSSCSI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	return runSSCSI(t, true, args...)
}

func runSSCSI(t *testing.T, viaKubectl bool, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	bin, err := filepath.Abs(filepath.Join("..", "..", "bin"))
	if err != nil {
		t.Fatal(err)
	}
	args = append(args, "--kubeconfig", fw.Kubeconfig)
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "sscsi"), args...)
	if viaKubectl {
		cmd = exec.CommandContext(ctx, fw.KubectlPath, append([]string{"sscsi"}, args...)...)
		cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%s %v: %v", cmd.Path, args, err)
	}
	t.Logf("%s %s: exit %d\n%s%s", filepath.Base(cmd.Path), strings.Join(cmd.Args[1:], " "), code, out.String(), errb.String())
	return out.String(), code
}

// TestSSCSIFetchMatchesMount: `sscsi fetch` through the node's provider
// socket lists exactly the files a real mount of the class writes: same
// paths, modes and bytes.
func TestSSCSIFetchMatchesMount(t *testing.T) {
	t.Parallel()
	ns := fw.Namespace(t, "fetch")
	params := fakeParams(t,
		fakeObject{ObjectName: "user", Value: secretValue("fetch-user"), Version: "v3"},
		fakeObject{ObjectName: "pass", Value: secretValue("fetch-pass"), FilePermission: "0400"},
		fakeObject{ObjectName: "nested", Value: secretValue("fetch-nested"), Path: "dir/nested"})
	fw.CreateSPC(t, framework.SPC{Name: "app", Namespace: ns, Provider: "fake", Parameters: params})
	vol := framework.CSIVolume{Name: "secrets", SPC: "app"}
	fw.CreatePod(t, framework.BusyboxPod(ns, "app", vol))
	fw.WaitPodRunning(t, ns, "app", podTimeout)

	spc, err := yaml.Marshal(map[string]any{
		"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass",
		"metadata": map[string]any{"name": "app", "namespace": ns},
		"spec":     map[string]any{"provider": "fake", "parameters": params},
	})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "spc.yaml")
	if err := writeFile(file, spc); err != nil {
		t.Fatal(err)
	}
	out, code := sscsi(t, "fetch", "-f", file, "--namespace", ns, "--service-account", "default", "--show-values", "--output", "json")
	if code != 0 {
		t.Fatalf("sscsi fetch exit %d", code)
	}
	var got struct {
		Files []struct {
			Path, Mode, Contents string
			Size                 int
		}
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Files) != 3 {
		t.Fatalf("fetch listed %d files, want 3", len(got.Files))
	}
	for _, f := range got.Files {
		p := vol.MountPath() + "/" + f.Path
		if c := fw.ReadFile(t, ns, "app", p); c != f.Contents || len(c) != f.Size {
			t.Errorf("%s: mounted %q, fetch %q (size %d)", f.Path, c, f.Contents, f.Size)
		}
		mode, err := fw.Exec(t.Context(), ns, "app", "stat", "-L", "-c", "%a", p)
		if err != nil {
			t.Fatal(err)
		}
		if "0"+strings.TrimSpace(mode) != f.Mode {
			t.Errorf("%s: mounted mode %s, fetch %s", f.Path, strings.TrimSpace(mode), f.Mode)
		}
	}
}

// explainReport is `sscsi explain --output json`.
type explainReport struct {
	Diagnoses []struct{ ID, Problem, Evidence, Fix string }
	Checks    []struct {
		Name, Detail string
		OK           bool
	}
}

// explainPod runs `sscsi explain pod/NAME --output json` and decodes it.
func explainPod(t *testing.T, ns, pod string) (explainReport, int) {
	t.Helper()
	out, code := sscsi(t, "explain", "pod/"+pod, "--namespace", ns, "--output", "json")
	var r explainReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Errorf("explain pod/%s: output is not JSON (%v)", pod, err)
	}
	return r, code
}

// explainCase is one failure of docs/troubleshooting.md produced on the node.
type explainCase struct {
	pod    *corev1.Pod
	reason string // the event that shows it ("" = none: explain reads objects)
	want   string // the diagnosis id
	after  func() // runs once the pod is Running (rotation cases)
}

// TestSSCSIExplain: each common failure of docs/troubleshooting.md that the
// local node can produce without disturbing other tests is produced once,
// and `sscsi explain` names it by its id (exit 1); a healthy pod gets no
// diagnosis (exit 0) and the checks of its provider and of the driver's
// metrics, read the way a user reads them (the API server's proxy to the
// driver's pod, or the node's address for a host-process driver).
func TestSSCSIExplain(t *testing.T) {
	t.Parallel()
	ns := fw.Namespace(t, "explain")
	fake := func(name string, objs ...fakeObject) {
		fw.CreateSPC(t, framework.SPC{Name: name, Namespace: ns, Provider: "fake", Parameters: fakeParams(t, objs...)})
	}
	fake("ok", fakeObject{ObjectName: "x", Value: secretValue("explain-ok")})
	fake("badpath", fakeObject{ObjectName: "x", Value: "x", Path: "../x"})
	// provider-fake refuses two objects writing one file itself (provider-refused);
	// a provider that sends such a response anyway meets the driver's own checks.
	fake("duplicate", fakeObject{ObjectName: "a", Value: "a", Path: "f"}, fakeObject{ObjectName: "b", Value: "b", Path: "f"})
	hostile := serveHostileProvider(t)
	for answer := range hostileAnswers {
		fw.CreateSPC(t, framework.SPC{Name: "hostile-" + answer, Namespace: ns, Provider: hostile, Parameters: map[string]string{"answer": answer}})
	}
	fw.CreateSPC(t, framework.SPC{Name: "hostile-hang", Namespace: ns, Provider: hostile, Parameters: map[string]string{"answer": hostileHang}})
	// What explain takes for the hostile provider's pod on the node (its name
	// says provider-<name>): running, its readiness probe failing.
	notReady := framework.BusyboxPod(ns, "provider-"+hostile)
	notReady.Spec.Containers[0].ReadinessProbe = &corev1.Probe{PeriodSeconds: 1,
		ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"false"}}}}
	fw.CreatePod(t, notReady)
	many := make([]fakeObject, 1001)
	for i := range many {
		many[i] = fakeObject{ObjectName: fmt.Sprintf("o%d", i), Value: "v"}
	}
	fake("toomany", many...)
	fake("refused", fakeObject{ObjectName: "x", Source: "nodePublishSecret", Key: "absent"})
	fake("rotation", fakeObject{ObjectName: "x", Source: "nodePublishSecret", Key: "k"})
	fw.CreateSPC(t, framework.SPC{Name: "noprovider", Namespace: ns, Provider: "nosuchprovider", Parameters: fakeParams(t, fakeObject{ObjectName: "x", Value: "x"})})
	fw.CreateSPC(t, framework.SPC{Name: "unset", Namespace: ns, Provider: "", Parameters: fakeParams(t, fakeObject{ObjectName: "x", Value: "x"})})
	fw.CreateSPC(t, framework.SPC{Name: "badname", Namespace: ns, Provider: "bad.name", Parameters: fakeParams(t, fakeObject{ObjectName: "x", Value: "x"})})
	stale := staleProviderSocket(t)
	fw.CreateSPC(t, framework.SPC{Name: "stale", Namespace: ns, Provider: stale, Parameters: fakeParams(t, fakeObject{ObjectName: "x", Value: "x"})})
	syncSPC(t, ns)
	creds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: ns}, StringData: map[string]string{"k": secretValue("explain-rot")}}
	if _, err := fw.Client.CoreV1().Secrets(ns).Create(t.Context(), creds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	pod := func(name, spc string, edit func(*corev1.Pod)) *corev1.Pod {
		p := framework.BusyboxPod(ns, name, framework.CSIVolume{Name: "s", SPC: spc})
		if edit != nil {
			edit(p)
		}
		return p
	}
	cases := []explainCase{
		{pod: pod("missing-class", "nope", nil), reason: "FailedMount", want: "class-not-found"},
		{pod: pod("no-provider", "noprovider", nil), reason: "FailedMount", want: "provider-not-found"},
		{pod: pod("stale-socket", "stale", nil), reason: "FailedMount", want: "provider-unavailable"},
		{pod: pod("provider-unset", "unset", nil), reason: "FailedMount", want: "provider-unset"},
		{pod: pod("provider-badname", "badname", nil), reason: "FailedMount", want: "provider-name-invalid"},
		{pod: pod("bad-path", "badpath", nil), reason: "FailedMount", want: "payload-path"},
		{pod: pod("duplicate", "duplicate", nil), reason: "FailedMount", want: "provider-refused"},
		{pod: pod("hostile-duplicate", "hostile-duplicate", nil), reason: "FailedMount", want: "payload-path-duplicate"},
		{pod: pod("hostile-conflict", "hostile-conflict", nil), reason: "FailedMount", want: "payload-path-conflict"},
		{pod: pod("hostile-mode", "hostile-mode", nil), reason: "FailedMount", want: "payload-mode"},
		{pod: pod("hostile-noversions", "hostile-noversions", nil), reason: "FailedMount", want: "provider-response-invalid"},
		{pod: pod("hostile-errorcode", "hostile-errorcode", nil), reason: "FailedMount", want: "provider-error-code"},
		{pod: pod("hostile-throttled", "hostile-throttled", nil), reason: "FailedMount", want: "provider-throttled"},
		{pod: pod("too-many", "toomany", nil), reason: "FailedMount", want: "payload-too-large"},
		{pod: pod("refused", "refused", nil), reason: "FailedMount", want: "provider-refused"},
		{pod: pod("not-readonly", "ok", func(p *corev1.Pod) { p.Spec.Volumes[0].CSI.ReadOnly = nil }), reason: "FailedMount", want: "readonly"},
		{pod: pod("no-class-attr", "ok", func(p *corev1.Pod) { delete(p.Spec.Volumes[0].CSI.VolumeAttributes, "secretProviderClass") }),
			reason: "FailedMount", want: "class-attribute-missing"},
		{pod: pod("sync-failed", "sync", nil), reason: "FailedToCreateSecret", want: "sync-failed"},
		{pod: pod("rotation-failed", "rotation", func(p *corev1.Pod) {
			p.Spec.Volumes[0].CSI.NodePublishSecretRef = &corev1.LocalObjectReference{Name: "creds"}
		}),
			reason: "SecretRotationFailed", want: "provider-refused", after: func() {
				// The key the class reads goes away: the next republish (rotation) fails.
				if _, err := fw.Client.CoreV1().Secrets(ns).Update(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: ns},
					Data: map[string][]byte{"other": []byte("x")}}, metav1.UpdateOptions{}); err != nil {
					t.Errorf("updating Secret creds: %v", err)
				}
			}},
		// Last: its event comes after the driver's 60 s --provider-timeout.
		{pod: pod("hostile-hang", "hostile-hang", nil), reason: "FailedMount", want: "provider-timeout"},
	}
	// A node without the driver: a pod bound to a node no kubelet runs (no
	// CSINode). Explained at once: the controller-manager's pod GC deletes a
	// pod of a node that does not exist about 40 s later.
	fw.CreatePod(t, pod("no-driver-node", "ok", func(p *corev1.Pod) { p.Spec.NodeName = "no-such-node-" + framework.RandomSuffix() }))
	if r, code := explainPod(t, ns, "no-driver-node"); code != 1 || !hasDiagnosis(r, "driver-not-registered") {
		t.Errorf("explain pod/no-driver-node: exit %d, diagnoses %+v: want exit 1 naming driver-not-registered", code, r.Diagnoses)
	}
	fw.CreatePod(t, framework.BusyboxPod(ns, "healthy", framework.CSIVolume{Name: "s", SPC: "ok"}))
	for _, c := range cases {
		fw.CreatePod(t, c.pod)
	}
	for _, c := range cases {
		if c.after != nil {
			fw.WaitPodRunning(t, ns, c.pod.Name, podTimeout)
			c.after()
		}
	}
	for _, c := range cases {
		timeout := eventTimeout
		switch {
		case c.reason == "SecretRotationFailed":
			timeout = 4 * time.Minute // kubelet republishes about once a minute
		case c.want == "provider-timeout":
			timeout = 3 * time.Minute // the driver's --provider-timeout is 60 s
		}
		if c.reason != "" {
			fw.WaitEvent(t, ns, c.pod.Name, c.reason, timeout)
		}
		r, code := explainPod(t, ns, c.pod.Name)
		if code != 1 || !hasDiagnosis(r, c.want) {
			t.Errorf("explain pod/%s: exit %d, diagnoses %+v: want exit 1 naming %s", c.pod.Name, code, r.Diagnoses, c.want)
		}
	}
	// The hostile provider's pod is not Ready: named with the mount's failure.
	for deadline := time.Now().Add(podTimeout); ; time.Sleep(time.Second) {
		p, err := fw.Client.CoreV1().Pods(ns).Get(t.Context(), "provider-"+hostile, metav1.GetOptions{})
		if err == nil && p.Status.Phase == corev1.PodRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod provider-%s is not Running after %s (err %v)", hostile, podTimeout, err)
		}
	}
	if r, _ := explainPod(t, ns, "hostile-errorcode"); !hasDiagnosis(r, "provider-not-ready") || !hasDiagnosis(r, "provider-error-code") {
		t.Errorf("explain pod/hostile-errorcode: diagnoses %+v: want provider-not-ready (its provider's pod) and provider-error-code", r.Diagnoses)
	}
	// A class on its own, before any pod uses it; on the node (root), with
	// --provider-dirs, its provider is asked on its socket too.
	for _, c := range []struct {
		spc, want string
		socket    bool
	}{
		{"ok", "", true}, {"unset", "provider-unset", false}, {"nope", "class-not-found", false},
		{"noprovider", "provider-not-found", true}, {"stale", "provider-unavailable", true},
	} {
		args := []string{"explain", "spc/" + c.spc, "--namespace", ns, "--output", "json"}
		if c.socket {
			args = append(args, "--provider-dirs", framework.ProviderDir)
		}
		out, code := sscsi(t, args...)
		var r explainReport
		_ = json.Unmarshal([]byte(out), &r)
		switch {
		case c.want == "" && (code != 0 || len(r.Diagnoses) != 0):
			t.Errorf("explain spc/%s: exit %d, diagnoses %+v: want exit 0, none", c.spc, code, r.Diagnoses)
		case c.want != "" && (code != 1 || !hasDiagnosis(r, c.want)):
			t.Errorf("explain spc/%s: exit %d, diagnoses %+v: want exit 1 naming %s", c.spc, code, r.Diagnoses, c.want)
		}
	}
	// The same program as a kubectl plugin, exit code included.
	if out, code := kubectlSSCSI(t, "explain", "pod/missing-class", "--namespace", ns); code != 1 || !strings.Contains(out, "class-not-found") {
		t.Errorf("kubectl sscsi explain pod/missing-class: exit %d, output %q: want exit 1 naming class-not-found", code, out)
	}

	fw.WaitPodRunning(t, ns, "healthy", podTimeout)
	r, code := explainPod(t, ns, "healthy")
	if code != 0 || len(r.Diagnoses) != 0 {
		t.Errorf("explain pod/healthy: exit %d, diagnoses %+v: want exit 0, none", code, r.Diagnoses)
	}
	if _, code := kubectlSSCSI(t, "explain", "pod/healthy", "--namespace", ns); code != 0 {
		t.Errorf("kubectl sscsi explain pod/healthy: exit %d, want 0", code)
	}
	checks := map[string]bool{}
	for _, c := range r.Checks {
		checks[c.Name] = c.OK
		if c.Name == "driver-metrics" && !strings.Contains(c.Detail, `provider "fake"`) {
			t.Errorf("driver-metrics check does not report provider fake: %s", c.Detail)
		}
	}
	if !checks["driver-metrics"] {
		t.Errorf("explain pod/healthy could not read the driver's metrics: %+v", r.Checks)
	}
	if _, ok := checks["provider/fake"]; !ok {
		t.Errorf("explain pod/healthy did not check provider fake: %+v", r.Checks)
	}
}

func hasDiagnosis(r explainReport, id string) bool {
	for _, d := range r.Diagnoses {
		if d.ID == id {
			return true
		}
	}
	return false
}

// staleProviderSocket leaves a provider socket nobody listens on in the
// node's provider directory (a crashed provider) and returns its provider
// name; the file goes when the test ends.
func staleProviderSocket(t *testing.T) string {
	t.Helper()
	name := "stale" + framework.RandomSuffix()
	path := filepath.Join(framework.ProviderDir, name+".sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatalf("stale provider socket: %v", err)
	}
	l.SetUnlinkOnClose(false)
	_ = l.Close()
	t.Cleanup(func() { _ = os.Remove(path) })
	return name
}

// syncSPC creates class "sync", whose secretObjects entry names a file the
// provider does not return.
func syncSPC(t *testing.T, ns string) {
	t.Helper()
	spc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": framework.SPCGroup + "/v1", "kind": "SecretProviderClass",
		"metadata": map[string]any{"name": "sync", "namespace": ns},
		"spec": map[string]any{
			"provider":   "fake",
			"parameters": map[string]any{"objects": fakeParams(t, fakeObject{ObjectName: "x", Value: secretValue("explain-sync")})["objects"]},
			"secretObjects": []any{map[string]any{
				"secretName": "synced", "type": "Opaque",
				"data": []any{map[string]any{"objectName": "not-in-the-volume", "key": "k"}},
			}},
		},
	}}
	if _, err := fw.Dynamic.Resource(framework.SPCResource("v1")).Namespace(ns).Create(t.Context(), spc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating SecretProviderClass sync: %v", err)
	}
}

func writeFile(name string, b []byte) error { return os.WriteFile(name, b, 0o600) }
