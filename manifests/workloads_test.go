package manifests_test

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/sscsi/secrets-store/manifests"
)

func TestDriverDaemonSet(t *testing.T) {
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(manifests.Driver, &ds); err != nil {
		t.Fatalf("parse: %v", err)
	}
	spec := ds.Spec.Template.Spec
	if ds.Namespace != "kube-system" || spec.ServiceAccountName != "secrets-store-csi-driver" {
		t.Errorf("namespace %q, service account %q: the RBAC bindings expect kube-system/secrets-store-csi-driver", ds.Namespace, spec.ServiceAccountName)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want the driver alone (self-registration, built-in /healthz)", len(spec.Containers))
	}
	c := spec.Containers[0]
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Error("driver container must be privileged (tmpfs mounts)")
	}
	args := strings.Join(c.Args, " ")
	for _, want := range []string{"--nodeid=$(KUBE_NODE_NAME)", "--kubelet-dir=/var/lib/kubelet", "--endpoint=unix:///var/lib/kubelet/plugins/csi-secrets-store/csi.sock"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %s", args, want)
		}
	}
	if len(c.Env) == 0 || c.Env[0].ValueFrom == nil || c.Env[0].ValueFrom.FieldRef == nil || c.Env[0].ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("KUBE_NODE_NAME must come from spec.nodeName: %+v", c.Env)
	}
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
			t.Errorf("probe %+v, want httpGet /healthz", p)
		}
	}
	if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Error("driver needs memory requests and limits")
	}
	hostPaths := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
		if hp := hostPaths[m.Name]; hp != m.MountPath {
			t.Errorf("volume %s: host path %q mounted at %q; keep them equal so paths match kubelet's", m.Name, hp, m.MountPath)
		}
	}
	pods, ok := mounts["/var/lib/kubelet/pods"]
	if !ok || pods.MountPropagation == nil || *pods.MountPropagation != corev1.MountPropagationBidirectional {
		t.Errorf("kubelet pods dir must be mounted with Bidirectional propagation: %+v", pods)
	}
	for _, p := range []string{"/var/lib/kubelet/plugins_registry", "/var/lib/kubelet/plugins/csi-secrets-store", "/var/run/secrets-store-csi-providers", "/etc/kubernetes/secrets-store-csi-providers"} {
		if _, ok := mounts[p]; !ok {
			t.Errorf("no mount of %s", p)
		}
	}
}

func TestProviderManifests(t *testing.T) {
	for _, tc := range []struct{ file, socket string }{
		{"providers/provider-fake.yaml", "/var/run/secrets-store-csi-providers/fake.sock"},
		{"providers/provider-aws.yaml", "/var/run/secrets-store-csi-providers/aws.sock"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b, err := manifests.Providers.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			var found bool
			for _, obj := range decodeAll(t, b) {
				if obj.GetKind() != "DaemonSet" {
					continue
				}
				found = true
				var ds appsv1.DaemonSet
				raw, _ := yaml.Marshal(obj.Object)
				if err := yaml.UnmarshalStrict(raw, &ds); err != nil {
					t.Fatalf("DaemonSet: %v", err)
				}
				c := ds.Spec.Template.Spec.Containers[0]
				if !slices.Contains(c.Args, "--endpoint="+tc.socket) {
					t.Errorf("args %q: want --endpoint=%s", c.Args, tc.socket)
				}
				if c.SecurityContext != nil && c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged {
					t.Error("providers must not be privileged")
				}
				var mounted bool
				for _, m := range c.VolumeMounts {
					mounted = mounted || m.MountPath == filepath.Dir(tc.socket)
				}
				if !mounted {
					t.Errorf("socket directory %s not mounted", filepath.Dir(tc.socket))
				}
			}
			if !found {
				t.Error("no DaemonSet")
			}
		})
	}
}

// TestKustomization checks that every file the kustomizations list exists, and
// that the base leaves the Secret sync role out (least privilege).
func TestKustomization(t *testing.T) {
	for _, dir := range []string{".", "providers"} {
		b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var k struct {
			APIVersion string   `json:"apiVersion"`
			Kind       string   `json:"kind"`
			Resources  []string `json:"resources"`
		}
		if err := yaml.UnmarshalStrict(b, &k); err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		for _, r := range k.Resources {
			if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
				t.Errorf("%s/kustomization.yaml: %v", dir, err)
			}
			if strings.Contains(r, "rbac/secret-sync") {
				t.Errorf("%s/kustomization.yaml includes %s; Secret access must be opt-in", dir, r)
			}
		}
	}
	crds, _ := fs.Glob(manifests.CRDs, "crds/*.yaml")
	b, _ := os.ReadFile("kustomization.yaml")
	for _, c := range crds {
		if !bytes.Contains(b, []byte(c)) {
			t.Errorf("kustomization.yaml does not list %s", c)
		}
	}
}

func decodeAll(t *testing.T, b []byte) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatal(err)
		}
		if m != nil {
			out = append(out, &unstructured.Unstructured{Object: m})
		}
	}
}
