// Tests of the secrets-store Helm chart: lint, render through the Helm Go SDK
// (the same engine `helm install` uses) for the value sets people use, decode
// every object strictly into its Kubernetes type, check what each value must
// change, and compare with reviewed golden files (go test ./charts/... -update
// rewrites them).
package chart_test

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/sscsi/secrets-store/manifests"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

const (
	releaseName = "csi-secrets-store"
	namespace   = "kube-system"
	kubeVersion = "v1.37.2"
	socket      = "/var/lib/kubelet/plugins/csi-secrets-store/csi.sock"
	// driverDS is the driver DaemonSet's name for releaseName: the name the
	// upstream chart gives it, so a release moving to this chart keeps it.
	driverDS = "csi-secrets-store-secrets-store-csi-driver"
)

// rendered is one render of the chart, decoded.
type rendered struct {
	text         string // every template's output, in file order, for golden files
	daemonSets   map[string]*appsv1.DaemonSet
	csiDriver    *storagev1.CSIDriver
	clusterRoles map[string]*rbacv1.ClusterRole
	bindings     map[string]*rbacv1.ClusterRoleBinding
	accounts     map[string]*corev1.ServiceAccount
	deployments  map[string]*appsv1.Deployment
	roles        map[string]*rbacv1.Role
	roleBindings map[string]*rbacv1.RoleBinding
	policies     map[string]*admissionv1.ValidatingAdmissionPolicy
	policyBinds  map[string]*admissionv1.ValidatingAdmissionPolicyBinding
	notes        string
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(".")
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return ch
}

// render renders the chart with vals (merged over values.yaml, as helm does)
// for a cluster of version kv.
func render(t *testing.T, vals map[string]any, kv string) (*rendered, error) {
	t.Helper()
	ch := loadChart(t)
	caps := chartutil.DefaultCapabilities.Copy()
	v, err := chartutil.ParseKubeVersion(kv)
	if err != nil {
		t.Fatal(err)
	}
	caps.KubeVersion = *v
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{
		Name: releaseName, Namespace: namespace, Revision: 1, IsInstall: true,
	}, caps)
	if err != nil {
		return nil, err
	}
	files, err := engine.Render(ch, rv)
	if err != nil {
		return nil, err
	}
	out := &rendered{
		daemonSets:   map[string]*appsv1.DaemonSet{},
		clusterRoles: map[string]*rbacv1.ClusterRole{},
		bindings:     map[string]*rbacv1.ClusterRoleBinding{},
		accounts:     map[string]*corev1.ServiceAccount{},
		deployments:  map[string]*appsv1.Deployment{},
		roles:        map[string]*rbacv1.Role{},
		roleBindings: map[string]*rbacv1.RoleBinding{},
		policies:     map[string]*admissionv1.ValidatingAdmissionPolicy{},
		policyBinds:  map[string]*admissionv1.ValidatingAdmissionPolicyBinding{},
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var text strings.Builder
	for _, n := range names {
		if strings.HasSuffix(n, "NOTES.txt") {
			out.notes = files[n]
			continue
		}
		if strings.TrimSpace(files[n]) == "" || strings.HasSuffix(n, ".tpl") {
			continue
		}
		fmt.Fprintf(&text, "---\n# Source: %s\n%s\n", n, strings.TrimSpace(files[n]))
		for _, doc := range splitDocs(t, files[n]) {
			out.add(t, n, doc)
		}
	}
	out.text = text.String()
	return out, nil
}

// add decodes doc strictly into its typed object, so a misspelt field in a
// template fails the test instead of being dropped by the API server.
func (r *rendered) add(t *testing.T, file string, doc []byte) {
	t.Helper()
	var meta struct{ Kind string }
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var err error
	switch meta.Kind {
	case "DaemonSet":
		var o appsv1.DaemonSet
		err = yaml.UnmarshalStrict(doc, &o)
		r.daemonSets[o.Name] = &o
	case "CSIDriver":
		var o storagev1.CSIDriver
		err = yaml.UnmarshalStrict(doc, &o)
		r.csiDriver = &o
	case "ClusterRole":
		var o rbacv1.ClusterRole
		err = yaml.UnmarshalStrict(doc, &o)
		r.clusterRoles[o.Name] = &o
	case "ClusterRoleBinding":
		var o rbacv1.ClusterRoleBinding
		err = yaml.UnmarshalStrict(doc, &o)
		r.bindings[o.Name] = &o
	case "ServiceAccount":
		var o corev1.ServiceAccount
		err = yaml.UnmarshalStrict(doc, &o)
		r.accounts[o.Name] = &o
	case "Deployment":
		var o appsv1.Deployment
		err = yaml.UnmarshalStrict(doc, &o)
		r.deployments[o.Name] = &o
	case "Role":
		var o rbacv1.Role
		err = yaml.UnmarshalStrict(doc, &o)
		r.roles[o.Name] = &o
	case "RoleBinding":
		var o rbacv1.RoleBinding
		err = yaml.UnmarshalStrict(doc, &o)
		r.roleBindings[o.Name] = &o
	case "ValidatingAdmissionPolicy":
		var o admissionv1.ValidatingAdmissionPolicy
		err = yaml.UnmarshalStrict(doc, &o)
		r.policies[o.Name] = &o
	case "ValidatingAdmissionPolicyBinding":
		var o admissionv1.ValidatingAdmissionPolicyBinding
		err = yaml.UnmarshalStrict(doc, &o)
		r.policyBinds[o.Name] = &o
	default:
		t.Errorf("%s: unexpected kind %q", file, meta.Kind)
	}
	if err != nil {
		t.Errorf("%s: %s does not decode strictly: %v\n%s", file, meta.Kind, err, doc)
	}
}

