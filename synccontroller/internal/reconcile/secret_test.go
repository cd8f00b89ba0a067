package reconcile

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	ssv1 "github.com/sscsi/secrets-store/driver/apis/v1"
	"github.com/sscsi/secrets-store/internal/secretdata"
	syncv1 "github.com/sscsi/secrets-store/synccontroller/apis/v1alpha1"
	"github.com/sscsi/secrets-store/test/tlschain"
)

func secretSync(typ string, data ...syncv1.SecretObjectData) *syncv1.SecretSync {
	return &syncv1.SecretSync{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "ns", UID: "uid-1", Generation: 1},
		Spec: syncv1.SecretSyncSpec{SecretProviderClassName: "spc", ServiceAccountName: "sa",
			SecretObject: syncv1.SecretObject{Type: typ, Data: data, Labels: map[string]string{"team": "a"}}},
	}
}

func TestDesired(t *testing.T) {
	c := tlschain.New(t, false)
	bundle := append(tlschain.CertPEM(c.Leaf, c.Inter), tlschain.KeyPEM(t, c.LeafKey, "pkcs8")...)
	files := map[string][]byte{"user": []byte("admin"), "pass": []byte("s3cret-value"), "cert": bundle}

	s, err := desired(secretSync("", syncv1.SecretObjectData{SourcePath: "user", TargetKey: "u"}), files)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "app" || s.Namespace != "ns" || s.Type != corev1.SecretTypeOpaque || string(s.Data["u"]) != "admin" {
		t.Errorf("secret %+v", s)
	}
	if s.Labels[secretdata.ManagedLabel] != "true" || s.Labels[SecretSyncLabel] != "app" || s.Labels["team"] != "a" ||
		s.Annotations[secretdata.CreatedByAnnotation] != "SecretSync/app" {
		t.Errorf("marks: %v %v", s.Labels, s.Annotations)
	}

	s, err = desired(secretSync("kubernetes.io/tls", syncv1.SecretObjectData{SourcePath: "cert", TargetKey: "tls.crt"}, syncv1.SecretObjectData{SourcePath: "cert", TargetKey: "tls.key"}), files)
	if err != nil {
		t.Fatal(err)
	}
	if err := secretdata.CheckKeyPair(s.Data["tls.crt"], s.Data["tls.key"]); err != nil {
		t.Error(err)
	}

	for name, tc := range map[string]struct {
		ss     *syncv1.SecretSync
		reason string
		want   string
	}{
		"missing file":            {secretSync("", syncv1.SecretObjectData{SourcePath: "nope", TargetKey: "k"}), syncv1.ReasonUserInputValidation, "data[0].sourcePath"},
		"sa token type":           {secretSync("kubernetes.io/service-account-token", syncv1.SecretObjectData{SourcePath: "pass", TargetKey: "token"}), syncv1.ReasonUserInputValidation, "written by Kubernetes itself"},
		"bad key":                 {secretSync("", syncv1.SecretObjectData{SourcePath: "pass", TargetKey: "a b"}), syncv1.ReasonUserInputValidation, "data[0].targetKey"},
		"basic-auth without keys": {secretSync("kubernetes.io/basic-auth", syncv1.SecretObjectData{SourcePath: "pass", TargetKey: "pw"}), syncv1.ReasonUserInputValidation, "username"},
		"tls of a password":       {secretSync("kubernetes.io/tls", syncv1.SecretObjectData{SourcePath: "pass", TargetKey: "tls.crt"}), syncv1.ReasonUserInputValidation, "tls.crt"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := desired(tc.ss, files)
			if err == nil || Reason(err) != tc.reason || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v (reason %s), want %s mentioning %q", err, Reason(err), tc.reason, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret-value") {
				t.Fatalf("error quotes a value: %v", err)
			}
		})
	}
	reserved := secretSync("", syncv1.SecretObjectData{SourcePath: "user", TargetKey: "u"})
	reserved.Spec.SecretObject.Annotations = map[string]string{secretdata.CreatedByAnnotation: "SecretSync/other"}
	if _, err := desired(reserved, files); Reason(err) != syncv1.ReasonInvalidAnnotation {
		t.Errorf("created-by set by the user: %v", err)
	}
}

func TestSyncHash(t *testing.T) {
	ss := secretSync("", syncv1.SecretObjectData{SourcePath: "user", TargetKey: "u"})
	spc := &ssv1.SecretProviderClass{ObjectMeta: metav1.ObjectMeta{UID: "spc-uid", Generation: 3}}
	files := map[string][]byte{"user": []byte("admin")}
	s1, _ := desired(ss, files)
	h := syncHash(ss, spc, s1)
	if h != syncHash(ss, spc, s1.DeepCopy()) {
		t.Fatal("hash not stable")
	}
	s2, _ := desired(ss, map[string][]byte{"user": []byte("admin2")})
	other := ss.DeepCopy()
	other.UID = "uid-2"
	bumped := ss.DeepCopy()
	bumped.Generation++
	for name, got := range map[string]string{
		"value": syncHash(ss, spc, s2), "uid": syncHash(other, spc, s1), "generation": syncHash(bumped, spc, s1),
	} {
		if got == h {
			t.Errorf("hash unchanged by %s", name)
		}
	}
	if strings.Contains(h, "admin") {
		t.Error("hash carries content")
	}
}

func TestPointerAndTestFailed(t *testing.T) {
	if got := pointer("metadata", "annotations", "secrets-store.csi.k8s.io/created-by"); got != "/metadata/annotations/secrets-store.csi.k8s.io~1created-by" {
		t.Errorf("pointer %s", got)
	}
	if got := pointer("a~b"); got != "/a~0b" {
		t.Errorf("pointer %s", got)
	}
	inv := apierrors.NewInvalid(schema.GroupKind{Kind: "Secret"}, "x", field.ErrorList{field.Invalid(field.NewPath("data"), "", "bad")})
	if testFailed(inv) {
		t.Error("a validation error is not a failed test")
	}
	if testFailed(errors.New("test")) {
		t.Error("not an API error")
	}
}
