package manifests_test

import (
	"bytes"
	"slices"
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