func splitDocs(t *testing.T, s string) [][]byte {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(s)))
	var docs [][]byte
	for {
		d, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(stripComments(d))) > 0 {
			docs = append(docs, d)
		}
	}
}

func stripComments(b []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// driver returns the driver DaemonSet and its driver container.
func (r *rendered) driver(t *testing.T) (*appsv1.DaemonSet, corev1.Container) {
	t.Helper()
	ds := r.daemonSets[driverDS]
	if ds == nil {
		t.Fatalf("no driver DaemonSet %s; have %v", driverDS, keys(r.daemonSets))
	}
	for _, c := range ds.Spec.Template.Spec.Containers {
		if c.Name == "secrets-store" {
			return ds, c
		}
	}
	t.Fatal("driver DaemonSet has no secrets-store container")
	return nil, corev1.Container{}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// flagValue returns the value of --name=value in args, and whether it is there.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if a == name {
			return "", true
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
	}
	return "", false
}

func wantFlag(t *testing.T, args []string, name, want string) {
	t.Helper()
	got, ok := flagValue(args, name)
	if !ok {
		t.Errorf("driver args lack %s (args %q)", name, args)
	} else if got != want {
		t.Errorf("%s = %q, want %q", name, got, want)
	}
}

func readValues(t *testing.T, file string) map[string]any {
	t.Helper()
	v, err := chartutil.ReadValuesFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// set builds a values map from dotted paths.
func set(kv ...any) map[string]any {
	out := map[string]any{}
	for i := 0; i < len(kv); i += 2 {
		parts := strings.Split(kv[i].(string), ".")
		m := out
		for _, p := range parts[:len(parts)-1] {
			next, ok := m[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[p] = next
			}
			m = next
		}
		m[parts[len(parts)-1]] = kv[i+1]
	}
	return out
}

func TestLint(t *testing.T) {
	kv, _ := chartutil.ParseKubeVersion(kubeVersion)
	for name, vals := range map[string]map[string]any{
		"default":  nil,
		"upstream": readValues(t, "testdata/upstream-values.yaml"),
		"everything": set("syncSecret.enabled", true, "enableSecretRotation", true,
			"providers.fake.enabled", true, "providers.aws.enabled", true,
			"linux.registrar.enabled", true, "linux.livenessProbe.enabled", true),
	} {
		t.Run(name, func(t *testing.T) {
			l := lint.AllWithKubeVersion(".", vals, namespace, kv)
			for _, m := range l.Messages {
				// The chart has no icon; that is the one informational note.
				if m.Severity > support.InfoSev {
					t.Errorf("lint: %s", m)
				}
			}
		})
	}
}

// TestGolden renders the value sets of the golden files and compares the
// output with testdata/<name>.golden.yaml. Review a diff before -update.
func TestGolden(t *testing.T) {
	cases := []struct {
		name string
		vals map[string]any
	}{
		{"default", nil},
		{"upstream", readValues(t, "testdata/upstream-values.yaml")},
		{"sync-on", set("syncSecret.enabled", true)},
		{"rotation-on", set("enableSecretRotation", true, "rotationPollInterval", "30s")},
		{"token-requests", set("tokenRequests", []any{map[string]any{"audience": "vault"}, map[string]any{"audience": "sts.amazonaws.com", "expirationSeconds": 3600}})},
		{"providers", set("providers.fake.enabled", true, "providers.aws.enabled", true, "providers.aws.region", "eu-west-1")},
		{"sidecars", set("linux.registrar.enabled", true, "linux.livenessProbe.enabled", true)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := render(t, tc.vals, kubeVersion)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", tc.name+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, []byte(r.text), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./charts/... -update)", err)
			}
			if string(want) != r.text {
				t.Errorf("render differs from %s; review with -update and git diff:\n%s", golden, lineDiff(string(want), r.text))
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	r, err := render(t, nil, kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	ds, c := r.driver(t)
	spec := ds.Spec.Template.Spec
	if ds.Namespace != namespace {
		t.Errorf("namespace = %q", ds.Namespace)
	}
	if len(spec.Containers) != 1 {
		t.Errorf("%d containers; by default the driver runs alone", len(spec.Containers))
	}
	if spec.ServiceAccountName != "secrets-store-csi-driver" || r.accounts["secrets-store-csi-driver"] == nil {
		t.Error("driver service account secrets-store-csi-driver missing")
	}
	wantFlag(t, c.Args, "--endpoint", "unix://"+socket)
	wantFlag(t, c.Args, "--nodeid", "$(KUBE_NODE_NAME)")
	wantFlag(t, c.Args, "--kubelet-dir", "/var/lib/kubelet")
	wantFlag(t, c.Args, "--provider-volume", "/var/run/secrets-store-csi-providers")
	wantFlag(t, c.Args, "--additional-provider-volume-paths", "/etc/kubernetes/secrets-store-csi-providers")
	wantFlag(t, c.Args, "--metrics-addr", ":8095")
	wantFlag(t, c.Args, "--enable-secret-rotation", "false")
	wantFlag(t, c.Args, "--rotation-poll-interval", "2m")
	wantFlag(t, c.Args, "--max-call-recv-msg-size", "4194304")
	wantFlag(t, c.Args, "-v", "0")
	if _, ok := flagValue(c.Args, "--kubelet-registration"); ok {
		t.Error("--kubelet-registration must stay on (default) without the registrar sidecar")
	}
	if _, ok := flagValue(c.Args, "--log-format-json"); ok {
		t.Error("--log-format-json set by default")
	}
	if c.Env[0].Name != "KUBE_NODE_NAME" || c.Env[0].ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("KUBE_NODE_NAME must come from spec.nodeName: %+v", c.Env)
	}
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Error("driver must be privileged")
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.LivenessProbe.HTTPGet.Port.String() != "metrics" {
		t.Errorf("liveness probe %+v, want /healthz on the metrics port", c.LivenessProbe)
	}
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != 8095 {
		t.Errorf("ports %+v, want metrics 8095", c.Ports)
	}
	if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Error("no memory requests/limits")
	}
	checkMounts(t, ds, c, "/var/lib/kubelet", []string{"/var/run/secrets-store-csi-providers", "/etc/kubernetes/secrets-store-csi-providers"})
	if spec.NodeSelector["kubernetes.io/os"] != "linux" {
		t.Errorf("nodeSelector %v", spec.NodeSelector)
	}
	if len(spec.Tolerations) != 1 || spec.Tolerations[0].Operator != corev1.TolerationOpExists {
		t.Errorf("tolerations %+v, want tolerate everything", spec.Tolerations)
	}

	// CSIDriver: the fixed fields of COMPAT.md.
	d := r.csiDriver
	if d == nil {
		t.Fatal("no CSIDriver")
	}
	if d.Name != "secrets-store.csi.k8s.io" || d.Spec.AttachRequired == nil || *d.Spec.AttachRequired ||
		d.Spec.PodInfoOnMount == nil || !*d.Spec.PodInfoOnMount ||
		!slices.Equal(d.Spec.VolumeLifecycleModes, []storagev1.VolumeLifecycleMode{storagev1.VolumeLifecycleEphemeral}) {
		t.Errorf("CSIDriver spec %+v", d.Spec)
	}
	if d.Spec.RequiresRepublish == nil || *d.Spec.RequiresRepublish {
		t.Error("requiresRepublish must be false without rotation")
	}
	if len(d.Spec.TokenRequests) != 0 || d.Spec.ServiceAccountTokenInSecrets != nil {
		t.Errorf("tokenRequests %+v without any configured", d.Spec.TokenRequests)
	}
	if d.Spec.FSGroupPolicy == nil || *d.Spec.FSGroupPolicy != storagev1.FileFSGroupPolicy {
		t.Error("fsGroupPolicy must be File: the driver applies the pod's fsGroup (VOLUME_MOUNT_GROUP)")
	}

	// RBAC: least privilege, the same rules as manifests/rbac/base.yaml.
	checkNoSecretAccess(t, r)
	base := r.clusterRoles["secretproviderclasses-role"]
	if base == nil || r.bindings["secretproviderclasses-rolebinding"] == nil {
		t.Fatalf("base role or binding missing: %v %v", keys(r.clusterRoles), keys(r.bindings))
	}
	want := manifestRole(t, "rbac/base.yaml", "secretproviderclasses-role")
	if !equalRules(base.Rules, want.Rules) {
		t.Errorf("chart base role rules differ from manifests/rbac/base.yaml:\nchart:     %+v\nmanifests: %+v", base.Rules, want.Rules)
	}
	sub := r.bindings["secretproviderclasses-rolebinding"].Subjects
	if len(sub) != 1 || sub[0].Name != "secrets-store-csi-driver" || sub[0].Namespace != namespace {
		t.Errorf("binding subjects %+v", sub)
	}
	if len(r.daemonSets) != 1 {
		t.Errorf("DaemonSets %v; providers are off by default", keys(r.daemonSets))
	}
}

func checkMounts(t *testing.T, ds *appsv1.DaemonSet, c corev1.Container, kdir string, providerDirs []string) {
	t.Helper()
	hostPaths := map[string]string{}
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
		if hp, ok := hostPaths[m.Name]; ok && hp != m.MountPath {
			t.Errorf("volume %s: host %s mounted at %s; the driver needs host paths unchanged", m.Name, hp, m.MountPath)
		}
	}
	pods := mounts[kdir+"/pods"]
	if pods.MountPropagation == nil || *pods.MountPropagation != corev1.MountPropagationBidirectional {
		t.Errorf("%s/pods must be mounted Bidirectional: %+v", kdir, pods)
	}
	for _, p := range append([]string{kdir + "/plugins_registry", kdir + "/plugins/csi-secrets-store"}, providerDirs...) {
		if _, ok := mounts[p]; !ok {
			t.Errorf("no mount at %s (mounts %v)", p, keys(mounts))
		}
	}
}

