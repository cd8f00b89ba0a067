package secretdata

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMayWrite(t *testing.T) {
	sec := func(labels, annotations map[string]string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations}}
	}
	managed := map[string]string{ManagedLabel: "true"}
	me := Creator("SecretProviderClass", "app")
	for name, tc := range map[string]struct {
		s    *corev1.Secret
		want bool
	}{
		"created by me":            {sec(managed, map[string]string{CreatedByAnnotation: me}), true},
		"created for another":      {sec(managed, map[string]string{CreatedByAnnotation: "SecretProviderClass/other"}), false},
		"same name, other kind":    {sec(managed, map[string]string{CreatedByAnnotation: "SecretSync/app"}), false},
		"earlier driver (label)":   {sec(managed, nil), true},
		"annotation without label": {sec(nil, map[string]string{CreatedByAnnotation: me}), false},
		"plain foreign Secret":     {sec(map[string]string{"app": "x"}, nil), false},
		"label not true":           {sec(map[string]string{ManagedLabel: "false"}, nil), false},
		"owner opted in":           {sec(nil, map[string]string{AllowAdoptionAnnotation: "true"}), true},
		"opt-in not true":          {sec(nil, map[string]string{AllowAdoptionAnnotation: "yes"}), false},
	} {
		t.Run(name, func(t *testing.T) {
			if got, why := MayWrite(tc.s, me); got != tc.want || (!got && why == "") {
				t.Fatalf("MayWrite = %v (%q), want %v", got, why, tc.want)
			}
		})
	}
}

func TestMarks(t *testing.T) {
	in := map[string]string{AllowAdoptionAnnotation: "true", CreatedByAnnotation: "SecretSync/x", "note": "n"}
	l, a := Marks(map[string]string{"app": "x"}, in, "SecretProviderClass/app")
	if l[ManagedLabel] != "true" || l["app"] != "x" {
		t.Errorf("labels %v", l)
	}
	if _, ok := a[AllowAdoptionAnnotation]; ok || a[CreatedByAnnotation] != "SecretProviderClass/app" || a["note"] != "n" {
		t.Errorf("annotations %v", a)
	}
	if in[AllowAdoptionAnnotation] != "true" {
		t.Error("Marks modified its input")
	}
}
