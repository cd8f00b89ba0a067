package secretdata

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Creator is the CreatedByAnnotation value for an object of kind
// ("SecretProviderClass" or "SecretSync") named name.
func Creator(kind, name string) string { return kind + "/" + name }

// MayWrite reports whether a writer identified by creator (see Creator)
// may update the existing Secret cur, and if not, why (for the event). It
// may when cur carries the managed label and names creator, when cur's
// owner opted in with AllowAdoptionAnnotation "true", or when cur carries
// the managed label and no creator at all (written by an earlier version or
// by the upstream driver, which set only the label; the writer stamps it).
// Every other Secret is someone else's and is left untouched: without
// this, anyone who may create a SecretProviderClass or SecretSync could
// overwrite, and through owner references have garbage-collected, any
// Secret of the namespace.
// cur is the Secret's metadata (a *corev1.Secret, or the driver's own
// Secret type).
func MayWrite(cur metav1.Object, creator string) (bool, string) {
	ann := cur.GetAnnotations()
	by, hasBy := ann[CreatedByAnnotation]
	managed := cur.GetLabels()[ManagedLabel] == "true"
	switch {
	case ann[AllowAdoptionAnnotation] == "true":
		return true, ""
	case managed && by == creator:
		return true, ""
	case managed && !hasBy:
		return true, ""
	case hasBy:
		return false, fmt.Sprintf("it was created by %s", by)
	default:
		return false, "it was not created by secrets-store"
	}
}

// Marks returns labels and annotations with the ownership marks of
// creator set, and without AllowAdoptionAnnotation: adoption is the
// existing Secret's owner's choice, never the writer's. The inputs are not
// modified.
func Marks(labels, annotations map[string]string, creator string) (map[string]string, map[string]string) {
	l := make(map[string]string, len(labels)+1)
	for k, v := range labels {
		l[k] = v
	}
	l[ManagedLabel] = "true"
	a := make(map[string]string, len(annotations)+1)
	for k, v := range annotations {
		a[k] = v
	}
	delete(a, AllowAdoptionAnnotation)
	a[CreatedByAnnotation] = creator
	return l, a
}