// checkNoSecretAccess fails if any role of the render grants anything on Secrets.
func checkNoSecretAccess(t *testing.T, r *rendered) {
	t.Helper()
	for name, role := range r.clusterRoles {
		for _, rule := range role.Rules {
			if slices.Contains(rule.Resources, "secrets") || slices.Contains(rule.Resources, "*") {
				t.Errorf("ClusterRole %s grants %v on %v without syncSecret.enabled", name, rule.Verbs, rule.Resources)
			}
		}
	}
}

func manifestRole(t *testing.T, file, name string) *rbacv1.ClusterRole {
	t.Helper()
	b, err := manifests.RBAC.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range splitDocs(t, string(b)) {
		var role rbacv1.ClusterRole
		if err := yaml.Unmarshal(doc, &role); err == nil && role.Kind == "ClusterRole" && role.Name == name {
			return &role
		}
	}
	t.Fatalf("%s has no ClusterRole %s", file, name)
	return nil
}

func equalRules(a, b []rbacv1.PolicyRule) bool {
	norm := func(rs []rbacv1.PolicyRule) []string {
		var out []string
		for _, r := range rs {
			out = append(out, fmt.Sprint(r.APIGroups, r.Resources, r.ResourceNames, r.Verbs))
		}
		sort.Strings(out)
		return out
	}
	return slices.Equal(norm(a), norm(b))
}

