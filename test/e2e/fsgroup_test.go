//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/sscsi/secrets-store/test/e2e/framework"
)

// TestFSGroup: a non-root pod with fsGroup reads a 0440 file (group-owned,
// group-readable, no world bits); the same pod without fsGroup gets
// upstream's files: root-owned, the provider's modes, so it cannot read a
// 0440 file.
func TestFSGroup(t *testing.T) {
	t.Parallel()
	ns := fw.Namespace(t, "fsgroup")
	token, cfg := secretValue("token"), secretValue("cfg")
	// A name of its own: the fake provider's admin API rotates objects by name, node-wide.
	rotating := "fsgroup-" + framework.RandomSuffix()
	fw.CreateSPC(t, framework.SPC{Name: "app", Namespace: ns, Provider: "fake",
		Parameters: fakeParams(t,
			fakeObject{ObjectName: "token", Value: token, FilePermission: "0440"},
			fakeObject{ObjectName: "config", Value: cfg},
			fakeObject{ObjectName: rotating, Value: secretValue("fsgroup-v1"), FilePermission: "0400"})})
	vol := framework.CSIVolume{Name: "secrets", SPC: "app"}
	nonRoot := func(name string, fsGroup *int64) {
		p := framework.BusyboxPod(ns, name, vol)
		// runAsGroup too: without it the container's primary group is the
		// image's (root), which reads root:root 0440 files through the group bits.
		yes, uid, gid := true, int64(1000), int64(3000)
		p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: &yes, RunAsUser: &uid, RunAsGroup: &gid, FSGroup: fsGroup}
		fw.CreatePod(t, p)
	}
	gid := int64(2000)
	nonRoot("with-group", &gid)
	nonRoot("without-group", nil)
	fw.WaitPodRunning(t, ns, "with-group", podTimeout)
	fw.WaitPodRunning(t, ns, "without-group", podTimeout)

	stat := func(pod, file string) string {
		out, err := fw.Exec(t.Context(), ns, pod, "stat", "-L", "-c", "%a %u %g", vol.MountPath()+"/"+file)
		if err != nil {
			t.Fatalf("stat %s in %s: %v", file, pod, err)
		}
		return strings.TrimSpace(out)
	}
	if got := fw.ReadFile(t, ns, "with-group", vol.MountPath()+"/token"); got != token {
		t.Errorf("with fsGroup: token = %q", got)
	}
	for file, want := range map[string]string{"token": "440 0 2000", "config": "640 0 2000", rotating: "440 0 2000", ".": "750 0 2000"} {
		if got := stat("with-group", file); got != want {
			t.Errorf("with fsGroup: stat %s = %q, want %q (mode uid gid)", file, got, want)
		}
	}
	// Upstream's files: root:root, modes as the provider returned them.
	for file, want := range map[string]string{"token": "440 0 0", "config": "644 0 0", rotating: "400 0 0", ".": "755 0 0"} {
		if got := stat("without-group", file); got != want {
			t.Errorf("without fsGroup: stat %s = %q, want %q", file, got, want)
		}
	}
	if out, err := fw.Exec(t.Context(), ns, "without-group", "cat", vol.MountPath()+"/token"); err == nil {
		t.Errorf("uid 1000 without fsGroup read a root 0440 file: %q", out)
	}
	if got := fw.ReadFile(t, ns, "without-group", vol.MountPath()+"/config"); got != cfg {
		t.Errorf("without fsGroup: config = %q", got)
	}

	// Rotation: kubelet's republish carries the group again, and the new
	// payload is group-owned before the pod sees it (the non-root reader
	// reads the new value, never a root-only file).
	v2 := secretValue("fsgroup-v2")
	if err := framework.SetFakeObject(t.Context(), rotating, v2); err != nil {
		t.Fatal(err)
	}
	took := fw.WaitFileContent(t, ns, "with-group", vol.MountPath()+"/"+rotating, v2, 150*time.Second)
	t.Logf("with fsGroup: rotated value readable by uid 1000 after %s", took.Round(time.Second))
	for file, want := range map[string]string{rotating: "440 0 2000", "token": "440 0 2000", ".": "750 0 2000"} {
		if got := stat("with-group", file); got != want {
			t.Errorf("with fsGroup after rotation: stat %s = %q, want %q", file, got, want)
		}
	}
}
