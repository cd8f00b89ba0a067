package manifests_test

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/sscsi/secrets-store/manifests"
)

func rbacDocs(t *testing.T, file string) [][]byte {
	t.Helper()
	b, err := manifests.RBAC.ReadFile("rbac/" + file)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, d := range bytes.Split(b, []byte("\n---\n")) {
		if len(bytes.TrimSpace(d)) > 0 {
			out = append(out, d)
		}
	}
	return out
}

// TestRBACLeastPrivilege checks the split: no Secret access in the base
// role; the sync role grants Secrets only; both bound to the driver's
// ServiceAccount.
func TestRBACLeastPrivilege(t *testing.T) {
	for file, wantRole := range map[string]string{"base.yaml": "secretproviderclasses-role", "secret-sync.yaml": "secretprovidersyncing-role"} {
		docs := rbacDocs(t, file)
		if len(docs) != 2 {
			t.Fatalf("%s: %d documents, want a ClusterRole and a ClusterRoleBinding", file, len(docs))
		}
		var role rbacv1.ClusterRole
		var binding rbacv1.ClusterRoleBinding
		if err := yaml.UnmarshalStrict(docs[0], &role); err != nil || role.Kind != "ClusterRole" {
			t.Fatalf("%s: first document is not a ClusterRole: %v", file, err)
		}
		if err := yaml.UnmarshalStrict(docs[1], &binding); err != nil || binding.Kind != "ClusterRoleBinding" {
			t.Fatalf("%s: second document is not a ClusterRoleBinding: %v", file, err)
		}
		if role.Name != wantRole || binding.RoleRef.Name != wantRole {
			t.Errorf("%s: role %q bound %q, want %q", file, role.Name, binding.RoleRef.Name, wantRole)
		}
		if len(binding.Subjects) != 1 || binding.Subjects[0].Kind != "ServiceAccount" ||
			binding.Subjects[0].Name != "secrets-store-csi-driver" || binding.Subjects[0].Namespace != "kube-system" {
			t.Errorf("%s: subjects %+v", file, binding.Subjects)
		}
		for _, r := range role.Rules {
			secrets := slices.Contains(r.Resources, "secrets")
			if file == "base.yaml" && (secrets || slices.Contains(r.Resources, "*") || slices.Contains(r.Verbs, "*")) {
				t.Errorf("base role grants %v on %v", r.Verbs, r.Resources)
			}
			if file == "secret-sync.yaml" && (!secrets || len(r.Resources) != 1) {
				t.Errorf("sync role grants %v on %v", r.Verbs, r.Resources)
			}
		}
	}
}

// aggregatedRoles are upstream's ClusterRoles for people: name -> the
// aggregation labels and verbs on the one resource each grants. RoleBindings
// and alerts written for upstream refer to these names.
var aggregatedRoles = map[string]struct {
	Labels   []string
	Resource string
	Verbs    []string
}{
	"secretproviderclasses-admin-role": {
		[]string{"rbac.authorization.k8s.io/aggregate-to-admin", "rbac.authorization.k8s.io/aggregate-to-edit"},
		"secretproviderclasses", []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
	"secretproviderclasses-viewer-role": {
		[]string{"rbac.authorization.k8s.io/aggregate-to-view"}, "secretproviderclasses", []string{"get", "list", "watch"}},
	"secretproviderclasspodstatuses-viewer-role": {
		[]string{"rbac.authorization.k8s.io/aggregate-to-view"}, "secretproviderclasspodstatuses", []string{"get", "list", "watch"}},
}

// checkAggregatedRole reports how role differs from upstream's role of the
// same name ("" when it matches).
func checkAggregatedRole(role *rbacv1.ClusterRole) string {
	want, ok := aggregatedRoles[role.Name]
	if !ok {
		return "not one of upstream's aggregated roles"
	}
	for _, l := range want.Labels {
		if role.Labels[l] != "true" {
			return "missing label " + l + `: "true"`
		}
	}
	for k := range role.Labels {
		if strings.HasPrefix(k, "rbac.authorization.k8s.io/aggregate-to-") && !slices.Contains(want.Labels, k) {
			return "extra aggregation label " + k
		}
	}
	if len(role.Rules) != 1 {
		return "want exactly one rule"
	}
	r := role.Rules[0]
	if !slices.Equal(r.APIGroups, []string{"secrets-store.csi.x-k8s.io"}) || !slices.Equal(r.Resources, []string{want.Resource}) ||
		len(r.ResourceNames) != 0 || !slices.Equal(r.Verbs, want.Verbs) {
		return "rule differs"
	}
	return ""
}

func TestAggregatedRoles(t *testing.T) {
	docs := rbacDocs(t, "aggregated.yaml")
	seen := map[string]bool{}
	for _, d := range docs {
		var role rbacv1.ClusterRole
		if err := yaml.UnmarshalStrict(d, &role); err != nil || role.Kind != "ClusterRole" {
			t.Fatalf("aggregated.yaml: not a ClusterRole: %v", err)
		}
		if msg := checkAggregatedRole(&role); msg != "" {
			t.Errorf("%s: %s", role.Name, msg)
		}
		seen[role.Name] = true
	}
	for n := range aggregatedRoles {
		if !seen[n] {
			t.Errorf("aggregated.yaml lacks %s", n)
		}
	}
	k, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(k, []byte("- rbac/aggregated.yaml\n")) {
		t.Error("kustomization.yaml does not include rbac/aggregated.yaml")
	}
}