func TestSecretSync(t *testing.T) {
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprint("enabled=", on), func(t *testing.T) {
			r, err := render(t, set("syncSecret.enabled", on), kubeVersion)
			if err != nil {
				t.Fatal(err)
			}
			role, binding := r.clusterRoles["secretprovidersyncing-role"], r.bindings["secretprovidersyncing-rolebinding"]
			if !on {
				if role != nil || binding != nil {
					t.Error("Secret sync role rendered while syncSecret.enabled=false")
				}
				checkNoSecretAccess(t, r)
				return
			}
			if role == nil || binding == nil {
				t.Fatal("Secret sync role or binding missing")
			}
			want := manifestRole(t, "rbac/secret-sync.yaml", "secretprovidersyncing-role")
			if !equalRules(role.Rules, want.Rules) {
				t.Errorf("sync role rules differ from manifests/rbac/secret-sync.yaml: %+v vs %+v", role.Rules, want.Rules)
			}
			if binding.RoleRef.Name != role.Name || binding.Subjects[0].Name != "secrets-store-csi-driver" || binding.Subjects[0].Namespace != namespace {
				t.Errorf("binding %+v", binding)
			}
		})
	}
}

func TestRBACInstallOff(t *testing.T) {
	r, err := render(t, set("rbac.install", false, "syncSecret.enabled", true, "providers.aws.enabled", true), kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.clusterRoles)+len(r.bindings)+len(r.accounts) != 0 {
		t.Errorf("rbac.install=false still renders %v %v %v", keys(r.clusterRoles), keys(r.bindings), keys(r.accounts))
	}
}

func TestRotation(t *testing.T) {
	for _, tc := range []struct {
		on       bool
		interval string
	}{{false, ""}, {true, "30s"}, {true, "1h"}} {
		t.Run(fmt.Sprint(tc.on, tc.interval), func(t *testing.T) {
			vals := set("enableSecretRotation", tc.on)
			if tc.interval != "" {
				vals["rotationPollInterval"] = tc.interval
			}
			r, err := render(t, vals, kubeVersion)
			if err != nil {
				t.Fatal(err)
			}
			_, c := r.driver(t)
			wantFlag(t, c.Args, "--enable-secret-rotation", fmt.Sprint(tc.on))
			want := tc.interval
			if want == "" {
				want = "2m"
			}
			wantFlag(t, c.Args, "--rotation-poll-interval", want)
			if rr := r.csiDriver.Spec.RequiresRepublish; rr == nil || *rr != tc.on {
				t.Errorf("requiresRepublish = %v, want %v (rotation rides on kubelet's republish)", rr, tc.on)
			}
		})
	}
	if _, err := render(t, set("enableSecretRotation", true, "rotationPollInterval", ""), kubeVersion); err == nil || !strings.Contains(err.Error(), "rotationPollInterval") {
		t.Errorf("empty interval with rotation on: err = %v, want one naming rotationPollInterval", err)
	}
}

