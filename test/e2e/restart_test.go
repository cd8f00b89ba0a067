//go:build e2e && restart

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sscsi/secrets-store/test/e2e/framework"
)

// The tests in this file stop or kill a component of the node, so they do not run in parallel:
// Go runs them, one after the other, before the parallel tests start.

// waitServed waits until the fake provider has served objectName more than `after` times.
func waitServed(t *testing.T, objectName string, after int, timeout time.Duration) framework.Served {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s, err := framework.FakeServed(t.Context(), objectName)
		if err == nil && s.Mounts > after {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("fake provider served %s %d times (err %v), want more than %d within %s", objectName, s.Mounts, err, after, timeout)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// mountsOf returns the mounts of a pod's CSI volumes on the node (its service account token's
// projected volume is kubelet's, not ours).
func mountsOf(t *testing.T, podUID string) []string {
	t.Helper()
	m, err := framework.MountsUnder(filepath.Join(framework.KubeletDir, "pods", podUID, "volumes", "kubernetes.io~csi"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestDriverRestart: killing the driver (SIGKILL) and replacing it the way a DaemonSet rollout
// does leave the mounted files readable and unchanged, and the restarted driver still knows the
// volume: its next fetch carries current_object_version.
func TestDriverRestart(t *testing.T) {
	ns := fw.Namespace(t, "restart")
	obj := "restart-" + framework.RandomSuffix()
	val := secretValue("restart")
	fw.CreateSPC(t, framework.SPC{Name: "app", Namespace: ns, Provider: "fake", Parameters: fakeParams(t, fakeObject{ObjectName: obj, Value: val})})
	vol := framework.CSIVolume{Name: "secrets", SPC: "app"}
	fw.CreatePod(t, framework.BusyboxPod(ns, "app", vol))
	fw.WaitPodRunning(t, ns, "app", podTimeout)
	fw.WaitSPCPodStatus(t, ns, "app", "app", 30*time.Second)

	for _, restart := range []struct {
		name string
		do   func()
	}{
		{"SIGKILL", func() { fw.Kill(t, framework.Driver) }},
		{"rolling update", func() { fw.RollingRestart(t, framework.Driver) }},
	} {
		restart.do()
		fw.WaitDriverServing(t)
		if got := fw.ReadFile(t, ns, "app", vol.MountPath()+"/"+obj); got != val {
			t.Fatalf("after %s of the driver the file reads %q, want the mounted value", restart.name, got)
		}
	}
	// The next fetch comes with kubelet's next republish (about a minute).
	before, err := framework.FakeServed(t.Context(), obj)
	if err != nil {
		t.Fatal(err)
	}
	s := waitServed(t, obj, before.Mounts, 150*time.Second)
	if first := s.Mounts - s.WithCurrentVersion; first != 1 {
		t.Errorf("fake provider: %d mounts of %s, %d with current_object_version: %d fetches had none, want only the first mount: the restarted driver forgot the volume's versions",
			s.Mounts, obj, s.WithCurrentVersion, first)
	}
	if got := fw.ReadFile(t, ns, "app", vol.MountPath()+"/"+obj); got != val {
		t.Errorf("after the restarts and a fetch the file reads %q, want the mounted value", got)
	}
}

// TestDriverKilledMidPublish: a driver killed while a first mount waits for the provider (the
// tmpfs is mounted, nothing written) leaves no half-done volume: kubelet's retry on the new
// driver mounts it completely, once, and deleting the pod leaves no mount and no
// SecretProviderClassPodStatus behind.
func TestDriverKilledMidPublish(t *testing.T) {
	ns := fw.Namespace(t, "midpublish")
	obj := "slow-" + framework.RandomSuffix()
	val := secretValue("midpublish")
	fw.CreateSPC(t, framework.SPC{Name: "app", Namespace: ns, Provider: "fake",
		Parameters: fakeParams(t, fakeObject{ObjectName: obj, Value: val, Delay: "6s"})})
	vol := framework.CSIVolume{Name: "secrets", SPC: "app"}
	fw.CreatePod(t, framework.BusyboxPod(ns, "app", vol))
	waitServed(t, obj, 0, podTimeout) // the first mount is in the provider now
	fw.Kill(t, framework.Driver)
	fw.WaitDriverServing(t)

	pod := fw.WaitPodRunning(t, ns, "app", 2*time.Minute)
	if got := fw.ReadFile(t, ns, "app", vol.MountPath()+"/"+obj); got != val {
		t.Fatalf("file = %q, want the mounted value", got)
	}
	if m := mountsOf(t, string(pod.UID)); len(m) != 1 {
		t.Errorf("mounts of the pod's volumes = %v, want exactly one tmpfs", m)
	}
	fw.WaitSPCPodStatus(t, ns, "app", "app", 30*time.Second)
	fw.DeletePod(t, ns, "app", 60*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for len(mountsOf(t, string(pod.UID))) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("mounts left after the pod was deleted: %v", mountsOf(t, string(pod.UID)))
		}
		time.Sleep(500 * time.Millisecond)
	}
	fw.WaitSPCPodStatusGone(t, ns, "app", "app", 60*time.Second)

	// Killed mid-publish again, and this time the pod is deleted before kubelet's retry on the
	// new driver could finish: once kubelet settles, none of its mounts, volume directories or
	// SecretProviderClassPodStatus are left.
	obj2 := "gone-" + framework.RandomSuffix()
	fw.CreateSPC(t, framework.SPC{Name: "gone", Namespace: ns, Provider: "fake",
		Parameters: fakeParams(t, fakeObject{ObjectName: obj2, Value: secretValue("midpublish-gone"), Delay: "6s"})})
	gone := fw.CreatePod(t, framework.BusyboxPod(ns, "gone", framework.CSIVolume{Name: "secrets", SPC: "gone"}))
	waitServed(t, obj2, 0, podTimeout)
	fw.Kill(t, framework.Driver)
	fw.DeletePod(t, ns, "gone", 60*time.Second)
	fw.WaitDriverServing(t)
	volDir := filepath.Join(framework.KubeletDir, "pods", string(gone.UID), "volumes", "kubernetes.io~csi", "secrets", "mount")
	deadline = time.Now().Add(2 * time.Minute)
	for {
		m := mountsOf(t, string(gone.UID))
		_, err := os.Lstat(volDir)
		if len(m) == 0 && os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("2m after the pod whose mount the driver was killed in was deleted: mounts %v, volume directory %s: %v", m, volDir, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	fw.WaitSPCPodStatusGone(t, ns, "gone", "gone", 60*time.Second)
}

// TestProviderCrash: a provider that dies during a mount fails it quickly with Unavailable; once
// the provider is back the mount succeeds and later mounts see no stale connection error, all
// without a driver restart.
func TestProviderCrash(t *testing.T) {
	ns := fw.Namespace(t, "providercrash")
	obj := "inflight-" + framework.RandomSuffix()
	val := secretValue("providercrash")
	fw.CreateSPC(t, framework.SPC{Name: "slow", Namespace: ns, Provider: "fake",
		Parameters: fakeParams(t, fakeObject{ObjectName: obj, Value: val, Delay: "20s"})})
	driverPID := driverProcess(t)
	vol := framework.CSIVolume{Name: "secrets", SPC: "slow"}
	fw.CreatePod(t, framework.BusyboxPod(ns, "slow", vol))
	waitServed(t, obj, 0, podTimeout)

	start := time.Now().Truncate(time.Second) // events carry whole seconds
	var restart func(testing.TB)
	if framework.DriverMode() == "host" {
		restart = framework.FakeProvider.Stop(t, syscall.SIGKILL)
	} else {
		fw.Kill(t, framework.FakeProvider) // the container's process; kubelet restarts it
	}
	ev := fw.WaitEvent(t, ns, "slow", "FailedMount", eventTimeout, "Unavailable")
	at := ev.FirstTimestamp.Time
	if at.IsZero() {
		at = ev.EventTime.Time
	}
	took := at.Sub(start)
	t.Logf("FailedMount %s after the provider was killed: %s", took.Round(time.Second), ev.Message)
	if took > 15*time.Second {
		t.Errorf("the mount in flight failed %s after the provider died, want seconds", took)
	}
	if restart != nil {
		restart(t)
	}
	fw.WaitPodRunning(t, ns, "slow", 2*time.Minute)
	if got := fw.ReadFile(t, ns, "slow", vol.MountPath()+"/"+obj); got != val {
		t.Fatalf("file = %q, want the mounted value", got)
	}

	// A new mount through the provider that came back: no failure at all.
	fw.CreateSPC(t, framework.SPC{Name: "fast", Namespace: ns, Provider: "fake",
		Parameters: fakeParams(t, fakeObject{ObjectName: "x", Value: secretValue("providercrash2")})})
	fw.CreatePod(t, framework.BusyboxPod(ns, "fast", framework.CSIVolume{Name: "secrets", SPC: "fast"}))
	fw.WaitPodRunning(t, ns, "fast", podTimeout)
	for _, e := range fw.Events(t, ns, "fast") {
		if e.Reason == "FailedMount" {
			t.Errorf("mount after the provider came back failed once: %s", e.Message)
		}
	}
	if got := driverProcess(t); got != driverPID {
		t.Errorf("the driver restarted (%s -> %s); it must reconnect by itself", driverPID, got)
	}
}

// driverProcess identifies the running driver: its PID in host mode, its pod's UID otherwise.
func driverProcess(t *testing.T) string {
	t.Helper()
	if framework.DriverMode() == "host" {
		b, err := os.ReadFile(filepath.Join(framework.ClusterDir, "pids", framework.Driver.Name+".pid"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Fields(string(b))[0]
	}
	for _, sel := range framework.Driver.Selectors {
		pods, err := fw.Client.CoreV1().Pods("").List(t.Context(), metav1.ListOptions{LabelSelector: sel, FieldSelector: "spec.nodeName=localhost"})
		if err == nil && len(pods.Items) == 1 {
			return string(pods.Items[0].UID)
		}
	}
	t.Fatal("no driver pod found")
	return ""
}

// TestAPIServerAwayDuringRotation: with the API server stopped, a mounted volume keeps its
// files and keeps rotating; when it is back, the SecretProviderClassPodStatus and the synced
// Secret catch up with the new version.
func TestAPIServerAwayDuringRotation(t *testing.T) {
	ns := fw.Namespace(t, "apiaway")
	obj := "away-" + framework.RandomSuffix()
	v1, v2 := secretValue("away1"), secretValue("away2")
	params := map[string]any{}
	for k, v := range fakeParams(t, fakeObject{ObjectName: obj, Value: v1}) {
		params[k] = v
	}
	spc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": framework.SPCGroup + "/v1",
		"kind":       "SecretProviderClass",
		"metadata":   map[string]any{"name": "app", "namespace": ns},
		"spec": map[string]any{
			"provider":      "fake",
			"parameters":    params,
			"secretObjects": []any{map[string]any{"secretName": "synced", "type": "Opaque", "data": []any{map[string]any{"objectName": obj, "key": "value"}}}},
		},
	}}
	if _, err := fw.Dynamic.Resource(framework.SPCResource("v1")).Namespace(ns).Create(t.Context(), spc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating SecretProviderClass: %v", err)
	}
	vol := framework.CSIVolume{Name: "secrets", SPC: "app"}
	fw.CreatePod(t, framework.BusyboxPod(ns, "app", vol))
	pod := fw.WaitPodRunning(t, ns, "app", podTimeout)
	fw.WaitSPCPodStatus(t, ns, "app", "app", 30*time.Second)
	file := filepath.Join(framework.VolumeDir(pod, vol.Name), obj)
	// A class no mount has read yet: a new pod's mount of it needs the API server.
	fw.CreateSPC(t, framework.SPC{Name: "fresh", Namespace: ns, Provider: "fake", Parameters: fakeParams(t, fakeObject{ObjectName: "x", Value: secretValue("away-fresh")})})

	restart := framework.APIServer.Stop(t, syscall.SIGKILL) // a crash (after SIGTERM it drained for more than 30s here)
	restarted := false
	defer func() {
		if !restarted {
			restart(t)
			fw.WaitAPIServer(t, 90*time.Second)
		}
	}()
	// A new pod's mount fails at once with a message naming the class and the API. Kubelet learns
	// of no new pod without the API server, so the mount is asked for the way kubelet asks.
	newMountFails(t, ns, "fresh")
	if err := framework.SetFakeObject(t.Context(), obj, v2); err != nil {
		t.Fatal(err)
	}
	// Read on the node: kubectl needs the API server.
	deadline := time.Now().Add(150 * time.Second)
	for {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("reading %s with the API server away: %v", file, err)
		}
		if string(b) == v2 {
			break
		}
		if string(b) != v1 {
			t.Fatalf("file with the API server away is neither the old nor the new value")
		}
		if time.Now().After(deadline) {
			t.Fatal("no rotation while the API server was away (the file kept the old value for 150s)")
		}
		time.Sleep(time.Second)
	}
	restart(t)
	restarted = true
	fw.WaitAPIServer(t, 90*time.Second)
	back := time.Now()

	err := pollFor(t.Context(), 60*time.Second, func(ctx context.Context) bool {
		s, err := fw.Client.CoreV1().Secrets(ns).Get(ctx, "synced", metav1.GetOptions{})
		return err == nil && string(s.Data["value"]) == v2
	})
	if err != nil {
		t.Fatalf("synced Secret did not catch up within 60s of the API server's return")
	}
	err = pollFor(t.Context(), 60*time.Second, func(ctx context.Context) bool {
		u, err := fw.Dynamic.Resource(framework.SPCPodStatusResource).Namespace(ns).Get(ctx, framework.SPCPodStatusName("app", ns, "app"), metav1.GetOptions{})
		if err != nil {
			return false
		}
		objs, _, _ := unstructured.NestedSlice(u.Object, "status", "objects")
		for _, o := range objs {
			if m, ok := o.(map[string]any); ok && m["id"] == obj && strings.Contains(m["version"].(string), "+") {
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("SecretProviderClassPodStatus did not record the rotated version within 60s of the API server's return")
	}
	t.Logf("pod status and synced Secret caught up %s after the API server returned", time.Since(back).Round(time.Second))
	// The rest of the node recovers too (kube-controller-manager's watches back off while the
	// restarted API server loads its RBAC): a new namespace gets its default service account, so
	// the tests after this one start on a working cluster.
	fw.Namespace(t, "apiaway-after")
	t.Logf("the control plane serves new namespaces again %s after the API server returned", time.Since(back).Round(time.Second))
}

// newMountFails calls the driver's NodePublishVolume on its CSI socket as kubelet would for a new
// pod mounting class ns/spcName, and wants it refused quickly with Unavailable naming the class
// and the Kubernetes API, and nothing mounted.
func newMountFails(t *testing.T, ns, spcName string) {
	t.Helper()
	cc, err := grpc.NewClient("unix://"+framework.DriverSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	uid := "e2e00000-0000-4000-8000-" + framework.RandomSuffix() + framework.RandomSuffix()
	podDir := filepath.Join(framework.KubeletDir, "pods", uid)
	target := filepath.Join(podDir, "volumes", "kubernetes.io~csi", "secrets", "mount")
	node := csipb.NewNodeClient(cc)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := node.NodeUnpublishVolume(ctx, &csipb.NodeUnpublishVolumeRequest{VolumeId: "csi-" + uid, TargetPath: target}); err != nil {
			t.Errorf("unpublishing the refused mount %s: %v", target, err)
		}
		_ = cc.Close()
		_ = os.RemoveAll(podDir)
	})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err = node.NodePublishVolume(ctx, &csipb.NodePublishVolumeRequest{
		VolumeId: "csi-" + uid, TargetPath: target, Readonly: true,
		VolumeCapability: &csipb.VolumeCapability{
			AccessType: &csipb.VolumeCapability_Mount{Mount: &csipb.VolumeCapability_MountVolume{}},
			AccessMode: &csipb.VolumeCapability_AccessMode{Mode: csipb.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY},
		},
		VolumeContext: map[string]string{
			"secretProviderClass":                    spcName,
			"csi.storage.k8s.io/pod.name":            "new",
			"csi.storage.k8s.io/pod.namespace":       ns,
			"csi.storage.k8s.io/pod.uid":             uid,
			"csi.storage.k8s.io/serviceAccount.name": "default",
			"csi.storage.k8s.io/ephemeral":           "true",
		},
	})
	took := time.Since(start)
	st, _ := status.FromError(err)
	t.Logf("new mount with the API server away: %s after %s: %s", st.Code(), took.Round(time.Millisecond), st.Message())
	if err == nil || st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "Kubernetes API is unavailable") || !strings.Contains(st.Message(), ns+"/"+spcName) {
		t.Errorf("new mount with the API server away: %v, want Unavailable naming the Kubernetes API and %s/%s", err, ns, spcName)
	}
	if took > 15*time.Second {
		t.Errorf("new mount with the API server away took %s to fail, want seconds", took)
	}
	if m, err := framework.MountsUnder(podDir + "/"); err != nil || len(m) > 0 {
		t.Errorf("refused mount left mounts %v (%v)", m, err)
	}
}

// pollFor calls cond every 500 ms until it is true or timeout passes.
func pollFor(ctx context.Context, timeout time.Duration, cond func(context.Context) bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if cond(ctx) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
