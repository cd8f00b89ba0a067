//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/sscsi/secrets-store/manifests"
	"github.com/sscsi/secrets-store/test/e2e/framework"
)

// TestAggregatedRoles: upstream's ClusterRoles for people
// (secretproviderclasses-admin-role, -viewer-role,
// secretproviderclasspodstatuses-viewer-role) are aggregated by the node's
// controller-manager into the built-in view, edit and admin roles, so a
// RoleBinding to those, written for upstream, grants what it did there. The
// chart installs them (chart mode); otherwise the test applies
// manifests/rbac/aggregated.yaml and removes it afterwards.
func TestAggregatedRoles(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	rbac := fw.Client.RbacV1()
	b, err := manifests.RBAC.ReadFile("rbac/aggregated.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range bytes.Split(b, []byte("\n---\n")) {
		var role rbacv1.ClusterRole
		if err := yaml.Unmarshal(doc, &role); err != nil || role.Name == "" {
			t.Fatalf("manifests/rbac/aggregated.yaml: not a ClusterRole (%v)", err)
		}
		_, err := rbac.ClusterRoles().Get(ctx, role.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			if _, err := rbac.ClusterRoles().Create(ctx, &role, metav1.CreateOptions{}); err != nil {
				t.Fatalf("creating ClusterRole %s: %v", role.Name, err)
			}
			t.Cleanup(func() {
				_ = rbac.ClusterRoles().Delete(context.Background(), role.Name, metav1.DeleteOptions{})
			})
		case err != nil:
			t.Fatalf("reading ClusterRole %s: %v", role.Name, err)
		default:
			t.Logf("ClusterRole %s is installed (the chart's)", role.Name)
		}
	}

	ns := fw.Namespace(t, "rbac")
	for _, builtin := range []string{"view", "edit", "admin"} {
		rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "e2e-" + builtin, Namespace: ns},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: builtin},
			Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: "e2e-" + builtin}}}
		if _, err := rbac.RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		user, verb, resource string
		allowed              bool
	}{
		{"e2e-view", "list", "secretproviderclasses", true},
		{"e2e-view", "get", "secretproviderclasspodstatuses", true},
		{"e2e-view", "create", "secretproviderclasses", false},
		{"e2e-edit", "create", "secretproviderclasses", true},
		{"e2e-edit", "update", "secretproviderclasses", true},
		{"e2e-admin", "delete", "secretproviderclasses", true},
		{"e2e-admin", "list", "secretproviderclasspodstatuses", true},
		{"e2e-admin", "update", "secretproviderclasspodstatuses", false}, // the driver's alone
	}
	// The controller-manager aggregates within a second or two of a change.
	deadline := time.Now().Add(time.Minute)
	for _, c := range cases {
		for {
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: c.user,
				ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: c.verb, Group: framework.SPCGroup, Resource: c.resource}}}
			got, err := fw.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got.Status.Allowed == c.allowed {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s (bound to ClusterRole %s) %s %s: allowed=%t, want %t (%s)",
					c.user, c.user[len("e2e-"):], c.verb, c.resource, got.Status.Allowed, c.allowed, got.Status.Reason)
				break
			}
			time.Sleep(time.Second)
		}
	}
}