func TestTokenRequests(t *testing.T) {
	exp := int64(3600)
	vals := set("tokenRequests", []any{
		map[string]any{"audience": "vault"},
		map[string]any{"audience": "sts.amazonaws.com", "expirationSeconds": exp},
	})
	for _, tc := range []struct {
		kube     string
		inSecret bool
	}{{"v1.37.2", true}, {"v1.34.0", false}} {
		t.Run(tc.kube, func(t *testing.T) {
			r, err := render(t, vals, tc.kube)
			if err != nil {
				t.Fatal(err)
			}
			tr := r.csiDriver.Spec.TokenRequests
			if len(tr) != 2 || tr[0].Audience != "vault" || tr[0].ExpirationSeconds != nil ||
				tr[1].Audience != "sts.amazonaws.com" || tr[1].ExpirationSeconds == nil || *tr[1].ExpirationSeconds != exp {
				t.Errorf("tokenRequests = %+v", tr)
			}
			got := r.csiDriver.Spec.ServiceAccountTokenInSecrets
			if tc.inSecret != (got != nil && *got) {
				t.Errorf("serviceAccountTokenInSecrets = %v on %s, want %v", got, tc.kube, tc.inSecret)
			}
		})
	}
	// The AWS provider adds its audience once, not twice.
	r, err := render(t, set("providers.aws.enabled", true, "tokenRequests", []any{map[string]any{"audience": "sts.amazonaws.com"}}), kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	if tr := r.csiDriver.Spec.TokenRequests; len(tr) != 1 || tr[0].Audience != "sts.amazonaws.com" {
		t.Errorf("tokenRequests with aws enabled = %+v", tr)
	}
	r, err = render(t, set("providers.aws.enabled", true), kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	if tr := r.csiDriver.Spec.TokenRequests; len(tr) != 1 || tr[0].Audience != "sts.amazonaws.com" {
		t.Errorf("aws provider must request IRSA tokens: %+v", tr)
	}
}

// TestUpstreamValues installs with a values file written for the upstream
// chart and checks that each setting lands where it should.
func TestUpstreamValues(t *testing.T) {
	r, err := render(t, readValues(t, "testdata/upstream-values.yaml"), kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	ds, c := r.driver(t)
	spec := ds.Spec.Template.Spec
	if c.Image != "registry.example.com/mirror/secrets-store-csi-driver:v0.1.0" || c.ImagePullPolicy != corev1.PullAlways {
		t.Errorf("image %s (%s)", c.Image, c.ImagePullPolicy)
	}
	kdir := "/var/lib/k0s/kubelet"
	wantFlag(t, c.Args, "--endpoint", "unix://"+kdir+"/plugins/csi-secrets-store/csi.sock")
	wantFlag(t, c.Args, "--kubelet-dir", kdir)
	wantFlag(t, c.Args, "--provider-volume", "/etc/kubernetes/secrets-store-csi-providers")
	// The old default providersDir appears in additionalProvidersDirs too: mounted once.
	wantFlag(t, c.Args, "--additional-provider-volume-paths", "/var/run/secrets-store-csi-providers")
	wantFlag(t, c.Args, "--metrics-addr", ":8080")
	wantFlag(t, c.Args, "--enable-secret-rotation", "true")
	wantFlag(t, c.Args, "--rotation-poll-interval", "3600s")
	wantFlag(t, c.Args, "--provider-health-check", "true")
	wantFlag(t, c.Args, "--provider-health-check-interval", "5m")
	wantFlag(t, c.Args, "--max-call-recv-msg-size", "8388608")
	wantFlag(t, c.Args, "-v", "3")
	wantFlag(t, c.Args, "--log-format-json", "")
	checkMounts(t, ds, c, kdir, []string{"/etc/kubernetes/secrets-store-csi-providers", "/var/run/secrets-store-csi-providers"})
	if n := len(c.VolumeMounts); n != 6 {
		t.Errorf("%d mounts, want 4 + 1 provider dir + the user's 1", n)
	}
	if c.Resources.Limits.Cpu().String() != "300m" {
		t.Errorf("linux.driver.resources not applied: %+v", c.Resources)
	}
	if len(spec.Tolerations) != 1 || spec.Tolerations[0].Key != "dedicated" {
		t.Errorf("linux.tolerations not applied: %+v", spec.Tolerations)
	}
	if spec.NodeSelector["pool"] != "apps" || spec.NodeSelector["kubernetes.io/os"] != "linux" {
		t.Errorf("nodeSelector %v", spec.NodeSelector)
	}
	if spec.PriorityClassName != "system-cluster-critical" {
		t.Errorf("priorityClassName %q", spec.PriorityClassName)
	}
	if len(spec.ImagePullSecrets) != 1 || spec.ImagePullSecrets[0].Name != "mirror-creds" {
		t.Errorf("imagePullSecrets %+v", spec.ImagePullSecrets)
	}
	if ds.Annotations["team"] != "platform" || ds.Spec.Template.Annotations["prometheus.io/scrape"] != "true" ||
		ds.Spec.Template.Labels["tier"] != "node" || ds.Labels["cost-center"] != "42" {
		t.Errorf("annotations/labels not applied: %v %v %v", ds.Annotations, ds.Spec.Template.Annotations, ds.Spec.Template.Labels)
	}
	if ds.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable.String() != "10%" {
		t.Errorf("updateStrategy %+v", ds.Spec.UpdateStrategy)
	}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "HTTPS_PROXY" }) {
		t.Errorf("linux.env not applied: %+v", c.Env)
	}
	// The upstream file names the sidecar images; they stay out unless enabled.
	if len(spec.Containers) != 1 {
		t.Errorf("%d containers", len(spec.Containers))
	}
	if r.clusterRoles["secretprovidersyncing-role"] == nil {
		t.Error("syncSecret.enabled=true did not install the sync role")
	}
	if tr := r.csiDriver.Spec.TokenRequests; len(tr) != 1 || tr[0].Audience != "sts.amazonaws.com" {
		t.Errorf("tokenRequests %+v", tr)
	}
	if !*r.csiDriver.Spec.RequiresRepublish {
		t.Error("rotation on, requiresRepublish off")
	}
	// The file points at a mirror of our image, not upstream's: no warning.
	if strings.Contains(r.notes, "WARNING") {
		t.Errorf("unexpected warning in NOTES:\n%s", r.notes)
	}
}

func TestUpstreamImageWarns(t *testing.T) {
	r, err := render(t, set("linux.image.repository", "registry.k8s.io/csi-secrets-store/driver", "linux.image.tag", "v1.5.4"), kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.notes, "upstream driver image") {
		t.Errorf("NOTES does not warn about the upstream image:\n%s", r.notes)
	}
}

func TestSidecars(t *testing.T) {
	r, err := render(t, set("linux.registrar.enabled", true, "linux.livenessProbe.enabled", true), kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	ds, c := r.driver(t)
	wantFlag(t, c.Args, "--kubelet-registration", "false")
	if c.LivenessProbe.HTTPGet.Port.String() != "healthz" {
		t.Errorf("liveness probe port %s, want the sidecar's healthz", c.LivenessProbe.HTTPGet.Port.String())
	}
	names := map[string]corev1.Container{}
	for _, c := range ds.Spec.Template.Spec.Containers {
		names[c.Name] = c
	}
	reg, ok := names["node-driver-registrar"]
	if !ok || !strings.HasPrefix(reg.Image, "registry.k8s.io/sig-storage/csi-node-driver-registrar:") {
		t.Fatalf("registrar %+v", reg)
	}
	wantFlag(t, reg.Args, "--kubelet-registration-path", socket)
	wantFlag(t, reg.Args, "--csi-address", socket)
	if _, ok := names["liveness-probe"]; !ok {
		t.Error("no liveness-probe container")
	}
}

func TestProviders(t *testing.T) {
	r, err := render(t, set("providers.fake.enabled", true, "providers.aws.enabled", true,
		"providers.aws.region", "eu-west-1", "providers.aws.endpointURL", "http://127.0.0.1:5000",
		"linux.providersDir", "/run/sscsi-providers"), kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	_, c := r.driver(t)
	wantFlag(t, c.Args, "--provider-volume", "/run/sscsi-providers")
	for name, sock := range map[string]string{
		driverDS + "-provider-fake": "/run/sscsi-providers/fake.sock",
		driverDS + "-provider-aws":  "/run/sscsi-providers/aws.sock",
	} {
		ds := r.daemonSets[name]
		if ds == nil {
			t.Errorf("no DaemonSet %s (have %v)", name, keys(r.daemonSets))
			continue
		}
		pc := ds.Spec.Template.Spec.Containers[0]
		wantFlag(t, pc.Args, "--endpoint", sock)
		if pc.SecurityContext.Privileged != nil && *pc.SecurityContext.Privileged {
			t.Errorf("%s is privileged", name)
		}
		if pc.VolumeMounts[0].MountPath != "/run/sscsi-providers" || ds.Spec.Template.Spec.Volumes[0].HostPath.Path != "/run/sscsi-providers" {
			t.Errorf("%s: socket dir not shared with the driver", name)
		}
	}
	aws := r.daemonSets[driverDS+"-provider-aws"].Spec.Template.Spec
	wantFlag(t, aws.Containers[0].Args, "--region", "eu-west-1")
	wantFlag(t, aws.Containers[0].Args, "--endpoint-url", "http://127.0.0.1:5000")
	if aws.ServiceAccountName != "secrets-store-provider-aws" || r.accounts["secrets-store-provider-aws"] == nil {
		t.Error("aws provider service account missing")
	}
	role := r.clusterRoles["secrets-store-provider-aws"]
	if role == nil {
		t.Fatal("aws provider role missing")
	}
	for _, rule := range role.Rules {
		if !slices.Equal(rule.Verbs, []string{"get"}) || slices.Contains(rule.Resources, "secrets") {
			t.Errorf("aws provider rule %+v: read-only get of service accounts and nodes only", rule)
		}
	}
	checkNoSecretAccess(t, r)
	if !strings.Contains(r.notes, "providers.fake is enabled") {
		t.Error("NOTES do not warn about the fake provider")
	}
}

// TestHostNetworkProbes: a host-network driver bound to one address is probed
// there; kubelet would dial the node IP otherwise.
func TestHostNetworkProbes(t *testing.T) {
	for _, tc := range []struct {
		addr     string
		hostNet  bool
		wantHost string
	}{
		{"127.0.0.1:8095", true, "127.0.0.1"},
		{":8095", true, ""},
		{"0.0.0.0:8095", true, ""},
		{"127.0.0.1:8095", false, ""},
	} {
		r, err := render(t, set("linux.metricsAddr", tc.addr, "linux.hostNetwork", tc.hostNet,
			"providers.aws.enabled", true, "providers.aws.metricsAddr", tc.addr, "providers.aws.hostNetwork", tc.hostNet), kubeVersion)
		if err != nil {
			t.Fatal(err)
		}
		_, c := r.driver(t)
		aws := r.daemonSets[driverDS+"-provider-aws"].Spec.Template.Spec.Containers[0]
		for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, aws.LivenessProbe} {
			if p.HTTPGet.Host != tc.wantHost {
				t.Errorf("metricsAddr %s hostNetwork %v: probe host %q, want %q", tc.addr, tc.hostNet, p.HTTPGet.Host, tc.wantHost)
			}
		}
	}
}

func TestRejected(t *testing.T) {
	for _, tc := range []struct {
		vals map[string]any
		want string
	}{
		{set("windows.enabled", true), "windows.enabled"},
		{set("linux.kubeletRootDir", "var/lib/kubelet"), "linux.kubeletRootDir"},
	} {
		if _, err := render(t, tc.vals, kubeVersion); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want one naming %s", tc.vals, err, tc.want)
		}
	}
}

// TestCRDsMatchManifests keeps the chart's crds/ identical to the generated
// manifests/crds/ (cp manifests/crds/*.yaml charts/secrets-store/crds/).
func TestCRDsMatchManifests(t *testing.T) {
	ch := loadChart(t)
	got := map[string][]byte{}
	for _, f := range ch.CRDObjects() {
		got[filepath.Base(f.Filename)] = f.File.Data
	}
	entries, err := manifests.CRDs.ReadDir("crds")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(got) {
		t.Errorf("chart has %d CRDs, manifests/crds %d", len(got), len(entries))
	}
	for _, e := range entries {
		want, _ := manifests.CRDs.ReadFile("crds/" + e.Name())
		if !bytes.Equal(got[e.Name()], want) {
			t.Errorf("charts/secrets-store/crds/%s differs from manifests/crds/%s: cp manifests/crds/*.yaml charts/secrets-store/crds/", e.Name(), e.Name())
		}
	}
}

// TestCSIDriverMatchesManifest checks the chart's CSIDriver against
// manifests/csidriver.yaml for the fields both fix.
func TestCSIDriverMatchesManifest(t *testing.T) {
	var m storagev1.CSIDriver
	if err := yaml.Unmarshal(manifests.CSIDriver, &m); err != nil {
		t.Fatal(err)
	}
	r, err := render(t, set("enableSecretRotation", true), kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	c := r.csiDriver
	if c.Name != m.Name || *c.Spec.AttachRequired != *m.Spec.AttachRequired || *c.Spec.PodInfoOnMount != *m.Spec.PodInfoOnMount ||
		!slices.Equal(c.Spec.VolumeLifecycleModes, m.Spec.VolumeLifecycleModes) || *c.Spec.RequiresRepublish != *m.Spec.RequiresRepublish ||
		c.Spec.FSGroupPolicy == nil || m.Spec.FSGroupPolicy == nil || *c.Spec.FSGroupPolicy != *m.Spec.FSGroupPolicy {
		t.Errorf("chart CSIDriver %+v differs from manifests/csidriver.yaml %+v", c.Spec, m.Spec)
	}
}

func lineDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	n := max(len(wl), len(gl))
	shown := 0
	for i := 0; i < n && shown < 20; i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			fmt.Fprintf(&b, "line %d:\n  golden: %s\n  render: %s\n", i+1, w, g)
			shown++
		}
	}
	return b.String()
}

