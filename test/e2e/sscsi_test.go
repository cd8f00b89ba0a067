//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/sscsi/secrets-store/test/e2e/framework"
)

// sscsi runs bin/sscsi (built by up.sh's make build) against the local
// cluster and returns its stdout and exit code.
func sscsi(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join("..", "..", "bin", "sscsi"), append(args, "--kubeconfig", fw.Kubeconfig)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("sscsi %v: %v", args, err)
	}
	t.Logf("sscsi %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
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

// TestSSCSIExplain: each common failure of docs/troubleshooting.md, produced
// once, is named by `sscsi explain`.
func TestSSCSIExplain(t *testing.T) {
	t.Parallel()
	ns := fw.Namespace(t, "explain")
	fw.CreateSPC(t, framework.SPC{Name: "noprovider", Namespace: ns, Provider: "nosuchprovider",
		Parameters: fakeParams(t, fakeObject{ObjectName: "x", Value: "x"})})
	fw.CreateSPC(t, framework.SPC{Name: "badpath", Namespace: ns, Provider: "fake",
		Parameters: fakeParams(t, fakeObject{ObjectName: "x", Value: "x", Path: "../x"})})
	cases := map[string]struct {
		vol  framework.CSIVolume
		want string
	}{
		"missing-class": {framework.CSIVolume{Name: "s", SPC: "nope"}, "class-not-found"},
		"no-provider":   {framework.CSIVolume{Name: "s", SPC: "noprovider"}, "provider-not-found"},
		"bad-path":      {framework.CSIVolume{Name: "s", SPC: "badpath"}, "payload-invalid"},
	}
	for pod, c := range cases {
		fw.CreatePod(t, framework.BusyboxPod(ns, pod, c.vol))
	}
	for pod, c := range cases {
		fw.WaitEvent(t, ns, pod, "FailedMount", eventTimeout)
		out, code := sscsi(t, "explain", "pod/"+pod, "--namespace", ns, "--output", "json")
		if code != 1 || !strings.Contains(out, `"id": "`+c.want+`"`) {
			t.Errorf("explain pod/%s: exit %d, want 1 naming %s", pod, code, c.want)
		}
	}
}

func writeFile(name string, b []byte) error { return os.WriteFile(name, b, 0o600) }