// TestAggregatedRoles checks that the chart ships upstream's ClusterRoles for
// people (names, aggregation labels, rules) exactly as manifests/rbac does,
// also when the driver itself is not installed on Linux nodes.
func TestAggregatedRoles(t *testing.T) {
	b, err := manifests.RBAC.ReadFile("rbac/aggregated.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]rbacv1.ClusterRole{}
	for _, d := range strings.Split(string(b), "\n---\n") {
		var r rbacv1.ClusterRole
		if err := yaml.UnmarshalStrict([]byte(d), &r); err != nil {
			t.Fatal(err)
		}
		want[r.Name] = r
	}
	if len(want) != 3 {
		t.Fatalf("manifests/rbac/aggregated.yaml has %d roles, want 3", len(want))
	}
	for _, vals := range []map[string]any{nil, set("linux.enabled", false)} {
		r, err := render(t, vals, kubeVersion)
		if err != nil {
			t.Fatal(err)
		}
		for name, w := range want {
			got, ok := r.clusterRoles[name]
			if !ok {
				t.Errorf("values %v: no ClusterRole %s", vals, name)
				continue
			}
			if !reflect.DeepEqual(got.Rules, w.Rules) {
				t.Errorf("%s rules %+v, want %+v", name, got.Rules, w.Rules)
			}
			for k, v := range w.Labels {
				if strings.HasPrefix(k, "rbac.authorization.k8s.io/") && got.Labels[k] != v {
					t.Errorf("%s: label %s=%q, want %q", name, k, got.Labels[k], v)
				}
			}
			for _, bnd := range r.bindings {
				if bnd.RoleRef.Name == name {
					t.Errorf("%s is bound by the chart (%s); it is for people to bind", name, bnd.Name)
				}
			}
		}
	}
}

// TestProviderVaultAllowedAddresses: providers.vault.allowedAddresses
// becomes -allowed-vault-addrs, "*" included.
func TestProviderVaultAllowedAddresses(t *testing.T) {
	for want, list := range map[string][]any{
		"https://vault-dr.example:8200,https://vault-2:8200": {"https://vault-dr.example:8200", "https://vault-2:8200"},
		"*": {"*"},
	} {
		r, err := render(t, set("providers.vault.enabled", true, "providers.vault.allowedAddresses", list), kubeVersion)
		if err != nil {
			t.Fatal(err)
		}
		wantFlag(t, r.daemonSets[driverDS+"-provider-vault"].Spec.Template.Spec.Containers[0].Args, "--allowed-vault-addrs", want)
	}
}

// TestProviderVault: provider-vault serves vault.sock in the providers
// directory with the Vault defaults as flags, requests pod tokens for its
// audience, and has no Kubernetes API access (no token mounted, no role).
func TestProviderVault(t *testing.T) {
	r, err := render(t, set("providers.vault.enabled", true, "providers.vault.address", "https://vault.example:8200",
		"providers.vault.authMount", "k8s-prod", "providers.vault.caCert", map[string]any{"secretName": "vault-ca", "key": "ca.crt"},
		"providers.vault.versionKey", map[string]any{"secretName": "vkey", "key": "key"},
		"providers.vault.spcTLSFiles", map[string]any{"secretName": "vault-tls"},
		"linux.providersDir", "/run/sscsi-providers"), kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	ds := r.daemonSets[driverDS+"-provider-vault"]
	if ds == nil {
		t.Fatalf("no provider-vault DaemonSet (have %v)", keys(r.daemonSets))
	}
	spec := ds.Spec.Template.Spec
	c := spec.Containers[0]
	wantFlag(t, c.Args, "--endpoint", "/run/sscsi-providers/vault.sock")
	wantFlag(t, c.Args, "--vault-addr", "https://vault.example:8200")
	wantFlag(t, c.Args, "--vault-mount", "k8s-prod")
	wantFlag(t, c.Args, "--audience", "vault")
	wantFlag(t, c.Args, "--vault-tls-ca-cert", "/etc/provider-vault/ca/ca.crt")
	wantFlag(t, c.Args, "--version-key-file", "/etc/provider-vault/version-key/key")
	wantFlag(t, c.Args, "--spc-tls-dir", "/vault/tls")
	// By default a class may name only the chart's address.
	wantFlag(t, c.Args, "--allowed-vault-addrs", "")
	mounted := false
	for _, m := range c.VolumeMounts {
		for _, v := range spec.Volumes {
			if v.Name == m.Name && m.MountPath == "/vault/tls" && m.ReadOnly && v.Secret != nil && v.Secret.SecretName == "vault-tls" {
				mounted = true
			}
		}
	}
	if !mounted {
		t.Error("providers.vault.spcTLSFiles is not mounted read-only at spcTLSDir")
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("provider-vault mounts a service account token; it needs none")
	}
	if c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged {
		t.Error("provider-vault is privileged")
	}
	if r.clusterRoles["secrets-store-provider-vault"] != nil {
		t.Error("provider-vault has a ClusterRole; it needs no Kubernetes API access")
	}
	found := false
	for _, tr := range r.csiDriver.Spec.TokenRequests {
		found = found || tr.Audience == "vault"
	}
	if !found {
		t.Errorf("tokenRequests %+v lack the vault audience", r.csiDriver.Spec.TokenRequests)
	}
	checkNoSecretAccess(t, r)
}
